"""``GET /api/v1/audit/patients/{fødselsnummer}/accesses``: who has read or changed a
patient's data (innsyn i logg), for an admin answering the patient's request. JSON, or a
printable page in bokmål for ``Accept: text/html``."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Query, Request
from starlette.concurrency import run_in_threadpool
from starlette.responses import HTMLResponse, Response

from interop.access.actor import Actor
from interop.access.audit import audit_log, build_event, is_bootstrap
from interop.access.audit.accesses import (
    Access,
    PatientNotFound,
    accesses,
    as_html,
    as_json,
    find_patient,
    period,
)
from interop.api.auth import require_admin
from interop.fhir.outcome import error

router = APIRouter(prefix="/api/v1/audit", tags=["audit"])


@router.get("/patients/{national_id}/accesses")
async def patient_accesses(
    national_id: str,
    request: Request,
    from_: str | None = Query(None, alias="from", description="first day (YYYY-MM-DD)"),
    to: str | None = Query(None, description="last day, inclusive (YYYY-MM-DD)"),
    admin: Actor = Depends(require_admin),
) -> Response:
    svc = request.app.state.services
    zone = svc.settings.timezone
    try:
        lo, hi = period(from_, to, zone)
    except ValueError as exc:
        raise error(400, "value", str(exc)) from None

    def load() -> tuple[str, list[Access]]:
        with svc.store.reader() as conn:
            pid = find_patient(conn, national_id)
            return pid, list(accesses(conn, pid, lo, hi))

    try:
        pid, items = await run_in_threadpool(load)
    except PatientNotFound as exc:
        code, status = ("value", 422) if exc.invalid else ("not-found", 404)
        raise error(status, code, str(exc)) from None
    if not is_bootstrap(admin):  # reading someone's access log is itself an access
        await audit_log(svc.store).record(
            build_event(admin, "read", f"AuditEvent?patient=Patient/{pid}", [pid])
        )
    if "text/html" in request.headers.get("accept", ""):
        masked = national_id[:6] + "*****"
        return HTMLResponse(as_html(masked, items, from_, to, zone))
    return Response(as_json(national_id, items, from_, to), media_type="application/json")
