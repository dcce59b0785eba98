"""``GET /api/v1/patients/{national-id}/summary?view=…``: JSON by default, HTML for browsers."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from starlette.responses import HTMLResponse, Response

from interop.api.auth import Actor, require_actor
from interop.api.responses import json_response
from interop.fhir.outcome import error
from interop.identifiers import person_id_system
from interop.patients import patient_by_identifier
from interop.views.summary import available_views, compute, public, render_html, view_definition

router = APIRouter(prefix="/api/v1/patients", tags=["views"])


@router.get("/{national_id}/summary")
def summary(
    national_id: str, request: Request, view: str = "gp", actor: Actor = Depends(require_actor)
) -> Response:
    try:
        definition = view_definition(view)
    except KeyError:
        raise error(
            400,
            "not-supported",
            f"view {view!r} is not defined; available: {', '.join(available_views())}",
        ) from None
    if not actor.is_admin and actor.role != definition.role and actor.role != "followup":
        raise error(
            403,
            "forbidden",
            f"the {view!r} view is for role {definition.role!r}, not {actor.role!r}",
        )
    system = person_id_system(national_id)
    if system is None:
        raise error(422, "value", f"{national_id!r} is not a valid fødselsnummer or D-nummer")
    svc = request.app.state.services
    with svc.store.reader() as conn:
        pid = patient_by_identifier(conn, system, national_id)
        if pid is None:
            raise error(404, "not-found", f"no Patient with {system}|{national_id}")
        result = compute(conn, pid, definition, zone_name=svc.settings.timezone)
    accept = request.headers.get("accept", "")
    if "text/html" in accept:
        return HTMLResponse(render_html(result, f"Pasient {national_id[:6]}*****"))
    return json_response(public(result))
