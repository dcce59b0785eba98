"""The follow-up centre's worklist: ``GET /api/v1/worklist?organization=<org.nr>`` (JSON, or
the HTML page for ``Accept: text/html``) and the actions on a Task,
``POST /api/v1/worklist/tasks/{id}/actions`` (``take``, ``note``, ``complete`` with an outcome).

The actions take JSON, or the HTML page's form fields (then the answer is a redirect back to
the page, so the page works without JavaScript)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs

import orjson
from fastapi import APIRouter, Depends, Request
from starlette.concurrency import run_in_threadpool
from starlette.responses import HTMLResponse, RedirectResponse, Response

from interop.access.policy import Action
from interop.api.auth import Actor, require_actor
from interop.api.responses import json_response
from interop.care.deviations import Person, add_note, complete, take
from interop.fhir.outcome import error
from interop.identifiers import validate_orgnr
from interop.indicators import _org_ids
from interop.services import Services
from interop.store.context import Door, WriteContext
from interop.store.relations import referrers
from interop.views.worklist import compute
from interop.views.worklist_html import render_html

router = APIRouter(prefix="/api/v1/worklist", tags=["worklist"])

ACTIONS = ("take", "note", "complete")


def _svc(request: Request) -> Services:
    svc: Services = request.app.state.services
    return svc


def _wants_html(request: Request, format: str | None) -> bool:
    if format is not None:
        if format not in ("json", "html"):
            raise error(400, "value", f"format {format!r}: use json or html")
        return format == "html"
    accept = request.headers.get("accept", "")
    return "text/html" in accept and "application/json" not in accept


@router.get("")
def worklist(
    request: Request,
    organization: str,
    format: str | None = None,
    actor: Actor = Depends(require_actor),
) -> Response:
    """The organisation's patients that need attention, most urgent first (one row each)."""
    if not validate_orgnr(organization):
        raise error(422, "value", f"organization {organization!r} is not a valid org.nr")
    svc = _svc(request)
    svc.policy.require_role(actor, Action.WORKLIST)
    if not (actor.is_admin or actor.orgnr == organization):
        raise error(403, "forbidden", "the worklist is for the organisation's own follow-up centre")
    html = _wants_html(request, format)
    with svc.store.reader() as conn:
        org_ids, name = _org_ids(conn, organization)
        patients = referrers(
            conn, "Patient", "organization", (f"Organization/{o}" for o in org_ids)
        )
        if not actor.is_admin:
            reachable = svc.policy.scope(actor).reachable
            if reachable is not None:
                patients &= reachable
        now = datetime.now(UTC)
        rows = compute(conn, patients, now, svc.settings.timezone)
    svc.policy.record_list(
        actor, f"worklist?organization={organization}", [r["patient"]["id"] for r in rows]
    )
    if html:
        return HTMLResponse(
            render_html(rows, organization, name, now, svc.settings.timezone, request.url.path)
        )
    return json_response(
        {"organization": organization, "name": name, "generated": now.isoformat(), "rows": rows}
    )


async def _body(request: Request) -> tuple[dict[str, Any], bool]:
    """The action's fields and whether they came from the HTML form."""
    raw = await request.body()
    kind = request.headers.get("content-type", "")
    if kind.startswith("application/x-www-form-urlencoded"):
        form = parse_qs(raw.decode("utf-8", "replace"))
        return {k: v[0] for k, v in form.items()}, True
    try:
        body = orjson.loads(raw or b"{}")
    except orjson.JSONDecodeError as exc:
        raise error(400, "structure", f"the body is not valid JSON: {exc}") from None
    if not isinstance(body, dict):
        raise error(400, "structure", "the body must be a JSON object")
    return body, False


def _act(svc: Services, actor: Actor, task_id: str, body: dict[str, Any]) -> dict[str, Any]:
    action = body.get("action")
    if action not in ACTIONS:
        raise error(422, "value", f"action: use one of {', '.join(ACTIONS)}")
    stored = svc.store.get("Task", task_id)
    if stored is None or stored.deleted:
        raise error(404, "not-found", f"no Task/{task_id}")
    patient = (stored.json().get("for") or {}).get("reference", "")
    if not patient.startswith("Patient/"):
        raise error(422, "business-rule", f"Task/{task_id} is not about a patient")
    svc.policy.require_patient(actor, patient[8:], Action.WORKLIST, f"Task/{task_id}")
    who = Person(actor.id, actor.hpr, actor.name)
    with svc.store.write(WriteContext(actor, Door.WORKLIST)) as tx:
        if action == "take":
            return take(tx, task_id, who)
        if action == "note":
            return add_note(tx, task_id, who, str(body.get("note") or ""))
        outcome = body.get("outcome")
        if not outcome:
            raise error(422, "required", "outcome: completing a Task needs an outcome")
        return complete(tx, task_id, who, str(outcome), str(body.get("note") or ""))


@router.post("/tasks/{task_id}/actions")
async def task_action(
    task_id: str, request: Request, actor: Actor = Depends(require_actor)
) -> Response:
    svc = _svc(request)
    svc.policy.require_role(actor, Action.WORKLIST)
    body, from_form = await _body(request)
    task = await run_in_threadpool(_act, svc, actor, task_id, body)
    if from_form and body.get("back", "").startswith("/api/v1/worklist?"):
        return RedirectResponse(str(body["back"]), status_code=303)
    return json_response(task)
