"""The GP's page for a proposed egenbehandlingsplan:
``GET/POST /api/v1/patients/{fødselsnummer}/plan/{plan_id}/approval``.

The GP reads the plan in Norwegian and approves it, or asks for changes with a text, with a
plain HTML form (no JavaScript). Who may is the policy's: the role needs ``approve-plan``
(``mappings/access/actions.yaml``) and the patient must be the GP's own; approving records the
GP as approver exactly as ``POST …/plan/{id}/approve`` does.

How the GP's browser authenticates: the ``Authorization`` header (HelseID/Bearer), or a link
with ``?access_token=`` (as for the HTML summary); the page's forms then carry the token back as
the form field ``access_token`` (RFC 6750 §2.2), never a cookie. Each form also carries a
signed, short-lived ``form_token`` bound to the GP and to the plan version shown
(:mod:`interop.api.form_token`): a form cannot be replayed in another's name or approve a plan
the GP has not read."""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs

from fastapi import APIRouter, Depends, Request
from starlette.concurrency import run_in_threadpool
from starlette.responses import HTMLResponse, Response

from interop.access.policy import Action
from interop.api import form_token
from interop.api.patient_access import PatientAccess, patient_access
from interop.fhir.outcome import FhirError, error
from interop.patients import display_name
from interop.text import local_time, text
from interop.views.plan_page import render_plan_page

router = APIRouter(prefix="/api/v1/patients", tags=["plans"])


def _plan(request: Request, access: PatientAccess, plan_id: str) -> tuple[dict[str, Any], int, str]:
    """The plan (404 unless it is this patient's), its version and the patient's label."""
    from interop.care.plans import PLAN_CATEGORY

    svc = request.app.state.services
    with svc.store.reader() as conn:
        stored = svc.store.get("CarePlan", plan_id, conn)
        patient = svc.store.get("Patient", access.patient_id, conn)
    cp = stored.json() if stored is not None and not stored.deleted else None
    if (
        cp is None
        or (cp.get("subject") or {}).get("reference") != f"Patient/{access.patient_id}"
        or not any(
            c.get("code") == PLAN_CATEGORY["code"] and c.get("system") == PLAN_CATEGORY["system"]
            for cat in cp.get("category", [])
            for c in cat.get("coding", [])
        )
    ):
        raise error(404, "not-found", f"CarePlan/{plan_id} is not a plan of this patient")
    name = display_name(patient.json()) if patient is not None else None
    label = text(
        "summary.patient",
        name=name or text("worklist.unknown_name"),
        national_id=access.national_id,
    )
    assert stored is not None
    return cp, stored.version, label


def _hidden(
    request: Request, access: PatientAccess, plan_id: str, version: int, token: str | None
) -> dict[str, str]:
    svc = request.app.state.services
    fields = {
        "form_token": form_token.sign(
            svc.settings.admin_key, access.actor, f"CarePlan/{plan_id}", version
        )
    }
    if token:  # opened by link: the forms carry the token back (no Authorization header)
        fields["access_token"] = token
    return fields


def _page(
    request: Request,
    access: PatientAccess,
    plan_id: str,
    *,
    token: str | None,
    message: str | None = None,
    status: int = 200,
) -> HTMLResponse:
    cp, version, label = _plan(request, access, plan_id)
    return HTMLResponse(
        render_plan_page(
            cp,
            label,
            request.app.state.services.settings.timezone,
            action=request.url.path,
            hidden=_hidden(request, access, plan_id, version, token),
            message=message,
        ),
        status_code=status,
        headers={"Cache-Control": "no-store", "Referrer-Policy": "no-referrer"},
    )


@router.get("/{national_id}/plan/{plan_id}/approval")
def plan_approval_page(
    plan_id: str,
    request: Request,
    access: PatientAccess = Depends(patient_access(Action.APPROVE_PLAN)),
) -> Response:
    """The proposed plan as an HTML page for the patient's GP, with forms to approve it or
    ask for changes (any state is shown; only a proposed plan has the forms)."""
    svc = request.app.state.services
    svc.policy.require_patient(
        access.actor, access.patient_id, Action.READ, f"CarePlan/{plan_id}"
    )  # the reading is audited like any other
    link_token = (
        None if request.headers.get("authorization") else request.query_params.get("access_token")
    )
    return _page(request, access, plan_id, token=link_token)


@router.post("/{national_id}/plan/{plan_id}/approval")
async def plan_approval_answer(
    plan_id: str,
    request: Request,
    access: PatientAccess = Depends(patient_access(Action.APPROVE_PLAN, form=True)),
) -> Response:
    """The GP's answer from the page's form (``application/x-www-form-urlencoded``):
    ``decision`` = ``approve`` or ``changes`` (with ``text``), and the signed ``form_token``."""
    from interop.care.plan_lifecycle import approve_by_gp, changes_by_gp

    if not request.headers.get("content-type", "").startswith("application/x-www-form-urlencoded"):
        raise error(
            415, "not-supported", "send the page's form (application/x-www-form-urlencoded)"
        )
    form = {k: v[0] for k, v in parse_qs((await request.body()).decode("utf-8", "replace")).items()}
    svc = request.app.state.services
    signed = form_token.verify(
        svc.settings.admin_key, access.actor, f"CarePlan/{plan_id}", form.get("form_token", "")
    )
    decision = form.get("decision")
    if decision not in ("approve", "changes"):
        raise error(400, "value", "decision: use 'approve' or 'changes'")
    token = form.get("access_token") if not request.headers.get("authorization") else None
    try:
        if decision == "approve":
            result = await run_in_threadpool(
                lambda: approve_by_gp(
                    svc,
                    access.national_id,
                    plan_id,
                    access.actor,
                    seen_version=signed.version,
                    door="page",
                )
            )
            start = result["carePlan"]["period"]["start"]
            from interop.fhir.dates import fhir_instant, from_micros

            when = local_time(
                from_micros(fhir_instant(start, svc.settings.timezone)), svc.settings.timezone
            )
            message = text("plan.gp_page.approved", time=when)
        else:
            await run_in_threadpool(
                lambda: changes_by_gp(
                    svc,
                    access.national_id,
                    plan_id,
                    access.actor,
                    form.get("text", ""),
                    seen_version=signed.version,
                )
            )
            message = text("plan.gp_page.returned")
    except FhirError as exc:
        if exc.status not in (409, 422):
            raise
        # said in Norwegian on the page itself, with the plan as it is now
        return _page(
            request,
            access,
            plan_id,
            token=token,
            message=_refusal(request, access, plan_id, exc),
            status=exc.status,
        )
    return _page(request, access, plan_id, token=token, message=message)


def _refusal(request: Request, access: PatientAccess, plan_id: str, exc: FhirError) -> str:
    from interop.care.plan_state import state_of

    cp, _version, _label = _plan(request, access, plan_id)
    state = state_of(cp)
    if exc.status == 422:
        return text("plan.gp_page.text_required")
    if state != "proposed":
        return text("plan.gp_page.not_proposed", state=text(f"plan.states.{state}"))
    return text("plan.gp_page.changed")
