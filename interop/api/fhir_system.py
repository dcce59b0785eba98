"""Searches across types: the compartment search ``Patient/{id}/{type}`` and the system search
``GET /fhir?_type=A,B&…``. Each type is searched exactly as ``GET /fhir/{type}`` would (the
access policy restricts and filters it); pages follow one type after the other with a cursor.
"""

from __future__ import annotations

import base64
from typing import Any
from urllib.parse import parse_qsl, urlencode

import orjson
from fastapi import APIRouter, Depends, Request
from starlette.responses import Response

from interop.api.auth import Actor, require_actor
from interop.api.fhir import _check_type, _search, _strict, fhir_base, search_entries, services
from interop.api.responses import fhir_response
from interop.fhir.outcome import error, operation_outcome
from interop.fhir.searchparams import definitions
from interop.fhir.subset import requested as requested_subset
from interop.store.search import SearchRequest

router = APIRouter(prefix="/fhir")


@router.get("/Patient/{pid}/{rtype}")
async def compartment_search(
    pid: str, rtype: str, request: Request, actor: Actor = Depends(require_actor)
) -> Response:
    """``Patient/{id}/Observation?…``: the type's search, restricted to the patient."""
    _check_type(rtype)
    defs = definitions(rtype)
    if rtype == "Patient":
        link = ("_id", pid)
    elif "patient" in defs and defs["patient"].type == "reference":
        link = ("patient", f"Patient/{pid}")
    elif "subject" in defs and defs["subject"].type == "reference":
        link = ("subject", f"Patient/{pid}")
    else:
        raise error(404, "not-supported", f"{rtype} is not in the Patient compartment")
    params = parse_qsl(request.url.query, keep_blank_values=True)
    return await _search(request, rtype, [link, *params], actor)


def _encode(values: list[Any]) -> str:
    return base64.urlsafe_b64encode(orjson.dumps(values)).decode().rstrip("=")


def _decode(text: str) -> tuple[int, str | None]:
    try:
        index, cursor = orjson.loads(base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)))
        return int(index), cursor
    except (ValueError, TypeError, orjson.JSONDecodeError):
        raise error(
            400, "invalid", "the _cursor parameter is not valid (paging link damaged)"
        ) from None


@router.get("")
@router.get("/")
async def system_search(request: Request, actor: Actor = Depends(require_actor)) -> Response:
    from interop.fhir.validation import SUPPORTED_TYPES

    params = parse_qsl(request.url.query, keep_blank_values=True)
    types_raw = ",".join(v for k, v in params if k == "_type")
    types = [t.strip() for t in types_raw.split(",") if t.strip()]
    if not types:
        raise error(400, "required", "a system search names the types: ?_type=Patient,Condition")
    for t in types:
        if t not in SUPPORTED_TYPES:
            raise error(
                400, "not-supported", f"_type: unknown resource type {t!r}", expression=["_type"]
            )
    svc = services(request)
    rest = [(k, v) for k, v in params if k not in ("_type", "_cursor", "_count")]
    try:
        count = int(
            next((v for k, v in params if k == "_count"), svc.settings.search_default_count)
        )
    except ValueError:
        raise error(400, "invalid", "_count must be a number", expression=["_count"]) from None
    count = max(1, min(count, svc.settings.search_max_count))
    cursor_text = next((v for k, v in params if k == "_cursor"), None)
    index, cursor = _decode(cursor_text) if cursor_text else (0, None)
    base = fhir_base(request)
    if any(k == "_summary" and v == "count" for k, v in params):
        return await _system_count(request, actor, types, rest, base, params)
    subset = requested_subset(params)
    parts: list[bytes] = []
    warnings = []
    next_state: tuple[int, str | None] | None = None
    while index < len(types) and len(parts) < count:
        rtype = types[index]
        page_params = rest + [("_count", str(count - len(parts)))]
        if cursor:
            page_params.append(("_cursor", cursor))
        restriction = svc.policy.restriction(actor, rtype, rest)
        result = svc.search.search(
            SearchRequest(rtype, page_params, strict=_strict(request), restriction=restriction)
        )
        result = await svc.policy.filter_result_async(actor, rtype, result, rest)
        warnings += result.warnings
        parts += search_entries(base, rtype, result, subset)
        if result.next_cursor:
            next_state = (index, result.next_cursor)
            break
        index, cursor = index + 1, None
        if len(parts) >= count and index < len(types):
            next_state = (index, None)
    if warnings:
        parts.append(
            b'{"resource":'
            + orjson.dumps(operation_outcome(warnings))
            + b',"search":{"mode":"outcome"}}'
        )
    self_q = [(k, v) for k, v in params if k != "_cursor"]
    links = [{"relation": "self", "url": f"{base}?{urlencode(self_q)}"}]
    if next_state is not None:
        links.append(
            {
                "relation": "next",
                "url": f"{base}?{urlencode(self_q + [('_cursor', _encode(list(next_state)))])}",
            }
        )
    head = orjson.dumps({"resourceType": "Bundle", "type": "searchset", "link": links})
    return fhir_response(head[:-1] + b',"entry":[' + b",".join(parts) + b"]}")


async def _system_count(
    request: Request,
    actor: Actor,
    types: list[str],
    rest: list[tuple[str, str]],
    base: str,
    params: list[tuple[str, str]],
) -> Response:
    """``_summary=count`` across types: the sum of each type's count, as the policy restricts
    it (no total when one type's count is not exact)."""
    svc = services(request)
    total: int | None = 0
    warnings = []
    for rtype in types:
        restriction = svc.policy.restriction(actor, rtype, rest)
        result = svc.search.search(
            SearchRequest(rtype, rest, strict=_strict(request), restriction=restriction)
        )
        result = await svc.policy.filter_result_async(actor, rtype, result, rest)
        warnings += result.warnings
        total = None if total is None or result.total is None else total + result.total
    head: dict[str, Any] = {"resourceType": "Bundle", "type": "searchset"}
    if total is not None:
        head["total"] = total
    head["link"] = [{"relation": "self", "url": f"{base}?{urlencode(params)}"}]
    if warnings:
        head["entry"] = [{"resource": operation_outcome(warnings), "search": {"mode": "outcome"}}]
    return fhir_response(orjson.dumps(head))
