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
from interop.api.fhir import (
    _check_type,
    _search,
    _strict,
    compartment_params,
    fhir_base,
    search_entries,
    services,
)
from interop.api.fhir_operations import NOT_IN_EVERYTHING, _types
from interop.api.responses import fhir_response
from interop.fhir.outcome import error, operation_outcome
from interop.fhir.subset import requested as requested_subset
from interop.store import compartment, meta_index
from interop.store.search import SearchRequest

router = APIRouter(prefix="/fhir")


@router.get("/Patient/{pid}/{rtype}")
async def compartment_search(
    pid: str, rtype: str, request: Request, actor: Actor = Depends(require_actor)
) -> Response:
    """``Patient/{id}/Observation?…``: the type's search, restricted to what is in the
    patient's compartment through any link the CompartmentDefinition names for the type
    (:mod:`interop.store.compartment`); ``Patient/{id}/*?…``: every type of the compartment
    the actor may search, one after the other (:func:`compartment_all`). The policy restricts
    and filters each on the resources' own patients, as it does a type search."""
    if rtype == "*":
        return await compartment_all(pid, request, actor)
    _check_type(rtype)
    if not compartment.in_compartment(rtype):
        raise error(404, "not-supported", f"{rtype} is not in the Patient compartment")
    params = parse_qsl(request.url.query, keep_blank_values=True)
    return await _search(request, rtype, params, actor, compartment=pid)


def compartment_types() -> list[str]:
    """Every supported type of the Patient compartment (the CompartmentDefinition's types
    with a link the type defines), by name."""
    from interop.fhir.validation import SUPPORTED_TYPES

    return [t for t in sorted(SUPPORTED_TYPES) if compartment.in_compartment(t)]


async def compartment_all(pid: str, request: Request, actor: Actor) -> Response:
    """``Patient/{id}/*``: the compartment's types the actor may search (or those ``_type``
    names), each searched as ``Patient/{id}/{type}`` would be (restricted, filtered and
    audited by the policy), paged one type after the other. The client's parameters apply to
    every type, so one a type does not know is refused (400 naming it), never ignored."""
    svc = services(request)
    params = parse_qsl(request.url.query, keep_blank_values=True)
    linked = compartment_types()
    asked = _types(request)  # as $everything reads it (an unknown type: 400)
    if asked:
        # the types named, each searched as the system search would (a refused one: 403)
        if any(t not in linked for t in asked):
            raise error(
                400,
                "not-supported",
                f"_type: {', '.join(t for t in asked if t not in linked)} is not searched in "
                "the Patient compartment",
                expression=["_type"],
            )
        present = list(dict.fromkeys(asked))
    else:
        # the access log is in the compartment but not the record ($everything leaves it out)
        searchable = svc.policy.searchable(actor, [t for t in linked if t not in NOT_IN_EVERYTHING])
        with svc.store.reader() as conn:
            present = meta_index.types_present(conn, searchable)
    searches: list[tuple[str, list[tuple[str, str]]]] = [(t, []) for t in present]
    return await paged_types(request, actor, searches, params, f"Patient/{pid}/*", pid)


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
    return await paged_types(request, actor, [(t, []) for t in types], params, "")


async def paged_types(
    request: Request,
    actor: Actor,
    searches: list[tuple[str, list[tuple[str, str]]]],
    params: list[tuple[str, str]],
    path: str,
    in_compartment: str | None = None,
) -> Response:
    """One searchset over several types: each (type, added parameters) searched with the
    client's ``params`` as ``GET /fhir/{type}`` would be (the policy restricts, filters and
    audits each page), the pages following one type after the other with a cursor; ``path``
    is the links' path below the base; ``in_compartment``: each in that Patient's
    compartment."""
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
    link_base = f"{base}/{path}" if path else base
    if any(k == "_summary" and v == "count" for k, v in params):
        return await _system_count(
            request, actor, searches, rest, link_base, params, in_compartment
        )
    subset = requested_subset(params)
    parts: list[bytes] = []
    warnings = []
    next_state: tuple[int, str | None] | None = None
    while index < len(searches) and len(parts) < count:
        rtype, added = searches[index]
        asked, linked = compartment_params(svc.search, rtype, added + rest, in_compartment)
        page_params = asked + [("_count", str(count - len(parts)))]
        if not any(k == "_total" for k, _v in asked):
            page_params.append(("_total", "none"))  # the Bundle carries no total: not counted
        if cursor:
            page_params.append(("_cursor", cursor))
        restriction = svc.policy.restriction(actor, rtype, asked)
        result = svc.search.search(
            SearchRequest(
                rtype,
                page_params,
                strict=_strict(request),
                restriction=restriction,
                compartment=linked,
            )
        )
        result = await svc.policy.filter_result_async(
            actor, rtype, result, asked, compartment=linked
        )
        warnings += result.warnings
        parts += search_entries(base, rtype, result, subset)
        if result.next_cursor:
            next_state = (index, result.next_cursor)
            break
        index, cursor = index + 1, None
        if len(parts) >= count and index < len(searches):
            next_state = (index, None)
    if warnings:
        parts.append(
            b'{"resource":'
            + orjson.dumps(operation_outcome(warnings))
            + b',"search":{"mode":"outcome"}}'
        )
    self_q = [(k, v) for k, v in params if k != "_cursor"]
    links = [{"relation": "self", "url": f"{link_base}?{urlencode(self_q)}"}]
    if next_state is not None:
        links.append(
            {
                "relation": "next",
                "url": f"{link_base}?{urlencode(self_q + [('_cursor', _encode(list(next_state)))])}",
            }
        )
    head = orjson.dumps({"resourceType": "Bundle", "type": "searchset", "link": links})
    return fhir_response(head[:-1] + b',"entry":[' + b",".join(parts) + b"]}")


async def _system_count(
    request: Request,
    actor: Actor,
    searches: list[tuple[str, list[tuple[str, str]]]],
    rest: list[tuple[str, str]],
    base: str,
    params: list[tuple[str, str]],
    in_compartment: str | None = None,
) -> Response:
    """``_summary=count`` across types: the sum of each type's count, as the policy restricts
    it (no total when one type's count is not exact)."""
    svc = services(request)
    total: int | None = 0
    warnings = []
    for rtype, added in searches:
        asked, linked = compartment_params(svc.search, rtype, added + rest, in_compartment)
        restriction = svc.policy.restriction(actor, rtype, asked)
        result = svc.search.search(
            SearchRequest(
                rtype,
                asked,
                strict=_strict(request),
                restriction=restriction,
                compartment=linked,
            )
        )
        result = await svc.policy.filter_result_async(
            actor, rtype, result, asked, compartment=linked
        )
        warnings += result.warnings
        total = None if total is None or result.total is None else total + result.total
    head: dict[str, Any] = {"resourceType": "Bundle", "type": "searchset"}
    if total is not None:
        head["total"] = total
    head["link"] = [{"relation": "self", "url": f"{base}?{urlencode(params)}"}]
    if warnings:
        head["entry"] = [{"resource": operation_outcome(warnings), "search": {"mode": "outcome"}}]
    return fhir_response(orjson.dumps(head))
