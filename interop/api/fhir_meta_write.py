"""``$meta-add`` and ``$meta-delete`` on an instance (R4 ``Resource-meta-add`` and
``Resource-meta-delete``): profiles, tags and security labels added to or taken from the
current version.

They go through the same write path as an update (``PUT``): the actor must be able to read
the resource and the store's write guard (the access policy) must let it write it; the write
is audited and runs the store's hooks like any update. The R4 definitions allow the server to
keep the version (their comment: the operation "does not cause the version to change"); this
server keeps every stored version unchanged (history, ETags and the audit trail name
versions), so a change of meta is a new version, and a call that changes nothing (the marks
are already there, or already gone) writes nothing and answers the current meta.

A final Observation's meta may change this way: the immutability rule guards its content,
and profiles, tags and security labels are not content (:mod:`interop.store.repository`).
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request
from starlette.responses import Response

from interop.api.auth import Actor, require_actor
from interop.api.fhir import _check_accept, _check_type, _resource_headers, services
from interop.api.fhir_meta import MARKS, Collected, meta_parameters
from interop.api.responses import parse_json_body
from interop.fhir.capability import register_operation
from interop.fhir.outcome import error
from interop.fhir.validation import SUPPORTED_TYPES, validate_resource
from interop.store.context import Door, WriteContext
from interop.store.repository import IMMUTABLE_TYPES, StoredResource

router = APIRouter(prefix="/fhir")

OPS = "http://hl7.org/fhir/OperationDefinition/"
for _t in SUPPORTED_TYPES:
    if _t not in IMMUTABLE_TYPES:
        register_operation(_t, "meta-add", OPS + "Resource-meta-add", instance=True)
        register_operation(_t, "meta-delete", OPS + "Resource-meta-delete", instance=True)

SHOWN = ("versionId", "lastUpdated", *MARKS)
"""The meta elements the answer carries: the version tells whether a new one was written."""


def _meta_parameter(body: Any) -> dict[str, Any]:
    """The ``meta`` parameter's Meta (its profiles, tags and security labels), or 400 naming
    what is wrong: anything else in it is refused, never dropped."""
    if not isinstance(body, dict) or body.get("resourceType") != "Parameters":
        raise error(
            400, "structure", "the body is a Parameters resource", expression=["resourceType"]
        )
    params = body.get("parameter")
    if not isinstance(params, list) or not params:
        raise error(
            400, "required", "the Parameters carry no parameter 'meta'", expression=["parameter"]
        )
    metas = [p for p in params if isinstance(p, dict) and p.get("name") == "meta"]
    others = [p.get("name") if isinstance(p, dict) else p for p in params if p not in metas]
    if others:
        raise error(
            400,
            "not-supported",
            f"unknown parameter(s) {', '.join(map(repr, others))}: only 'meta' is taken",
            expression=["parameter"],
        )
    if len(metas) != 1:
        raise error(
            400, "invalid", "exactly one parameter 'meta' is taken", expression=["parameter"]
        )
    meta = metas[0].get("valueMeta")
    if not isinstance(meta, dict):
        raise error(
            400,
            "required",
            "the parameter 'meta' carries a valueMeta",
            expression=["parameter[0].valueMeta"],
        )
    extra = sorted(k for k in meta if k not in MARKS)
    if extra:
        raise error(
            400,
            "not-supported",
            f"valueMeta.{extra[0]}: only profile, tag and security are added or deleted",
            expression=[f"parameter[0].valueMeta.{extra[0]}"],
        )
    for kind in MARKS:
        items = meta.get(kind, [])
        if not isinstance(items, list):
            raise error(
                400, "structure", f"valueMeta.{kind} is a list", expression=[f"valueMeta.{kind}"]
            )
        for i, item in enumerate(items):
            where = f"parameter[0].valueMeta.{kind}[{i}]"
            if kind == "profile":
                if not isinstance(item, str) or not item.strip():
                    raise error(400, "value", f"{where} is not a canonical URL", expression=[where])
            elif not isinstance(item, dict) or not isinstance(item.get("code"), str):
                raise error(400, "required", f"{where} is a Coding with a code", expression=[where])
            elif "system" in item and not isinstance(item["system"], str):
                raise error(400, "value", f"{where}.system is not a URI", expression=[where])
    return meta


def _key(coding: dict[str, Any]) -> tuple[Any, Any]:
    """A tag's or label's identity: system and code (version and display do not count)."""
    return coding.get("system"), coding.get("code")


def _added(meta: dict[str, Any], marks: dict[str, Any]) -> dict[str, Any]:
    """The meta with the marks added after its own (each once, as ``$meta`` collects them)."""
    both = Collected()
    both.add(meta)
    both.add(marks)
    return {**{k: v for k, v in meta.items() if k not in MARKS}, **both.value()}


def _deleted(meta: dict[str, Any], marks: dict[str, Any]) -> dict[str, Any]:
    out = dict(meta)
    gone_profiles = set(marks.get("profile", []))
    profiles = [p for p in out.get("profile") or [] if p not in gone_profiles]
    out.pop("profile", None)
    if profiles:
        out["profile"] = profiles
    for kind in ("security", "tag"):
        gone = {_key(c) for c in marks.get(kind, [])}
        codings = [c for c in out.get(kind) or [] if not (isinstance(c, dict) and _key(c) in gone)]
        out.pop(kind, None)
        if codings:
            out[kind] = codings
    return out


def _answer(stored: StoredResource, status: int = 200) -> Response:
    meta = stored.json().get("meta") or {}
    return meta_parameters(
        {k: meta[k] for k in SHOWN if k in meta}, status, _resource_headers(stored)
    )


async def _change(rtype: str, rid: str, request: Request, actor: Actor, add: bool) -> Response:
    _check_type(rtype)
    _check_accept(request)
    marks = _meta_parameter(await parse_json_body(request))
    svc = services(request)
    with svc.store.write(WriteContext(actor, Door.FHIR)) as tx:
        current = tx.get(rtype, rid)
        if current is None or current.deleted:
            raise error(404, "not-found", f"{rtype}/{rid} is not known")
        svc.policy.check_read(actor, current, tx)  # it reads what it changes, as a patch does
        resource = current.json()
        old = {k: v for k, v in (resource.get("meta") or {}).items() if k in MARKS}
        new = _added(old, marks) if add else _deleted(old, marks)
        if new == old:
            return _answer(current)  # nothing changes: no new version
        meta = {k: v for k, v in (resource.get("meta") or {}).items() if k not in MARKS}
        meta.update(new)
        resource["meta"] = meta
        if not meta:
            resource.pop("meta")
        validate_resource(resource, expected_type=rtype)
        # the store's guard decides as for PUT; the version read above is the one replaced
        stored, _created = tx.update(rtype, rid, resource, if_match=current.version, validate=False)
    return _answer(stored)


@router.post("/{rtype}/{rid}/$meta-add")
async def meta_add(
    rtype: str, rid: str, request: Request, actor: Actor = Depends(require_actor)
) -> Response:
    return await _change(rtype, rid, request, actor, add=True)


@router.post("/{rtype}/{rid}/$meta-delete")
async def meta_delete(
    rtype: str, rid: str, request: Request, actor: Actor = Depends(require_actor)
) -> Response:
    return await _change(rtype, rid, request, actor, add=False)
