"""FHIR R4 REST API at ``/fhir``: CRUD, history, search, batch/transaction.

Reads serve the stored bytes; search Bundles are assembled from stored bytes without
re-serialising the resources.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl, urlencode

import orjson
from fastapi import APIRouter, Depends, Request
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from interop.api.auth import Actor, require_actor
from interop.api.group_commit import GroupCommitter
from interop.api.responses import fhir_response, json_response, not_modified, parse_json_body
from interop.fhir.capability import capability_statement
from interop.fhir.dates import fhir_instant
from interop.fhir.outcome import Issue, error, operation_outcome
from interop.fhir.subset import requested as requested_subset
from interop.fhir.validation import SUPPORTED_TYPES, validate_resource
from interop.services import Services
from interop.store.context import Door, WriteContext
from interop.store.repository import DuplicateIdentifier, StoredResource, issue_for_duplicate
from interop.store.search import SearchEngine, SearchRequest, SearchResult
from interop.store.transaction import parse_if_match

router = APIRouter(prefix="/fhir")

FAST_ROUTES: list[tuple[str, str, object]] = []
"""(path, endpoint) of GET routes served without FastAPI's dependency machinery: they are the
hot paths (read by id, search) and do their own authentication with :func:`require_actor`."""


def services(request: Request) -> Services:
    svc: Services = request.app.state.services
    return svc


def fhir_base(request: Request) -> str:
    """Absolute base of the FHIR API as the client sees it (or as configured)."""
    configured = services(request).settings.base_url
    if configured:
        return configured.rstrip("/") + "/fhir"
    return str(request.base_url).rstrip("/") + "/fhir"


def _check_type(rtype: str) -> None:
    if rtype not in SUPPORTED_TYPES:
        raise error(404, "not-supported", f"resource type {rtype!r} is not supported here")


def _check_accept(request: Request) -> None:
    fmt = request.query_params.get("_format")
    if fmt and "xml" in fmt:
        raise error(406, "not-supported", "only JSON is supported (_format=json)")
    accept = request.headers.get("accept", "")
    if accept and "xml" in accept and "json" not in accept and "*/*" not in accept:
        raise error(406, "not-supported", "only application/fhir+json is supported")


def _resource_headers(stored: StoredResource) -> dict[str, str]:
    return {
        "ETag": stored.etag,
        "Last-Modified": stored.last_modified,
        "Location": f"{stored.res_type}/{stored.res_id}/_history/{stored.version}",
    }


def _write_response(request: Request, stored: StoredResource, status: int) -> Response:
    prefer = request.headers.get("prefer", "")
    headers = _resource_headers(stored)
    if "return=minimal" in prefer:
        return Response(status_code=status, headers=headers)
    if "return=OperationOutcome" in prefer:
        return json_response(
            operation_outcome(
                [Issue("information", "informational", f"{stored.reference} stored")]
            ),
            status,
            headers,
        )
    return fhir_response(stored.content, status, headers)


def _strict(request: Request) -> bool:
    """A search parameter the server does not support is refused (400 naming it), so that a
    search over patient data is never silently widened; ``Prefer: handling=lenient`` asks for
    it to be ignored with a warning in the Bundle instead."""
    return "handling=lenient" not in request.headers.get("prefer", "")


@router.get("/metadata")
async def metadata(request: Request) -> Response:
    services(request)
    cached = getattr(request.app.state, "capability_bytes", None)
    if cached is None:
        from interop.api.smart import capability_security

        cs = capability_statement(
            fhir_base(request)[: -len("/fhir")],
            datetime.now(UTC).isoformat(timespec="seconds"),
            capability_security(services(request).settings),
        )
        cached = orjson.dumps(cs)
        request.app.state.capability_bytes = cached
    return fhir_response(cached)


@router.post("")
@router.post("/")
async def batch_or_transaction(request: Request, actor: Actor = Depends(require_actor)) -> Response:
    _check_accept(request)
    bundle = await parse_json_body(request)
    svc = services(request)
    # each entry is decided by the policy: reads through it, writes by the store's guard.
    # In a worker thread: a Bundle of 100 holds its transaction for tens of milliseconds,
    # mostly waiting on the database, and on the event loop every other request of the
    # process (a GP's read, another Bundle) waited with it
    body = await run_in_threadpool(svc.bundles.process, bundle, WriteContext(actor, Door.BUNDLE))
    return fhir_response(body)


def search_entries(base: str, rtype: str, result: Any, subset: Any = None) -> list[bytes]:
    """A search result's matches and includes as Bundle entries, from the stored bytes (cut
    to ``_elements``/``_summary`` when ``subset`` is given)."""
    parts = []
    for rid, content in result.rows:
        if subset is not None:
            content = subset.apply(content)
        parts.append(
            b'{"fullUrl":"'
            + f"{base}/{rtype}/{rid}".encode()
            + b'","resource":'
            + content
            + b',"search":{"mode":"match"}}'
        )
    for itype, iid, content in result.included:
        if subset is not None:
            content = subset.apply(content)
        parts.append(
            b'{"fullUrl":"'
            + f"{base}/{itype}/{iid}".encode()
            + b'","resource":'
            + content
            + b',"search":{"mode":"include"}}'
        )
    return parts


def bundle_bytes(
    request: Request,
    rtype: str,
    result: SearchResult,
    params: list[tuple[str, str]],
    path: str | None = None,
) -> bytes:
    """A searchset Bundle from stored bytes; ``path`` is the link path when not ``rtype``."""
    base = fhir_base(request)
    path = path or rtype
    head: dict[str, Any] = {"resourceType": "Bundle", "type": "searchset"}
    if result.total is not None:
        head["total"] = result.total
    # the self link lists the parameters the search applied (not blank or ignored ones)
    ignored = set(result.ignored)
    used = [(k, v) for k, v in params if (k, v) not in ignored]
    self_q = [(k, v) for k, v in used if k != "_cursor"]
    links = [{"relation": "self", "url": f"{base}/{path}?{urlencode(used)}"}]
    if result.next_cursor:
        links.append(
            {
                "relation": "next",
                "url": f"{base}/{path}?{urlencode(self_q + [('_cursor', result.next_cursor)])}",
            }
        )
    head["link"] = links
    if result.summary_count:
        return orjson.dumps(head)
    subset = requested_subset(params)
    parts = search_entries(base, rtype, result, subset)
    if result.warnings:
        parts.append(
            b'{"resource":'
            + orjson.dumps(operation_outcome(result.warnings))
            + b',"search":{"mode":"outcome"}}'
        )
    return orjson.dumps(head)[:-1] + b',"entry":[' + b",".join(parts) + b"]}"


async def _search(
    request: Request,
    rtype: str,
    params: list[tuple[str, str]],
    actor: Actor,
    compartment: str | None = None,
) -> Response:
    """A type search (``compartment``: in that Patient's compartment, ``Patient/{id}/{type}``)."""
    _check_type(rtype)
    _check_accept(request)
    svc = services(request)
    asked, in_compartment = compartment_params(svc.search, rtype, params, compartment)
    restriction = svc.policy.restriction(actor, rtype, asked)
    result = svc.search.search(
        SearchRequest(
            rtype,
            asked,
            strict=_strict(request),
            restriction=restriction,
            compartment=in_compartment,
        )
    )
    result = await svc.policy.filter_result_async(
        actor, rtype, result, asked, compartment=in_compartment
    )
    # the links repeat what the client asked; each page is restricted again
    path = f"Patient/{compartment}/{rtype}" if compartment is not None else None
    return fhir_response(bundle_bytes(request, rtype, result, params, path))


def compartment_params(
    engine: SearchEngine, rtype: str, params: list[tuple[str, str]], pid: str | None
) -> tuple[list[tuple[str, str]], str | None]:
    """(parameters, compartment) of a search in ``pid``'s compartment: the own link added as a
    parameter when that is the whole compartment (the policy then narrows the search to the
    patient, as it does ``?patient=``), else every link (the policy restricting to all the
    actor's patients: a resource of another patient that names this one is in the
    compartment, and shown only to whom may read its own patient's data)."""
    if pid is None:
        return params, None
    link = engine.compartment_link(rtype, pid)
    if link is not None:
        return [link, *params], None
    return params, pid


async def search_type(request: Request) -> Response:
    """GET /fhir/{type}?… — a plain Starlette endpoint (see app.py)."""
    actor = await require_actor(request)
    params = parse_qsl(request.url.query, keep_blank_values=True)
    return await _search(request, request.path_params["rtype"], params, actor)


@router.post("/{rtype}/_search")
async def search_post(
    rtype: str, request: Request, actor: Actor = Depends(require_actor)
) -> Response:
    body = (await request.body()).decode("utf-8", errors="replace")
    params = parse_qsl(request.url.query, keep_blank_values=True) + parse_qsl(
        body, keep_blank_values=True
    )
    return await _search(request, rtype, params, actor)


async def create(request: Request) -> Response:
    """POST /fhir/{type} — a plain Starlette endpoint (see app.py); plain creates are group-committed."""
    actor = await require_actor(request)
    rtype = request.path_params["rtype"]
    _check_type(rtype)
    _check_accept(request)
    resource = await parse_json_body(request)
    svc = services(request)
    if isinstance(resource, dict) and resource.get("resourceType") != rtype:
        raise error(
            400,
            "invalid",
            f"resourceType {resource.get('resourceType')!r} does not match the endpoint {rtype}",
            expression=["resourceType"],
        )
    validate_resource(resource, expected_type=rtype)
    resource.pop("id", None)  # the server assigns ids on create
    # the store's guard decides whether the actor may write it (svc.policy.guard_write)
    # criteria in the query string (fhirpy's get_or_create) are a conditional create too,
    # never ignored
    if_none_exist = request.headers.get("if-none-exist") or _query_criteria(request)
    try:
        if if_none_exist:
            with svc.store.write(WriteContext(actor, Door.FHIR)) as tx:
                existing = svc.bundles.conditional_match(rtype, if_none_exist, tx)
                if existing is not None:
                    return _write_response(request, existing, 200)
                stored = tx.create(resource, validate=False)
        else:
            committer = getattr(request.app.state, "group_commit", None)
            if committer is None or committer.store is not svc.store:
                committer = request.app.state.group_commit = GroupCommitter(svc.store)
            stored = await committer.create(resource, actor)
    except DuplicateIdentifier as exc:
        raise issue_for_duplicate(exc) from None
    return _write_response(request, stored, 201)


def _query_criteria(request: Request) -> str | None:
    if not request.scope.get("query_string"):
        return None  # the common case, without building the request's URL
    query = [
        (k, v)
        for k, v in parse_qsl(request.url.query, keep_blank_values=True)
        if k not in ("_format", "_pretty")
    ]
    return urlencode(query) if query else None


async def read(request: Request) -> Response:
    """GET /fhir/{type}/{id} — the hottest route: a plain Starlette endpoint (see app.py)."""
    actor = await require_actor(request)
    rtype = request.path_params["rtype"]
    rid = request.path_params["rid"]
    _check_type(rtype)
    svc = services(request)
    stored = await svc.store.read_async(rtype, rid)
    await svc.policy.check_read_async(actor, stored)
    if not_modified(request.headers, stored.etag, stored.last_updated):
        return Response(status_code=304, headers=_resource_headers(stored))
    return fhir_response(
        stored.content, 200, {"ETag": stored.etag, "Last-Modified": stored.last_modified}
    )


@router.put("/{rtype}/{rid}")
async def update(
    rtype: str, rid: str, request: Request, actor: Actor = Depends(require_actor)
) -> Response:
    _check_type(rtype)
    _check_accept(request)
    resource = await parse_json_body(request)
    if isinstance(resource, dict) and "id" not in resource:
        raise error(
            400, "required", "an update must carry the resource id in the body", expression=["id"]
        )
    svc = services(request)
    validate_resource(resource, expected_type=rtype)
    # checked by the store's guard against the stored version and the new one
    if_match = parse_if_match(request.headers.get("if-match"))
    try:
        with svc.store.write(WriteContext(actor, Door.FHIR)) as tx:
            stored, created = tx.update(rtype, rid, resource, if_match=if_match, validate=False)
    except DuplicateIdentifier as exc:
        raise issue_for_duplicate(exc) from None
    return _write_response(request, stored, 201 if created else 200)


@router.delete("/{rtype}/{rid}")
async def delete(
    rtype: str, rid: str, request: Request, actor: Actor = Depends(require_actor)
) -> Response:
    _check_type(rtype)
    svc = services(request)
    with svc.store.write(WriteContext(actor, Door.FHIR)) as tx:
        tx.delete(rtype, rid)
    return json_response(
        operation_outcome([Issue("information", "informational", f"{rtype}/{rid} deleted")]),
        200,
    )


@router.get("/{rtype}/{rid}/_history")
async def history(
    rtype: str, rid: str, request: Request, actor: Actor = Depends(require_actor)
) -> Response:
    _check_type(rtype)
    svc = services(request)
    existing = svc.store.get(rtype, rid)
    if existing is None:
        raise error(404, "not-found", f"{rtype}/{rid} is not known")
    if not existing.deleted:
        await svc.policy.check_read_async(actor, existing)
    elif not actor.is_admin:
        raise error(403, "forbidden", "the history of a deleted resource is for admins")
    try:
        count = int(request.query_params.get("_count", "100"))
    except ValueError:
        raise error(400, "invalid", "_count must be a number") from None
    since_text = request.query_params.get("_since")
    try:
        since = fhir_instant(since_text, svc.settings.timezone) if since_text else None
    except ValueError:
        raise error(
            400, "invalid", f"_since {since_text!r} is not a FHIR instant", expression=["_since"]
        ) from None
    versions = svc.store.history(rtype, rid, count=max(1, min(count, 1000)), since=since)
    for stored, _method in versions:
        if not stored.deleted and stored.version != existing.version:
            await svc.policy.check_read_async(actor, stored)  # every version shown is a read
    base = fhir_base(request)
    parts = []
    for stored, method in versions:
        req = {"method": method, "url": f"{rtype}/{rid}" if method != "POST" else rtype}
        resp = {
            "status": {"POST": "201", "PUT": "200", "DELETE": "204"}[method],
            "etag": stored.etag,
            "lastModified": stored.last_modified,
        }
        entry = b'{"fullUrl":"' + f"{base}/{rtype}/{rid}".encode() + b'"'
        if not stored.deleted:
            entry += b',"resource":' + stored.content
        entry += b',"request":' + orjson.dumps(req) + b',"response":' + orjson.dumps(resp) + b"}"
        parts.append(entry)
    head = orjson.dumps({"resourceType": "Bundle", "type": "history", "total": len(parts)})
    return fhir_response(head[:-1] + b',"entry":[' + b",".join(parts) + b"]}")


@router.get("/{rtype}/{rid}/_history/{vid}")
async def vread(
    rtype: str, rid: str, vid: str, request: Request, actor: Actor = Depends(require_actor)
) -> Response:
    _check_type(rtype)
    try:
        version = int(vid)
    except ValueError:
        raise error(400, "invalid", f"version id {vid!r} is not a number") from None
    svc = services(request)
    stored = svc.store.vread(rtype, rid, version)
    await svc.policy.check_read_async(actor, stored)
    return fhir_response(
        stored.content, 200, {"ETag": stored.etag, "Last-Modified": stored.last_modified}
    )


FAST_ROUTES.extend(
    [
        ("GET", "/fhir/{rtype}/{rid}", read),
        ("GET", "/fhir/{rtype}", search_type),
        ("POST", "/fhir/{rtype}", create),
    ]
)
