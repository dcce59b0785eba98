"""``$meta`` on an instance, a type and the whole server: the profiles, tags and security
labels in use (R4 ``Resource-meta``).

The type and system forms read what a search of the type by the same actor would: the access
policy restricts each type's search and filters and audits every page (a GP's ``$meta``
covers only what that GP may read; an admin's covers everything). A type the policy refuses
the actor is left out of the system form; the type form answers the refusal.
"""

from __future__ import annotations

from typing import Any

import orjson
from fastapi import APIRouter, Depends, Request
from sqlalchemy import false, select
from starlette.responses import Response

from interop.api.auth import Actor, require_actor
from interop.api.fhir import _check_type, services
from interop.api.responses import json_response
from interop.fhir.capability import register_operation, register_system_operation
from interop.fhir.outcome import FhirError, error
from interop.fhir.validation import SUPPORTED_TYPES
from interop.services import Services
from interop.store.audit_rows import AUDIT_EVENT
from interop.store.schema import resource_table
from interop.store.search import SearchRequest

router = APIRouter(prefix="/fhir")

META_OPERATION = "http://hl7.org/fhir/OperationDefinition/Resource-meta"
for _t in SUPPORTED_TYPES:
    register_operation(_t, "meta", META_OPERATION)
    register_operation(_t, "meta", META_OPERATION, instance=True)
register_system_operation("meta", META_OPERATION)

META_SCAN_LIMIT = 100_000
"""A type or system ``$meta`` reads at most this many resources; beyond, it is refused
(400 too-costly) rather than answered from part of the data."""
KEPT = ("profile", "security", "tag")
_MARKS = tuple(f'"{k}"'.encode() for k in KEPT)
NO_META = frozenset({AUDIT_EVENT})
"""Written by the server alone, with no profile, tag or security label (``store.audit_rows``):
their ``$meta`` is empty without reading them."""


class _Collected:
    """The profiles and codings seen so far, each once, in the order first seen."""

    def __init__(self) -> None:
        self.profiles: dict[str, None] = {}
        self.codings: dict[str, dict[tuple[Any, Any], dict[str, Any]]] = {
            "security": {},
            "tag": {},
        }
        self.read = 0

    def add(self, meta: Any) -> None:
        if not isinstance(meta, dict):
            return
        for p in meta.get("profile") or []:
            if isinstance(p, str):
                self.profiles.setdefault(p, None)
        for kind, seen in self.codings.items():
            for c in meta.get(kind) or []:
                if isinstance(c, dict):
                    seen.setdefault((c.get("system"), c.get("code")), c)

    def value(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.profiles:
            out["profile"] = list(self.profiles)
        for kind in ("security", "tag"):
            if self.codings[kind]:
                out[kind] = list(self.codings[kind].values())
        return out


def _parameters(meta: dict[str, Any]) -> Response:
    return json_response(
        {"resourceType": "Parameters", "parameter": [{"name": "return", "valueMeta": meta}]}
    )


async def _collect_type(svc: Services, actor: Actor, rtype: str, found: _Collected) -> None:
    """Add the meta of every resource of ``rtype`` the actor may read (403 when the policy
    refuses the actor the type)."""
    restriction = svc.policy.restriction(actor, rtype, [])
    if rtype in NO_META:
        return
    cursor: str | None = None
    while True:
        params = [("_count", str(svc.settings.search_max_count)), ("_total", "none")]
        if cursor:
            params.append(("_cursor", cursor))
        result = svc.search.search(
            SearchRequest(rtype, params, strict=True, restriction=restriction)
        )
        result = await svc.policy.filter_result_async(actor, rtype, result, [("$meta", "")])
        for _rid, content in result.rows:
            found.read += 1
            if any(k in content for k in _MARKS):  # most resources carry none: not parsed
                found.add(orjson.loads(content).get("meta"))
        if found.read > META_SCAN_LIMIT:
            raise error(
                400,
                "too-costly",
                f"$meta would read more than {META_SCAN_LIMIT} resources; ask $meta of a "
                "narrower type or of single resources",
            )
        if not result.next_cursor:
            return
        cursor = result.next_cursor


@router.get("/$meta")
@router.post("/$meta")
async def system_meta(request: Request, actor: Actor = Depends(require_actor)) -> Response:
    svc = services(request)
    r = resource_table.c
    with svc.store.reader() as conn:
        present = sorted(
            row[0]
            for row in conn.execute(select(r.res_type).where(r.deleted == false()).distinct())
        )
    found = _Collected()
    refusals: list[FhirError] = []
    for rtype in present:
        if rtype not in SUPPORTED_TYPES:
            continue
        try:
            await _collect_type(svc, actor, rtype, found)
        except FhirError as exc:
            if exc.status != 403:
                raise
            refusals.append(exc)  # a type the actor may not read: not in its $meta
    if refusals and len(refusals) == len([t for t in present if t in SUPPORTED_TYPES]):
        raise refusals[0]  # nothing at all is readable for this actor
    return _parameters(found.value())


@router.get("/{rtype}/$meta")
@router.post("/{rtype}/$meta")
async def type_meta(
    rtype: str, request: Request, actor: Actor = Depends(require_actor)
) -> Response:
    _check_type(rtype)
    found = _Collected()
    await _collect_type(services(request), actor, rtype, found)
    return _parameters(found.value())


@router.get("/{rtype}/{rid}/$meta")
@router.post("/{rtype}/{rid}/$meta")
async def instance_meta(
    rtype: str, rid: str, request: Request, actor: Actor = Depends(require_actor)
) -> Response:
    _check_type(rtype)
    svc = services(request)
    stored = await svc.store.read_async(rtype, rid)
    await svc.policy.check_read_async(actor, stored)
    meta = stored.json().get("meta") or {}
    return _parameters({k: v for k, v in meta.items() if k in KEPT})
