"""The message store API: list and filter outgoing messages, view one, reprocess."""

from __future__ import annotations

from typing import Any

import orjson
from fastapi import APIRouter, Depends, Request
from sqlalchemy import select
from starlette.responses import Response

from interop.api.auth import Actor, require_admin
from interop.api.responses import json_response
from interop.fhir.dates import from_micros
from interop.fhir.outcome import error
from interop.identifiers import person_id_system
from interop.patients import patient_by_identifier
from interop.routing.outbox import Outbox
from interop.services import Services
from interop.store.schema import outbox_table

router = APIRouter(prefix="/api/v1/messages", tags=["messages"])


def _svc(request: Request) -> Services:
    svc: Services = request.app.state.services
    return svc


def _iso(us: int | None) -> str | None:
    return from_micros(us).isoformat() if us is not None else None


def message_json(r: Any) -> dict[str, Any]:
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
        "attempts": r.attempts,
        "created": _iso(r.created),
        "sent": _iso(r.sent_at),
        "acked": _iso(r.acked_at),
        "appRec": r.apprec_status,
        "appRecErrors": orjson.loads(r.apprec_errors) if r.apprec_errors else [],
        "lastError": r.last_error,
        "patient": f"Patient/{r.patient_id}" if r.patient_id else None,
        "focus": r.focus,
        "reprocessOf": r.reprocess_of,
        "correlationId": r.correlation_id,
    }


@router.get("")
def list_messages(
    request: Request,
    patient: str | None = None,
    status: str | None = None,
    destination: str | None = None,
    type: str | None = None,
    limit: int = 100,
    actor: Actor = Depends(require_admin),
) -> Response:
    """Messages, newest first; ``patient`` is a fødselsnummer/D-nummer (or ``Patient/id``)."""
    svc = _svc(request)
    o = outbox_table
    stmt = select(o).order_by(o.c.seq.desc()).limit(max(1, min(limit, 1000)))
    with svc.store.reader() as conn:
        if patient:
            if patient.startswith("Patient/"):
                pid: str | None = patient.split("/", 1)[1]
            else:
                system = person_id_system(patient)
                if system is None:
                    raise error(
                        422, "value", f"patient {patient!r} is not a valid fødselsnummer/D-nummer"
                    )
                pid = patient_by_identifier(conn, system, patient)
                if pid is None:
                    return json_response([])
            stmt = stmt.where(o.c.patient_id == pid)
        if status:
            stmt = stmt.where(o.c.status.in_(status.split(",")))
        if destination:
            stmt = stmt.where(o.c.destination == destination)
        if type:
            stmt = stmt.where(o.c.kind == type)
        rows = conn.execute(stmt).all()
    return json_response([message_json(r) for r in rows])


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
    dest = orjson.loads(body) if body.strip() else None
    if dest is not None and not isinstance(dest, dict):
        raise error(400, "invalid", "the body must be a JSON object")
    try:
        new = Outbox(_svc(request).engine).reprocess(row_id, destination=dest)
    except KeyError:
        raise error(404, "not-found", f"message {row_id} is not known") from None
    return json_response({"id": new, "reprocessOf": row_id}, 201)
