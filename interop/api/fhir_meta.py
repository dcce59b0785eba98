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
from starlette.responses import Response

from interop.api.auth import Actor, require_actor
from interop.api.fhir import _check_type, services
from interop.api.responses import json_response
from interop.fhir.capability import register_operation, register_system_operation
from interop.fhir.outcome import FhirError, error
from interop.fhir.validation import SUPPORTED_TYPES
from interop.services import Services
from interop.store import meta_index
from interop.store.audit_rows import AUDIT_EVENT
from interop.store.search import SearchRequest

router = APIRouter(prefix="/fhir")

META_OPERATION = "http://hl7.org/fhir/OperationDefinition/Resource-meta"
for _t in SUPPORTED_TYPES:
    register_operation(_t, "meta", META_OPERATION)
    register_operation(_t, "meta", META_OPERATION, instance=True)
register_system_operation("meta", META_OPERATION)

META_SCAN_LIMIT = 100_000
"""Looking for a resource the actor may read that carries one mark, a type ``$meta`` reads at
most this many the policy then refuses; beyond, it is refused (400 too-costly) rather than
answered in part."""
PROBE = 10
"""How many of the resources carrying a mark are tried first (by id, from the index): for
most actors the first passes."""
PROBE_SEARCH = 500
"""Ids per search of the first try (within ``search_max_values`` and ``search_max_count``)."""
MARKS = ("profile", "security", "tag")
"""The meta elements ``$meta`` answers (and ``$meta-add``/``$meta-delete`` change)."""
NO_META = frozenset({AUDIT_EVENT})
"""Written by the server alone, with no profile, tag or security label (``store.audit_rows``):
their ``$meta`` is empty without reading them."""
_ELEMENT = {"_profile": "profile", "_security": "security", "_tag": "tag"}


class Collected:
    """The profiles and codings seen so far, each once, in the order first seen (a tag or
    label by its system and code: version and display do not count)."""

    def __init__(self) -> None:
        self.profiles: dict[str, None] = {}
        self.codings: dict[str, dict[tuple[Any, Any], dict[str, Any]]] = {
            "security": {},
            "tag": {},
        }

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

    def has(self, mark: meta_index.Mark) -> bool:
        param, system, code = mark
        if param == "_profile":
            return code in self.profiles
        seen = self.codings[_ELEMENT[param]]
        return (system, code) in seen or (not system and (None, code) in seen)

    def value(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.profiles:
            out["profile"] = list(self.profiles)
        for kind in ("security", "tag"):
            if self.codings[kind]:
                out[kind] = list(self.codings[kind].values())
        return out


def meta_parameters(
    meta: dict[str, Any], status: int = 200, headers: dict[str, str] | None = None
) -> Response:
    """The answer of the ``$meta`` operations: Parameters with ``return`` the meta."""
    return json_response(
        {"resourceType": "Parameters", "parameter": [{"name": "return", "valueMeta": meta}]},
        status,
        headers,
    )


async def _collect_type(svc: Services, actor: Actor, rtype: str, found: Collected) -> None:
    """Add the marks of ``rtype`` some resource the actor may read carries (403 when the
    policy refuses the actor the type).

    The distinct marks come from the index (:mod:`interop.store.meta_index`); each is kept
    only once a resource carrying it has come through the actor's search and the policy's
    filter (audited like any search): first a few carriers of every mark, by id, in one
    search; then, for a mark whose carriers the policy all refused, a search of the type by
    the mark."""
    restriction = svc.policy.restriction(actor, rtype, [])
    if rtype in NO_META:
        return
    with svc.store.reader() as conn:
        marks = meta_index.marks(conn, rtype)
        ids: dict[str, None] = {}
        for mark in marks:
            ids.update(dict.fromkeys(meta_index.some_carrying(conn, rtype, mark, PROBE)))
    probe = list(ids)
    for i in range(0, len(probe), PROBE_SEARCH):
        await _read(
            svc, actor, rtype, [("_id", ",".join(probe[i : i + PROBE_SEARCH]))], restriction, found
        )
    for mark in marks:
        if not found.has(mark):
            await _search_by_mark(svc, actor, rtype, mark, restriction, found)


async def _read(
    svc: Services,
    actor: Actor,
    rtype: str,
    params: list[tuple[str, str]],
    restriction: list[tuple[str, str]],
    found: Collected,
) -> str | None:
    """One page of the actor's search, through the policy's filter; the marks of what it
    let through added. Returns the next page's cursor (None at the end)."""
    page = [("_count", str(svc.settings.search_max_count)), ("_total", "none"), *params]
    result = svc.search.search(SearchRequest(rtype, page, strict=True, restriction=restriction))
    result = await svc.policy.filter_result_async(actor, rtype, result, [("$meta", "")])
    for _rid, content in result.rows:
        found.add(orjson.loads(content).get("meta"))
    return result.next_cursor


async def _search_by_mark(
    svc: Services,
    actor: Actor,
    rtype: str,
    mark: meta_index.Mark,
    restriction: list[tuple[str, str]],
    found: Collected,
) -> None:
    """Page through the actor's search of the type by the mark until the policy lets one
    resource through (at most :data:`META_SCAN_LIMIT` read)."""
    param, system, code = mark
    if "," in system or "," in code:
        raise error(
            400,
            "too-costly",
            f"$meta of {rtype}: the mark {system}|{code} cannot be looked for by search; ask "
            "$meta of single resources",
        )
    # a profile is a uri (its own value, a version after a "|" if any); a tag or label a token
    wanted = [(param, code if param == "_profile" else f"{system}|{code}")]
    cursor: str | None = None
    read = 0
    while True:
        cursor = await _read(
            svc,
            actor,
            rtype,
            wanted + ([("_cursor", cursor)] if cursor else []),
            restriction,
            found,
        )
        if found.has(mark) or cursor is None:
            return
        read += svc.settings.search_max_count
        if read > META_SCAN_LIMIT:
            raise error(
                400,
                "too-costly",
                f"$meta would read more than {META_SCAN_LIMIT} resources; ask $meta of a "
                "narrower type or of single resources",
            )


@router.get("/$meta")
@router.post("/$meta")
async def system_meta(request: Request, actor: Actor = Depends(require_actor)) -> Response:
    svc = services(request)
    with svc.store.reader() as conn:
        present = meta_index.types_present(conn, sorted(SUPPORTED_TYPES))
    found = Collected()
    refusals: list[FhirError] = []
    for rtype in present:
        try:
            await _collect_type(svc, actor, rtype, found)
        except FhirError as exc:
            if exc.status != 403:
                raise
            refusals.append(exc)  # a type the actor may not read: not in its $meta
    if refusals and len(refusals) == len(present):
        raise refusals[0]  # nothing at all is readable for this actor
    return meta_parameters(found.value())


@router.get("/{rtype}/$meta")
@router.post("/{rtype}/$meta")
async def type_meta(
    rtype: str, request: Request, actor: Actor = Depends(require_actor)
) -> Response:
    _check_type(rtype)
    found = Collected()
    await _collect_type(services(request), actor, rtype, found)
    return meta_parameters(found.value())


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
    return meta_parameters({k: v for k, v in meta.items() if k in MARKS})
