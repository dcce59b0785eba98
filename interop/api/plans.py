"""The follow-up centre's compact plan endpoint: ``PUT/GET /api/v1/patients/{id}/plan``."""

from __future__ import annotations

import orjson
from fastapi import APIRouter, Depends, Request
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from interop.access.policy import Action
from interop.api.patient_access import PatientAccess, patient_access
from interop.api.responses import json_response
from interop.care.plans import plan_versions, put_plan
from interop.fhir.outcome import FhirError, Issue, error
from interop.store.repository import DuplicateIdentifier
from interop.store.transaction import parse_if_match

router = APIRouter(prefix="/api/v1/patients", tags=["plans"])


@router.put("/{national_id}/plan")
async def set_plan(
    request: Request, access: PatientAccess = Depends(patient_access(Action.PLAN))
) -> Response:
    """New egenbehandlingsplan version (CarePlan + Goals), approved by the GP given in ``approvedBy``.

    A GP approves with their own HPR number, for their own patients; a follow-up nurse records
    an approval the patient's GP gave elsewhere. ``If-Match: W/"n"`` (the ETag of
    ``GET …/plan``) makes the change conditional: 412 when the plan is no longer at version n,
    so a client never overwrites a change it has not seen."""
    try:
        body = orjson.loads(await request.body())
    except orjson.JSONDecodeError as exc:
        raise FhirError(
            400, [Issue("error", "structure", f"the body is not valid JSON: {exc}")]
        ) from None
    if_match = parse_if_match(request.headers.get("if-match"))
    svc = request.app.state.services
    try:
        result = await run_in_threadpool(
            put_plan, svc, access.national_id, body, access.actor, if_match=if_match
        )
    except DuplicateIdentifier as exc:
        raise error(409, "conflict", str(exc)) from None
    return json_response(
        result, 201 if result["version"] == 1 else 200, {"ETag": f'W/"{result["version"]}"'}
    )


@router.get("/{national_id}/plan")
def get_plan(
    request: Request, access: PatientAccess = Depends(patient_access(Action.READ))
) -> Response:
    svc = request.app.state.services
    with svc.store.reader() as conn:
        versions = plan_versions(conn, access.patient_id)
    active = [p for p in versions if p.get("status") == "active"]
    if not active:
        raise error(404, "not-found", "the patient has no active self-management plan")
    return json_response(
        {"version": len(versions), "carePlan": active[-1], "history": [p["id"] for p in versions]},
        headers={"ETag": f'W/"{len(versions)}"'},
    )
