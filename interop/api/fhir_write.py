"""FHIR writes beyond create/update/delete by id: PATCH (JSON Patch and FHIRPath Patch) and
the conditional update, patch and delete (``PUT/PATCH/DELETE [type]?search``).

Each goes through the same write path as PUT: the store's write guard (the access policy),
the immutability rules (a final Observation changes only to amended/corrected/
entered-in-error), the audit and the triage hooks, in one transaction; a patch is applied to
the current version and the result validated before anything is written. A conditional
operation searches as the acting actor: a match the actor may not read does not count, and
the search is strict (an unknown parameter is refused, never ignored).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qsl

from fastapi import APIRouter, Depends, Request
from starlette.responses import Response

from interop.api.auth import Actor, require_actor
from interop.api.fhir import _check_accept, _check_type, _write_response, services
from interop.api.responses import json_response, load_json, parse_json_body
from interop.fhir.fhirpath_patch import apply_fhirpath_patch
from interop.fhir.json_patch import apply_json_patch, apply_merge_patch
from interop.fhir.outcome import FhirError, Issue, error, operation_outcome
from interop.fhir.validation import validate_resource
from interop.services import Services
from interop.store.context import Door, WriteContext
from interop.store.repository import (
    DuplicateIdentifier,
    StoredResource,
    WriteTx,
    issue_for_duplicate,
)
from interop.store.search import RESULT_PARAMS, SearchRequest
from interop.store.transaction import parse_if_match

router = APIRouter(prefix="/fhir")

JSON_PATCH = "application/json-patch+json"
MERGE_PATCH = "application/merge-patch+json"
JSON_TYPES = ("application/fhir+json", "application/json", "application/json+fhir", "text/json", "")


async def _patch_body(request: Request) -> tuple[str, Any]:
    """("json", operations), ("fhirpath", Parameters) or ("merge", partial resource) from the
    request body. A JSON object that is not a Parameters is a JSON Merge Patch (RFC 7386:
    what clients such as fhirpy send for ``resource.patch(...)``)."""
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype not in (JSON_PATCH, MERGE_PATCH, *JSON_TYPES):
        raise error(
            415,
            "not-supported",
            f"Content-Type {ctype!r} is not a patch: send {JSON_PATCH}, {MERGE_PATCH} or a "
            "FHIRPath Patch (Parameters) as application/fhir+json",
        )
    body = await request.body()
    if not body.strip():
        raise FhirError(400, [Issue("error", "required", "the request body is empty")])
    doc = load_json(body, services(request).settings.json_max_depth)
    if ctype == JSON_PATCH:
        return "json", doc
    if not isinstance(doc, dict):
        raise error(400, "structure", "a patch body is a JSON object (or a JSON Patch array)")
    if ctype != MERGE_PATCH and doc.get("resourceType") == "Parameters":
        return "fhirpath", doc
    return "merge", doc


def _patched(current: StoredResource, kind: str, patch: Any) -> dict[str, Any]:
    old = current.json()
    if kind == "json":
        new = apply_json_patch(old, patch)
    elif kind == "merge":
        new = apply_merge_patch(old, patch)
    else:
        new = apply_fhirpath_patch(old, patch)
    if new.get("resourceType") != current.res_type or new.get("id") != current.res_id:
        raise error(
            422,
            "processing",
            "a patch cannot change the resource type or id",
            expression=["resourceType", "id"],
        )
    return validate_resource(new, expected_type=current.res_type)


def _patch_in(
    svc: Services,
    tx: WriteTx,
    actor: Actor,
    current: StoredResource | None,
    what: str,
    kind: str,
    patch: Any,
    if_match: int | None,
) -> StoredResource:
    if current is None or current.deleted:
        raise error(404, "not-found", f"{what} is not known")
    svc.policy.check_read(actor, current, tx)  # a patch reads what it changes
    new = _patched(current, kind, patch)
    # without If-Match the patch still applies only to the version it was computed from
    expected = current.version if if_match is None else if_match
    stored, _created = tx.update(
        current.res_type, current.res_id, new, if_match=expected, validate=False
    )
    return stored


@router.patch("/{rtype}/{rid}")
async def patch(
    rtype: str, rid: str, request: Request, actor: Actor = Depends(require_actor)
) -> Response:
    _check_type(rtype)
    _check_accept(request)
    kind, body = await _patch_body(request)
    svc = services(request)
    if_match = parse_if_match(request.headers.get("if-match"))
    try:
        with svc.store.write(WriteContext(actor, Door.FHIR)) as tx:
            current = tx.get(rtype, rid)
            stored = _patch_in(svc, tx, actor, current, f"{rtype}/{rid}", kind, body, if_match)
    except DuplicateIdentifier as exc:
        raise issue_for_duplicate(exc) from None
    return _write_response(request, stored, 200)


# ---- conditional operations ---------------------------------------------------------------


def _criteria(request: Request) -> list[tuple[str, str]]:
    query = parse_qsl(request.url.query, keep_blank_values=True)
    criteria = [(k, v) for k, v in query if k not in RESULT_PARAMS]
    if not criteria:
        raise error(
            400,
            "required",
            "a conditional operation needs search criteria ([type]?parameter=value)",
        )
    return criteria


def conditional_matches(
    svc: Services, tx: WriteTx, actor: Actor, rtype: str, criteria: list[tuple[str, str]]
) -> list[StoredResource]:
    """The resources (at most two: enough to tell one from many) the criteria select among
    those the actor may read."""
    restriction = svc.policy.restriction(actor, rtype, criteria, tx)
    result = svc.search.search(
        SearchRequest(rtype, criteria + [("_count", "2")], strict=True, restriction=restriction)
    )
    result = svc.policy.filter_result(actor, rtype, result, criteria, tx)
    found = [tx.get(rtype, rid) for rid, _content in result.rows]
    return [s for s in found if s is not None and not s.deleted]


def _many(rtype: str, what: str) -> FhirError:
    return error(
        412, "multiple-matches", f"the criteria of the conditional {what} match several {rtype}"
    )


@router.put("/{rtype}")
async def conditional_update(
    rtype: str, request: Request, actor: Actor = Depends(require_actor)
) -> Response:
    _check_type(rtype)
    _check_accept(request)
    criteria = _criteria(request)
    resource = await parse_json_body(request)
    svc = services(request)
    validate_resource(resource, expected_type=rtype)
    if_match = parse_if_match(request.headers.get("if-match"))
    try:
        with svc.store.write(WriteContext(actor, Door.FHIR)) as tx:
            found = conditional_matches(svc, tx, actor, rtype, criteria)
            if len(found) > 1:
                raise _many(rtype, "update")
            body_id = resource.get("id")
            if found:
                target = found[0]
                if body_id is not None and body_id != target.res_id:
                    raise error(
                        400,
                        "invalid",
                        f"the body's id {body_id!r} is not the id of the match ({target.res_id!r})",
                        expression=["id"],
                    )
                stored, created = tx.update(
                    rtype,
                    target.res_id,
                    {**resource, "id": target.res_id},
                    if_match=if_match,
                    validate=False,
                )
            elif isinstance(body_id, str):
                # no match: the client's id is honoured, as a PUT to it would be
                stored, created = tx.update(
                    rtype, body_id, resource, if_match=if_match, validate=False
                )
            else:
                stored, created = tx.create(resource, validate=False), True
    except DuplicateIdentifier as exc:
        raise issue_for_duplicate(exc) from None
    return _write_response(request, stored, 201 if created else 200)


@router.patch("/{rtype}")
async def conditional_patch(
    rtype: str, request: Request, actor: Actor = Depends(require_actor)
) -> Response:
    _check_type(rtype)
    _check_accept(request)
    criteria = _criteria(request)
    kind, body = await _patch_body(request)
    svc = services(request)
    if_match = parse_if_match(request.headers.get("if-match"))
    try:
        with svc.store.write(WriteContext(actor, Door.FHIR)) as tx:
            found = conditional_matches(svc, tx, actor, rtype, criteria)
            if len(found) > 1:
                raise _many(rtype, "patch")
            current = found[0] if found else None
            stored = _patch_in(
                svc, tx, actor, current, f"no {rtype} matching the criteria", kind, body, if_match
            )
    except DuplicateIdentifier as exc:
        raise issue_for_duplicate(exc) from None
    return _write_response(request, stored, 200)


@router.delete("/{rtype}")
async def conditional_delete(
    rtype: str, request: Request, actor: Actor = Depends(require_actor)
) -> Response:
    _check_type(rtype)
    criteria = _criteria(request)
    svc = services(request)
    with svc.store.write(WriteContext(actor, Door.FHIR)) as tx:
        found = conditional_matches(svc, tx, actor, rtype, criteria)
        if len(found) > 1:
            raise _many(rtype, "delete")
        if found:
            tx.delete(rtype, found[0].res_id)
    text = f"{rtype}/{found[0].res_id} deleted" if found else f"no {rtype} matched: nothing deleted"
    return json_response(operation_outcome([Issue("information", "informational", text)]), 200)
