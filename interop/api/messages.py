"""The message store API: outgoing and incoming messages, content, reprocess, HTTP inbound."""

from __future__ import annotations

from typing import Any

import orjson
from fastapi import APIRouter, Depends, Request
from sqlalchemy import or_, select
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from interop.access.policy import NOT_YOURS, Action
from interop.api.auth import Actor, require_actor, require_admin
from interop.api.responses import json_response, load_json
from interop.fhir.dates import from_micros
from interop.fhir.outcome import FhirError, Issue, error
from interop.identifiers import person_id_system
from interop.messaging.inbound import KITH_ADAPTER
from interop.patients import patient_by_identifier
from interop.routing.outbox import Outbox
from interop.routing.reprocess_guard import CannotReprocess
from interop.services import Services
from interop.store.schema import inbound_message_table as inbound_table
from interop.store.schema import outbox_table
from interop.text import catalogue, text

router = APIRouter(prefix="/api/v1/messages", tags=["messages"])


def _svc(request: Request) -> Services:
    svc: Services = request.app.state.services
    return svc


def _iso(us: int | None) -> str | None:
    return from_micros(us).isoformat() if us is not None else None


def status_text(status: str, errors: list[dict[str, Any]]) -> str:
    """The message's state in words a nurse reads (message catalogue): sent, received by the
    GP, refused (with the receiver's reason), no answer after 96 hours …"""
    if status == "apprec-rejected" and errors:
        reason = "; ".join(
            str(e.get("display") or e.get("detail") or e.get("code") or "") for e in errors
        )
        return text("messages.refused_because", reason=reason)
    return catalogue().get(f"messages.status.{status}") or status


def message_json(r: Any) -> dict[str, Any]:
    errors = orjson.loads(r.apprec_errors) if r.apprec_errors else []
    return {
        "id": r.id,
        "msgId": r.msg_id,
        "type": r.kind,
        "direction": "out",
        "event": r.event,
        "destination": r.destination,
        "transport": r.transport,
        "address": r.address,
        "status": r.status,
        "statusText": status_text(r.status, errors),
        "attempts": r.attempts,
        "created": _iso(r.created),
        "sent": _iso(r.sent_at),
        "acked": _iso(r.acked_at),
        "appRec": r.apprec_status,
        "appRecErrors": errors,
        "lastError": r.last_error,
        "patient": f"Patient/{r.patient_id}" if r.patient_id else None,
        "focus": r.focus,
        "reprocessOf": r.reprocess_of,
        "correlationId": r.correlation_id,
        "answers": orjson.loads(r.answers) if r.answers else [],
    }


def inbound_json(r: Any) -> dict[str, Any]:
    report = orjson.loads(r.report) if r.report else {}
    return {
        "id": r.id,
        "msgId": r.message_id,
        "type": report.get("type"),
        "direction": "in",
        "channel": r.channel,
        "sender": r.sender,
        "receiver": report.get("receiver"),
        "status": report.get("outcome", r.status),
        "statusText": text("messages.inbound"),
        "received": _iso(r.received),
        "errors": r.error,
        "patient": f"Patient/{report['patient']}" if report.get("patient") else None,
        "result": {k: v for k, v in report.items() if k in ("communication", "closes", "reason")},
    }


@router.get("")
def list_messages(
    request: Request,
    patient: str | None = None,
    status: str | None = None,
    destination: str | None = None,
    type: str | None = None,
    direction: str | None = None,
    limit: int = 100,
    actor: Actor = Depends(require_actor),
) -> Response:
    """Messages, newest first; ``patient`` is a fødselsnummer/D-nummer (or ``Patient/id``);
    ``direction`` ``out`` (the outbox) or ``in`` (received KITH messages and AppRecs); both by
    default. Operators see every message; a follow-up centre the messages about the patients
    it follows (its organisation's), each with its status in words (``statusText``)."""
    svc = _svc(request)
    svc.policy.require_role(actor, Action.MESSAGES)
    reachable = None if actor.is_admin else svc.policy.scope(actor).reachable
    o = outbox_table
    limit = max(1, min(limit, 1000))
    if direction not in (None, "in", "out"):
        raise error(400, "value", "direction must be 'in' or 'out'")
    stmt = select(o).order_by(o.c.seq.desc()).limit(limit)
    pid: str | None = None
    with svc.store.reader() as conn:
        if patient:
            if patient.startswith("Patient/"):
                pid = patient.split("/", 1)[1]
            else:
                system = person_id_system(patient)
                if system is None:
                    raise error(
                        422, "value", f"patient {patient!r} is not a valid fødselsnummer/D-nummer"
                    )
                pid = patient_by_identifier(conn, system, patient)
                if pid is None and reachable is None:
                    return json_response([])
            if reachable is not None and pid not in reachable:
                raise error(403, "forbidden", NOT_YOURS)
            stmt = stmt.where(o.c.patient_id == pid)
        elif reachable is not None:
            stmt = stmt.where(o.c.patient_id.in_(sorted(reachable)))
        if status:
            stmt = stmt.where(o.c.status.in_(status.split(",")))
        if destination:
            stmt = stmt.where(o.c.destination == destination)
        if type:
            stmt = stmt.where(o.c.kind == type)
        out = [] if direction == "in" else [message_json(r) for r in conn.execute(stmt).all()]
        incoming: list[dict[str, Any]] = []
        if direction != "out" and not destination:
            rows = conn.execute(
                select(inbound_table)
                .where(
                    or_(
                        inbound_table.c.adapter == KITH_ADAPTER,
                        # messages that reused another's id, kept for an operator (any channel)
                        inbound_table.c.status == "conflict",
                    )
                )
                .order_by(inbound_table.c.received.desc())
                .limit(limit if pid is None else 1000)
            ).all()
            incoming = [inbound_json(r) for r in rows]
            if pid is not None:
                incoming = [m for m in incoming if m["patient"] == f"Patient/{pid}"]
            elif reachable is not None:
                incoming = [
                    m
                    for m in incoming
                    if m["patient"] and m["patient"].removeprefix("Patient/") in reachable
                ]
            if status:
                incoming = [m for m in incoming if m["status"] in status.split(",")]
            if type:
                incoming = [m for m in incoming if m["type"] == type]
    merged = sorted(
        out + incoming, key=lambda m: m.get("created") or m.get("received") or "", reverse=True
    )[:limit]
    if not actor.is_admin:
        shown = {m["patient"].removeprefix("Patient/") for m in merged if m["patient"]}
        svc.policy.record_list(actor, f"messages?patient={patient or ''}", sorted(shown))
    return json_response(merged)


@router.get("/{row_id}")
def get_message(row_id: str, request: Request, actor: Actor = Depends(require_admin)) -> Response:
    with _svc(request).store.reader() as conn:
        row = conn.execute(select(outbox_table).where(outbox_table.c.id == row_id)).first()
    if row is None:
        raise error(404, "not-found", f"message {row_id} is not known")
    return json_response(message_json(row))


@router.get("/{row_id}/content")
def message_content(
    row_id: str, request: Request, actor: Actor = Depends(require_admin)
) -> Response:
    """The message as sent (the XML for KITH messages)."""
    with _svc(request).store.reader() as conn:
        row = conn.execute(
            select(outbox_table.c.payload, outbox_table.c.content_type).where(
                outbox_table.c.id == row_id
            )
        ).first()
    if row is None:
        raise error(404, "not-found", f"message {row_id} is not known")
    return Response(bytes(row.payload), media_type=row.content_type)


@router.post("/{row_id}/reprocess")
async def reprocess(
    row_id: str, request: Request, actor: Actor = Depends(require_admin)
) -> Response:
    """Send again, as a new message linked to this one; body (optional) may name another
    destination: ``{"destination": "Endpoint/…", "transport": "http", "address": "…"}``."""
    body = await request.body()
    dest = load_json(body) if body.strip() else None
    if dest is not None and (
        not isinstance(dest, dict) or not all(isinstance(v, str) for v in dest.values())
    ):
        raise error(400, "invalid", "the body must be a JSON object of strings")
    try:
        new = Outbox(_svc(request).engine).reprocess(row_id, destination=dest)
    except KeyError:
        raise error(404, "not-found", f"message {row_id} is not known") from None
    except CannotReprocess as exc:
        raise error(409, "business-rule", str(exc)) from None
    return json_response({"id": new, "reprocessOf": row_id}, 201)


@router.post("/{row_id}/cancel")
def cancel(row_id: str, request: Request, actor: Actor = Depends(require_admin)) -> Response:
    """Send a cancellation (PLO Forsendelsesstatus C) of a message already sent."""
    from interop.messaging.cancel import CannotCancel, cancel_message

    try:
        new = cancel_message(_svc(request), row_id)
    except KeyError:
        raise error(404, "not-found", f"message {row_id} is not known") from None
    except CannotCancel as exc:
        raise error(409, "business-rule", str(exc)) from None
    return json_response({"id": new, "cancels": row_id}, 201)


@router.post("/inbound")
async def receive_inbound(request: Request, actor: Actor = Depends(require_actor)) -> Response:
    """Receive a KITH message or AppRec (the XML as the body) over HTTP: the receive
    checklist, then stored and acted on; its AppRec goes to the sender's Endpoint.

    202 taken (or an AppRec read), 200 a duplicate (ignored), 422 refused (the AppRec error
    codes are in the OperationOutcome; the message is kept for operators), 403 when the
    message's sender is not the caller's own organisation (nothing is stored or answered; an
    admin may deliver any message)."""
    _svc(request).policy.require_role(actor, Action.DELIVER)
    from interop.messaging.inbound import CallerChannel, KithInbox, SenderNotCaller
    from plo_messages import SchemaConfigError

    data = await request.body()
    try:
        result = await run_in_threadpool(
            KithInbox(_svc(request)).receive, data, channel=CallerChannel(actor)
        )
    except SchemaConfigError as exc:
        raise error(503, "exception", str(exc)) from None
    except SenderNotCaller as exc:
        raise error(403, "forbidden", str(exc)) from None
    body = {
        "outcome": result.outcome,
        "id": result.inbound_id,
        "errors": result.errors,
        "appRecs": result.apprecs,
        "communication": result.communication,
        "closes": result.closed,
    }
    if result.outcome in ("rejected", "unreadable"):
        raise FhirError(
            422,
            [
                Issue("error", "invalid", f"AppRec {code}: message refused: {reason}".rstrip(": "))
                for code, reason in zip(result.errors, result.reasons, strict=False)
            ]
            or [Issue("error", "invalid", "message refused")],
        )
    return json_response(body, 200 if result.outcome == "duplicate" else 202)
