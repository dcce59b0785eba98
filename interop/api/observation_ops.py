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


async def _params(request: Request) -> tuple[list[tuple[str, str]], bool]:
    """The operation's parameters, and whether they came as a ``Parameters`` resource (then
    the answer is one too)."""
    params = parse_qsl(request.url.query, keep_blank_values=True)
    if request.method == "POST":
        body = await request.body()
        ctype = request.headers.get("content-type", "")
        if "json" in ctype and body.strip():
            max_depth = services(request).settings.json_max_depth
            params += _parameters(load_json(body, max_depth))
            return params, True
        params += parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True)
    return params, False


def _complex_value(where: str, name: str, key: str, value: Any) -> str:
    """``period`` as a ``valuePeriod`` (→ ``start/end``) and ``coding`` as a ``valueCoding``
    (→ ``system|code``), the forms the GET parameters take (the types the OperationDefinition
    gives them); 400 naming the element for anything else."""
    if (name, key) == ("period", "valuePeriod") and isinstance(value, dict):
        start, end = value.get("start", ""), value.get("end", "")
        if isinstance(start, str) and isinstance(end, str) and (start or end):
            return f"{start}/{end}"
    if (
        (name, key) == ("coding", "valueCoding")
        and isinstance(value, dict)
        and isinstance(value.get("code"), str)
    ):
        system = value.get("system")
        return f"{system}|{value['code']}" if isinstance(system, str) else value["code"]
    raise error(
        400,
        "not-supported",
        f"{where}.{key}: only primitive values, period as valuePeriod and coding as valueCoding "
        "are supported here",
        expression=[f"{where}.{key}"],
    )


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
                out.append((p["name"], _complex_value(where, p["name"], key, value)))
                continue
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
    asked, _ = await _params(request)
    check_search_values(asked, services(request).settings.search_max_values)
    params = policy.filter_search(actor, "Observation", asked)
    rows = lastn(services(request).store, _grouped(params))
    result = await policy.filter_result_async(
        actor, "Observation", SearchResult(rows, total=len(rows)), asked
    )
    return fhir_response(bundle_bytes(request, "Observation", result, params, "Observation/$lastn"))


@router.api_route("/$stats", methods=["GET", "POST"])
async def observation_stats(request: Request, actor: Actor = Depends(require_actor)) -> Response:
    svc = services(request)
    policy = svc.policy
    asked, as_parameters = await _params(request)
    check_search_values(asked, svc.settings.search_max_values)
    params = policy.filter_search(actor, "Observation", asked)
    observations = stats(svc.store, _grouped(params))
    rows = [(o["id"], orjson.dumps(o)) for o in observations]
    result = await policy.filter_result_async(
        actor, "Observation", SearchResult(rows, total=len(rows)), asked
    )
    if not as_parameters:
        return fhir_response(
            bundle_bytes(request, "Observation", result, params, "Observation/$stats")
        )
    # the OperationDefinition's answer: Parameters with ``statistics`` and (include=true)
    # ``source``, each source as stored and read through the policy like any other read
    parts = [b'{"name":"statistics","resource":' + content + b"}" for _, content in result.rows]
    source_ids = [
        ref["reference"].partition("/")[2]
        for o in observations
        for ref in o.get("derivedFrom", [])
        if any(o["id"] == rid for rid, _ in result.rows)
    ]
    if source_ids:
        found = [
            (s.res_id, s.content)
            for s in (svc.store.get("Observation", rid) for rid in dict.fromkeys(source_ids))
            if s is not None and not s.deleted
        ]
        sources = await policy.filter_result_async(
            actor, "Observation", SearchResult(found, total=len(found)), asked
        )
        parts += [b'{"name":"source","resource":' + content + b"}" for _, content in sources.rows]
    return fhir_response(b'{"resourceType":"Parameters","parameter":[' + b",".join(parts) + b"]}")
