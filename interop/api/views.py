"""``GET /api/v1/patients/{national-id}/summary?view=…``: JSON by default, HTML for browsers."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

import orjson
from fastapi import APIRouter, Depends, Request
from sqlalchemy import select
from starlette.responses import HTMLResponse, Response

from interop.access.policy import Action
from interop.api.auth import Actor, require_actor
from interop.api.patient_access import PatientAccess, patient_access
from interop.api.responses import json_response
from interop.fhir.outcome import error
from interop.patients import display_name
from interop.store.schema import resource_table
from interop.text import text
from interop.views.summary import (
    ViewDefinition,
    available_views,
    compute,
    public,
    render_html,
    view_definition,
)

router = APIRouter(prefix="/api/v1/patients", tags=["views"])
router_fhir = APIRouter(tags=["fhir"])


def _view_for(actor: Actor, view: str) -> ViewDefinition:
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
    return definition


EVENTS_ON_PAGE = 30
"""Events the HTML page lists before "viser 30 av N" and its link to all of them."""
EVENTS_IN_JSON = 100


@router.get("/{national_id}/summary")
def summary(
    request: Request,
    view: str = "gp",
    events: str | None = None,
    access: PatientAccess = Depends(patient_access(Action.READ)),
) -> Response:
    """The actor's summary of the patient. Events come red first; ``events=all`` lists every
    one (otherwise the page shows 30 and the JSON 100, each saying how many there are)."""
    if events not in (None, "all"):
        raise error(400, "value", "events: use 'all' or leave it out")
    definition = _view_for(access.actor, view)
    svc = request.app.state.services
    html = "text/html" in request.headers.get("accept", "")
    limit = None if events == "all" or html else EVENTS_IN_JSON
    with svc.store.reader() as conn:
        result = compute(
            conn,
            access.patient_id,
            definition,
            zone_name=svc.settings.timezone,
            event_limit=limit,
        )
        stored = svc.store.get("Patient", access.patient_id, conn)
    if html:
        name = display_name(stored.json()) if stored is not None else None
        label = text(
            "summary.patient",
            name=name or text("worklist.unknown_name"),
            national_id=access.national_id,
        )
        link = (
            None
            if events == "all"
            else f"{request.url.path}?{urlencode({'view': view, 'events': 'all'})}#events"
        )
        return HTMLResponse(render_html(result, label, svc.settings.timezone, link, EVENTS_ON_PAGE))
    return json_response(public(result))


@router_fhir.get("/fhir/Patient/{patient_id}/$summary")
def fhir_summary(
    patient_id: str, request: Request, view: str = "gp", actor: Actor = Depends(require_actor)
) -> Response:
    """The same summary as a FHIR Bundle: one statistics Observation per code, plus Flags/Tasks."""
    definition = _view_for(actor, view)
    svc = request.app.state.services
    svc.store.read("Patient", patient_id)  # 404 for an unknown id
    svc.policy.require_patient(actor, patient_id, Action.READ, f"Patient/{patient_id}/$summary")
    with svc.store.reader() as conn:
        result = compute(conn, patient_id, definition, zone_name=svc.settings.timezone)
        entries: list[dict[str, Any]] = []
        for c in result["codes"]:
            comps = []
            for name, value in (
                ("minimum", c["min"]),
                ("average", c["mean"]),
                ("maximum", c["max"]),
                ("count", c["count"]),
            ):
                q: dict[str, Any] = {"value": value}
                if name != "count" and c["unit"]:
                    q.update(
                        {
                            "unit": c["unit"],
                            "system": "http://unitsofmeasure.org",
                            "code": c["unit"],
                        }
                    )
                comps.append(
                    {
                        "code": {
                            "coding": [
                                {
                                    "system": "http://terminology.hl7.org/CodeSystem/observation-statistics",
                                    "code": name,
                                }
                            ]
                        },
                        "valueQuantity": q,
                    }
                )
            obs: dict[str, Any] = {
                "resourceType": "Observation",
                "status": "final",
                "code": {
                    "coding": [
                        {"system": "http://loinc.org", "code": c["code"], "display": c["display"]}
                    ]
                },
                "subject": {"reference": f"Patient/{patient_id}"},
                "effectivePeriod": {
                    "start": result["period"]["start"],
                    "end": result["period"]["end"],
                },
                "component": comps,
            }
            if c["latest"]["zone"]:
                obs["interpretation"] = [
                    {
                        "coding": [
                            {
                                "system": "https://dho-interop.no/fhir/CodeSystem/zone",
                                "code": c["latest"]["zone"],
                            }
                        ],
                        "text": "zone of the latest measurement",
                    }
                ]
            if c["trendPerWeek"] is not None:
                obs["note"] = [
                    {
                        "text": f"trend {c['trendPerWeek']:+.3f} {c['unit'] or ''} per week; share green {c['shareGreen']}"
                    }
                ]
            entries.append({"resource": obs})
        for rtype in ("Flag", "Task"):
            for (content,) in conn.execute(
                select(resource_table.c.content).where(
                    resource_table.c.res_type == rtype,
                    resource_table.c.patient_id == patient_id,
                    resource_table.c.deleted.is_(False),
                )
            ):
                res = orjson.loads(content)
                if (rtype == "Flag" and res.get("status") == "active") or (
                    rtype == "Task"
                    and res.get("status") not in ("completed", "cancelled", "entered-in-error")
                ):
                    entries.append({"fullUrl": f"{rtype}/{res['id']}", "resource": res})
    bundle = {
        "resourceType": "Bundle",
        "type": "collection",
        "timestamp": result["period"]["end"],
        "entry": entries,
    }
    return Response(orjson.dumps(bundle), media_type="application/fhir+json")
