"""Emergency access (*nødrett*, helsepersonelloven § 7 / pasientjournalforskriften): a health
professional opens a patient's record outside their care relation, giving a reason; the
access is time-limited, every read under it is audited as emergency access, and each opening
is listed for the follow-up review (``GET /api/v1/emergency-access``, admin)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import insert, select
from starlette.responses import Response

from interop.access.actor import Actor
from interop.access.audit import audit_log, build_event
from interop.access.audit.accesses import norwegian_time
from interop.access.policy import Action
from interop.api.auth import require_actor, require_admin
from interop.api.responses import json_response
from interop.fhir.dates import fhir_instant, format_instant, from_micros, now_utc, to_micros
from interop.fhir.outcome import error
from interop.identifiers import person_id_system
from interop.patients import patient_by_identifier
from interop.services import Services
from interop.store.context import Door, WriteContext
from interop.store.generation import bump
from interop.store.repository import new_id
from interop.store.schema import emergency_access_table as ea
from interop.store.schema import token_table

router = APIRouter(prefix="/api/v1", tags=["access"])


class EmergencyIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    reason: str = Field(min_length=10, max_length=1000, description="why the record is needed now")
    minutes: int | None = Field(default=None, ge=1, description="how long (capped by the setting)")


@router.post("/patients/{national_id}/emergency-access", status_code=201)
def open_emergency_access(
    national_id: str, body: EmergencyIn, request: Request, actor: Actor = Depends(require_actor)
) -> Response:
    """Open the patient's record by *nødrett* for a limited time (roles in
    ``mappings/access/actions.yaml``, ``emergency``)."""
    svc: Services = request.app.state.services
    svc.policy.require_role(actor, Action.EMERGENCY)
    if actor.is_admin:
        raise error(422, "business-rule", "admins see every record already; nødrett is for people")
    system = person_id_system(national_id)
    if system is None:
        raise error(422, "value", f"{national_id!r} is not a valid fødselsnummer or D-nummer")
    limit = svc.settings.emergency_access_minutes
    minutes = min(body.minutes or limit, limit)
    start = now_utc()
    end = start + timedelta(minutes=minutes)
    with svc.store.write(WriteContext(actor, Door.EMERGENCY)) as tx:
        pid = patient_by_identifier(tx.conn, system, national_id)
        if pid is None:
            raise error(404, "not-found", "no patient with that number here")
        grant = new_id()
        tx.conn.execute(
            insert(ea).values(
                id=grant,
                actor_id=actor.id,
                actor_role=actor.role,
                actor_hpr=actor.hpr,
                actor_orgnr=actor.orgnr,
                actor_name=actor.name,
                patient_id=pid,
                reason=body.reason,
                start=to_micros(start),
                end=to_micros(end),
            )
        )
        bump(tx.conn)  # every API process sees the opening at its next request
        audit_log(svc.store).append(
            tx,
            build_event(
                actor,
                "create",
                "nødrett til " + norwegian_time(format_instant(end), svc.settings.timezone),
                [pid],
                detail=body.reason,
                emergency=True,
            ),
        )
    return json_response(
        {
            "id": grant,
            "patient": f"Patient/{pid}",
            "until": format_instant(end),
            "reason": body.reason,
        },
        201,
    )


@router.get("/emergency-access")
def list_emergency_access(
    request: Request,
    since: str | None = None,
    admin: Actor = Depends(require_admin),
) -> Response:
    """Every emergency access opened (newest first; ``since``: an instant), for review."""
    svc: Services = request.app.state.services
    stmt = select(ea).order_by(ea.c.start.desc()).limit(1000)
    if since:
        try:
            start = fhir_instant(since, svc.settings.timezone)
        except ValueError:
            raise error(
                400, "invalid", f"since {since!r} is not a date or an instant", expression=["since"]
            ) from None
        stmt = stmt.where(ea.c.start >= start)
    with svc.store.reader() as conn:
        rows = conn.execute(stmt).all()
        fnrs = _national_ids(conn, {r.patient_id for r in rows})
    out: list[dict[str, Any]] = [
        {
            "id": r.id,
            "actor": {
                "id": r.actor_id,
                "role": r.actor_role,
                "hpr": r.actor_hpr,
                "orgnr": r.actor_orgnr,
                "name": r.actor_name,
            },
            "patient": f"Patient/{r.patient_id}",
            "nationalId": fnrs.get(r.patient_id),
            "reason": r.reason,
            "start": format_instant(from_micros(r.start)),
            "end": format_instant(from_micros(r.end)),
        }
        for r in rows
    ]
    return json_response(out)


def _national_ids(conn: Any, patient_ids: set[str]) -> dict[str, str]:
    if not patient_ids:
        return {}
    rows = conn.execute(
        select(token_table.c.res_id, token_table.c.code).where(
            token_table.c.res_type == "Patient",
            token_table.c.param == "identifier",
            token_table.c.res_id.in_(sorted(patient_ids)),
            token_table.c.system.in_(
                ["urn:oid:2.16.578.1.12.4.1.4.1", "urn:oid:2.16.578.1.12.4.1.4.2"]
            ),
        )
    ).all()
    return {r[0]: r[1] for r in rows}
