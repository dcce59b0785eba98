"""Routes for ``Observation/$lastn`` and ``Observation/$stats`` (GET and POST)."""

from __future__ import annotations

from collections import defaultdict
from urllib.parse import parse_qsl

import orjson
from fastapi import APIRouter, Depends, Request
from starlette.responses import Response

from interop.api.auth import Actor, require_actor
from interop.api.fhir import bundle_bytes, services
from interop.api.responses import fhir_response
from interop.fhir.capability import register_operation
from interop.store.observation_ops import lastn, stats
from interop.store.search import SearchResult

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
            data = orjson.loads(body)
            for p in data.get("parameter", []) if isinstance(data, dict) else []:
                for key, value in p.items():
                    if key.startswith("value"):
                        params.append(
                            (
                                p["name"],
                                str(value).lower() if isinstance(value, bool) else str(value),
                            )
                        )
        else:
            params += parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True)
    return params


def _grouped(params: list[tuple[str, str]]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = defaultdict(list)
    for k, v in params:
        out[k].append(v)
    return out


@router.api_route("/$lastn", methods=["GET", "POST"])
async def observation_lastn(request: Request, actor: Actor = Depends(require_actor)) -> Response:
    policy = services(request).policy
    asked = await _params(request)
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
    params = policy.filter_search(actor, "Observation", asked)
    observations = stats(services(request).store, _grouped(params))
    rows = [(o["id"], orjson.dumps(o)) for o in observations]
    result = await policy.filter_result_async(
        actor, "Observation", SearchResult(rows, total=len(rows)), asked
    )
    return fhir_response(bundle_bytes(request, "Observation", result, params, "Observation/$stats"))
