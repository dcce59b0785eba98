"""The follow-up centre's compact plan endpoint: ``PUT/GET /api/v1/patients/{id}/plan``."""

from __future__ import annotations

import orjson
from fastapi import APIRouter, Depends, Request
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from interop.api.auth import Actor, require_actor
from interop.api.responses import json_response
from interop.fhir.outcome import FhirError, Issue, error
from interop.plans import plan_versions, put_plan
from interop.store.repository import DuplicateIdentifier
from interop.store.transaction import parse_if_match

router = APIRouter(prefix="/api/v1/patients", tags=["plans"])
PLAN_ROLES = frozenset({"admin", "followup", "gp"})


@router.put("/{national_id}/plan")
async def set_plan(
    national_id: str, request: Request, actor: Actor = Depends(require_actor)
) -> Response:
    """New egenbehandlingsplan version (CarePlan + Goals), approved by the GP given in ``approvedBy``.

    ``If-Match: W/"n"`` (the ETag of ``GET …/plan``) makes the change conditional: 412 when
    the plan is no longer at version n, so a client never overwrites a change it has not seen."""
    if actor.role not in PLAN_ROLES:
        raise error(403, "forbidden", f"role {actor.role!r} may not change self-management plans")
    try:
        body = orjson.loads(await request.body())
    except orjson.JSONDecodeError as exc:
        raise FhirError(
            400, [Issue("error", "structure", f"the body is not valid JSON: {exc}")]
        ) from None
    if_match = parse_if_match(request.headers.get("if-match"))
    svc = request.app.state.services
    try:
        result = await run_in_threadpool(put_plan, svc, national_id, body, actor, if_match=if_match)
    except DuplicateIdentifier as exc:
        raise error(409, "conflict", str(exc)) from None
    return json_response(
        result, 201 if result["version"] == 1 else 200, {"ETag": f'W/"{result["version"]}"'}
    )


@router.get("/{national_id}/plan")
def get_plan(national_id: str, request: Request, actor: Actor = Depends(require_actor)) -> Response:
    from interop.identifiers import person_id_system
    from interop.patients import patient_by_identifier

    if actor.role not in PLAN_ROLES:
        raise error(403, "forbidden", f"role {actor.role!r} may not read plans here")
    system = person_id_system(national_id)
    if system is None:
        raise error(422, "value", f"{national_id!r} is not a valid fødselsnummer or D-nummer")
    svc = request.app.state.services
    with svc.store.reader() as conn:
        pid = patient_by_identifier(conn, system, national_id)
        if pid is None:
            raise error(404, "not-found", f"no Patient with {system}|{national_id}")
        versions = plan_versions(conn, pid)
    active = [p for p in versions if p.get("status") == "active"]
    if not active:
        raise error(404, "not-found", "the patient has no active self-management plan")
    return json_response(
        {"version": len(versions), "carePlan": active[-1], "history": [p["id"] for p in versions]},
        headers={"ETag": f'W/"{len(versions)}"'},
    )
