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


# ---- the plan's life cycle (interop.care.plan_lifecycle) -----------------------------------


async def _json_body(request: Request) -> object:
    try:
        return orjson.loads(await request.body() or b"{}")
    except orjson.JSONDecodeError as exc:
        raise FhirError(
            400, [Issue("error", "structure", f"the body is not valid JSON: {exc}")]
        ) from None


@router.get("/{national_id}/plan/proposal")
def plan_proposal(
    request: Request, access: PatientAccess = Depends(patient_access(Action.PLAN))
) -> Response:
    """Suggested personal thresholds from the start-up period's readings (median and spread,
    clamped to the guideline intervals), with the readings used. Never applied: a nurse
    edits it into a draft (``POST …/plan/drafts``) that the GP approves."""
    from interop.care.plan_proposal import baseline_proposal

    svc = request.app.state.services
    with svc.store.reader() as conn:
        return json_response(baseline_proposal(conn, access.patient_id))


@router.get("/{national_id}/plan/versions")
def plan_history(
    request: Request, access: PatientAccess = Depends(patient_access(Action.READ))
) -> Response:
    """Every plan the patient has had, oldest first, with its state."""
    from interop.care.plan_state import state_of

    svc = request.app.state.services
    with svc.store.reader() as conn:
        versions = plan_versions(conn, access.patient_id)
    return json_response(
        [
            {
                "id": p["id"],
                "state": state_of(p),
                "period": p.get("period"),
                "title": p.get("title"),
                "note": p.get("note", []),
            }
            for p in versions
        ]
    )


@router.post("/{national_id}/plan/drafts")
async def create_plan_draft(
    request: Request, access: PatientAccess = Depends(patient_access(Action.PLAN))
) -> Response:
    """A draft plan (zones, the patient's goals, per zone signs, actions, medication and
    contact). It judges nothing until the GP approves it."""
    from interop.care.plan_lifecycle import save_draft

    body = await _json_body(request)
    svc = request.app.state.services
    result = await run_in_threadpool(save_draft, svc, access.national_id, body, access.actor)
    return json_response(result, 201)


@router.put("/{national_id}/plan/drafts/{plan_id}")
async def revise_plan_draft(
    plan_id: str, request: Request, access: PatientAccess = Depends(patient_access(Action.PLAN))
) -> Response:
    """A new version of a draft's content (e.g. after the GP asked for changes)."""
    from interop.care.plan_lifecycle import save_draft

    body = await _json_body(request)
    svc = request.app.state.services
    result = await run_in_threadpool(
        lambda: save_draft(svc, access.national_id, body, access.actor, plan_id=plan_id)
    )
    return json_response(result)


@router.post("/{national_id}/plan/drafts/{plan_id}/propose")
async def propose_plan(
    plan_id: str, request: Request, access: PatientAccess = Depends(patient_access(Action.PLAN))
) -> Response:
    """Send the draft to the patient's GP for approval (Dialogmelding forespørsel)."""
    from interop.care.plan_lifecycle import propose

    svc = request.app.state.services
    result = await run_in_threadpool(propose, svc, access.national_id, plan_id, access.actor)
    return json_response(result)


@router.post("/{national_id}/plan/{plan_id}/approve")
async def approve_plan(
    plan_id: str,
    request: Request,
    access: PatientAccess = Depends(patient_access(Action.APPROVE_PLAN)),
) -> Response:
    """The patient's GP approves a proposed plan: it becomes the active plan (who may:
    ``approve-plan`` in ``mappings/access/actions.yaml``, for their own patients)."""
    from interop.care.plan_lifecycle import approve_by_gp

    svc = request.app.state.services
    result = await run_in_threadpool(approve_by_gp, svc, access.national_id, plan_id, access.actor)
    return json_response(result)


@router.post("/{national_id}/plan/{plan_id}/revoke")
async def revoke_plan(
    plan_id: str, request: Request, access: PatientAccess = Depends(patient_access(Action.PLAN))
) -> Response:
    """Revoke the active plan (``{"reason": …}``): from now the defaults judge again."""
    from interop.care.plan_lifecycle import revoke

    body = await _json_body(request)
    reason = body.get("reason") if isinstance(body, dict) else None
    svc = request.app.state.services
    result = await run_in_threadpool(
        revoke, svc, access.national_id, plan_id, access.actor, str(reason) if reason else None
    )
    return json_response(result)


@router.get("/{national_id}/plan/nhn-status")
async def nhn_careplan_status(
    request: Request, access: PatientAccess = Depends(patient_access(Action.READ))
) -> Response:
    """Whether NHN's older careplan service (HIT careplan) has an active care plan for the
    patient, and when it last changed, in Norwegian (``text``); asked for this patient only,
    after the access check."""
    from interop.national.careplan_status import CareplanStatusError
    from interop.national.tenants import TenantConfigError
    from interop.national.wiring import careplan_status_client

    svc = request.app.state.services
    try:
        api = careplan_status_client(svc.settings)
    except (CareplanStatusError, TenantConfigError) as exc:
        raise error(503, "exception", f"the careplan service is not usable: {exc}") from None
    if api is None:
        raise error(503, "not-supported", "INTEROP_NHN_CAREPLAN_BASE_URL is not set")
    try:
        status = await run_in_threadpool(api.status, access.national_id)
    except CareplanStatusError as exc:
        if exc.status == 400:  # the number cannot be asked about here (a test number)
            raise error(422, "value", str(exc)) from None
        raise error(503 if exc.transient else 502, "exception", str(exc)) from None
    return json_response(status.as_json(svc.settings.timezone))


@router.post("/{national_id}/plan/import-nhn")
async def import_nhn_plan(
    request: Request, access: PatientAccess = Depends(patient_access(Action.PLAN))
) -> Response:
    """Fetch the patient's plan from NHN Pasientens planer and save it as a draft
    (``{"nhnId": …}`` picks one of several): its zones are text, so it judges nothing until a
    nurse has set limits and the GP has approved it."""
    from interop.national.plans_api import PlansApiError
    from interop.national.plans_import import import_nhn_plan as run_import
    from interop.national.wiring import plans_client

    body = await _json_body(request) if await request.body() else {}
    nhn_id = body.get("nhnId") if isinstance(body, dict) else None
    svc = request.app.state.services
    try:
        api = plans_client(svc.settings)
    except PlansApiError as exc:
        raise error(503, "exception", f"Pasientens planer is not usable: {exc}") from None
    if api is None:
        raise error(503, "not-supported", "INTEROP_NHN_PLANS_BASE_URL is not set")
    result = await run_in_threadpool(
        lambda: run_import(
            svc, api, access.national_id, access.actor, nhn_id=str(nhn_id) if nhn_id else None
        )
    )
    return json_response(result, 201)
