"""Routes for ``Observation/$lastn`` and ``Observation/$stats`` (GET and POST)."""

from __future__ import annotations

from collections import defaultdict
from typing import Any
from urllib.parse import parse_qsl

import orjson
from fastapi import APIRouter, Depends, Request
from starlette.responses import Response

from interop.api.auth import Actor, require_actor
from interop.api.fhir import bundle_bytes, services
from interop.api.responses import fhir_response, load_json
from interop.fhir.capability import register_operation
from interop.fhir.outcome import error
from interop.store.observation_ops import lastn, stats
from interop.store.search import SearchResult, check_search_values

router = APIRouter(prefix="/fhir/Observation", tags=["fhir"])
register_operation(
    "Observation", "lastn", "http://hl7.org/fhir/OperationDefinition/Observation-lastn"
)
register_operation(
    "Observation", "stats", "http://hl7.org/fhir/OperationDefinition/Observation-stats"
)


async def _params(request: Request) -> list[tuple[str, str]]:
    params = parse_qsl(request.url.query, keep_blank_values=True)
    if request.method == "POST":
        body = await request.body()
        ctype = request.headers.get("content-type", "")
        if "json" in ctype and body.strip():
            max_depth = services(request).settings.json_max_depth
            params += _parameters(load_json(body, max_depth))
        else:
            params += parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True)
    return params


def _parameters(data: Any) -> list[tuple[str, str]]:
    """The (name, value) pairs of a Parameters body; 400 naming the element that is wrong."""
    if not isinstance(data, dict) or data.get("resourceType", "Parameters") != "Parameters":
        raise error(400, "structure", "the JSON body must be a Parameters resource")
    parameter = data.get("parameter", [])
    if not isinstance(parameter, list):
        raise error(
            400, "structure", "Parameters.parameter must be a list", expression=["parameter"]
        )
    out: list[tuple[str, str]] = []
    for i, p in enumerate(parameter):
        where = f"Parameters.parameter[{i}]"
        if not isinstance(p, dict) or not isinstance(p.get("name"), str) or not p["name"]:
            raise error(400, "required", f"{where}.name is missing", expression=[f"{where}.name"])
        for key, value in p.items():
            if not key.startswith("value"):
                continue
            if isinstance(value, dict | list) or value is None:
                raise error(
                    400,
                    "not-supported",
                    f"{where}.{key}: only primitive values are supported here",
                    expression=[f"{where}.{key}"],
                )
            out.append((p["name"], str(value).lower() if isinstance(value, bool) else str(value)))
    return out


def _grouped(params: list[tuple[str, str]]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = defaultdict(list)
    for k, v in params:
        out[k].append(v)
    return out


@router.api_route("/$lastn", methods=["GET", "POST"])
async def observation_lastn(request: Request, actor: Actor = Depends(require_actor)) -> Response:
    policy = services(request).policy
    asked = await _params(request)
    check_search_values(asked, services(request).settings.search_max_values)
    params = policy.filter_search(actor, "Observation", asked)
    rows = lastn(services(request).store, _grouped(params))
    result = await policy.filter_result_async(
        actor, "Observation", SearchResult(rows, total=len(rows)), asked
    )
    return fhir_response(bundle_bytes(request, "Observation", result, params, "Observation/$lastn"))


@router.api_route("/$stats", methods=["GET", "POST"])
async def observation_stats(request: Request, actor: Actor = Depends(require_actor)) -> Response:
    policy = services(request).policy
    asked = await _params(request)
    check_search_values(asked, services(request).settings.search_max_values)
    params = policy.filter_search(actor, "Observation", asked)
    observations = stats(services(request).store, _grouped(params))
    rows = [(o["id"], orjson.dumps(o)) for o in observations]
    result = await policy.filter_result_async(
        actor, "Observation", SearchResult(rows, total=len(rows)), asked
    )
    return fhir_response(bundle_bytes(request, "Observation", result, params, "Observation/$stats"))
