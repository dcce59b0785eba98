"""FHIR operations beyond search: ``Patient/$everything``, ``$validate`` and the
type and system ``_history``.

``$everything`` returns the Patient, every resource in its compartment (``patient_id`` in the
store, set from the Patient CompartmentDefinition on write) and the resources those refer to
outside it (the Organization, Practitioner…), page by page with a cursor; every page goes
through the access policy like a search and is audited. Type and system history cover every
patient's data, so they are for admins.
"""

from __future__ import annotations

import base64
from typing import Any
from urllib.parse import urlencode

import orjson
from fastapi import APIRouter, Depends, Request
from sqlalchemy import and_, false, func, literal, or_, select, tuple_, union_all
from starlette.responses import Response

from interop.api.auth import Actor, require_actor
from interop.api.fhir import _check_type, fhir_base, services
from interop.api.responses import fhir_response, json_response, parse_json_body
from interop.fhir.capability import register_operation
from interop.fhir.dates import fhir_instant
from interop.fhir.outcome import FhirError, Issue, error, operation_outcome
from interop.fhir.searchparams import reference_target
from interop.fhir.validation import SUPPORTED_TYPES, validate_resource
from interop.store.schema import history_table, resource_table
from interop.store.search import SearchResult

router = APIRouter(prefix="/fhir")

OPS = "http://hl7.org/fhir/OperationDefinition/"
register_operation("Patient", "everything", OPS + "Patient-everything", instance=True)
for _t in SUPPORTED_TYPES:
    register_operation(_t, "validate", OPS + "Resource-validate")


NOT_IN_EVERYTHING = frozenset({"AuditEvent"})
"""In the Patient compartment but not the patient's record: the access log (who read what)
comes only when ``_type`` asks for it (and the policy lets the actor see it)."""


def _count(request: Request, default: int = 50) -> int:
    raw = request.query_params.get("_count")
    if raw is None:
        return default
    try:
        return max(1, min(int(raw), services(request).settings.search_max_count))
    except ValueError:
        raise error(
            400, "invalid", f"_count {raw!r} is not a number", expression=["_count"]
        ) from None


def _since(request: Request) -> int | None:
    text = request.query_params.get("_since")
    if not text:
        return None
    try:
        return fhir_instant(text, services(request).settings.timezone)
    except ValueError:
        raise error(
            400, "invalid", f"_since {text!r} is not a FHIR instant", expression=["_since"]
        ) from None


def _types(request: Request) -> list[str] | None:
    raw = request.query_params.get("_type")
    if not raw:
        return None
    types = [t.strip() for t in raw.split(",") if t.strip()]
    unknown = [t for t in types if t not in SUPPORTED_TYPES]
    if unknown:
        raise error(
            400,
            "not-supported",
            f"_type: unknown resource type(s) {', '.join(unknown)}",
            expression=["_type"],
        )
    return types


def _encode(values: list[Any]) -> str:
    return base64.urlsafe_b64encode(orjson.dumps(values)).decode().rstrip("=")


def _decode(text: str, n: int) -> list[Any]:
    try:
        values = orjson.loads(base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)))
        if not isinstance(values, list) or len(values) != n:
            raise ValueError
        return values
    except (ValueError, TypeError, orjson.JSONDecodeError):
        raise error(
            400, "invalid", "the _cursor parameter is not valid (paging link damaged)"
        ) from None


def _entries(base: str, rows: list[tuple[str, str, bytes]], mode: str) -> list[bytes]:
    return [
        b'{"fullUrl":"'
        + f"{base}/{t}/{i}".encode()
        + b'","resource":'
        + c
        + b',"search":{"mode":"'
        + mode.encode()
        + b'"}}'
        for t, i, c in rows
    ]


# ---- Patient/$everything -------------------------------------------------------------------


@router.get("/Patient/{pid}/$everything")
@router.post("/Patient/{pid}/$everything")
async def everything(pid: str, request: Request, actor: Actor = Depends(require_actor)) -> Response:
    svc = services(request)
    patient = svc.store.read("Patient", pid)
    await svc.policy.check_read_async(actor, patient)
    count = _count(request)
    since = _since(request)
    types = _types(request)
    cursor = request.query_params.get("_cursor")
    r = resource_table.c
    conds = [
        or_(r.patient_id == pid, and_(r.res_type == "Patient", r.res_id == pid)),
        r.deleted == false(),
    ]
    if since is not None:
        conds.append(r.last_updated >= since)
    if types is not None:
        conds.append(r.res_type.in_(types))
    else:
        conds.append(r.res_type.not_in(sorted(NOT_IN_EVERYTHING)))
    total = None
    with svc.store.reader() as conn:
        if cursor is None:
            total = conn.execute(
                select(func.count()).select_from(resource_table).where(*conds)
            ).scalar_one()
        if cursor is not None:
            last_type, last_id = _decode(cursor, 2)
            conds.append(
                tuple_(r.res_type, r.res_id) > tuple_(literal(last_type), literal(last_id))
            )
        rows = conn.execute(
            select(r.res_type, r.res_id, r.content)
            .where(*conds)
            .order_by(r.res_type, r.res_id)
            .limit(count + 1)
        ).all()
        page = [(row.res_type, row.res_id, bytes(row.content)) for row in rows[:count]]
        # what the page refers to outside the compartment (its Organization, Practitioner …)
        have = {(t, i) for t, i, _c in page}
        wanted: dict[str, set[str]] = {}
        for _t, _i, content in page:
            for ref in _references(orjson.loads(content)):
                t, _, i = reference_target(ref, svc.store.base_url).partition("/")
                fits = t in SUPPORTED_TYPES and i and "/" not in i and (t, i) not in have
                if fits and (types is None or t in types):
                    wanted.setdefault(t, set()).add(i)
        included: list[tuple[str, str, bytes]] = []
        for t, ids in sorted(wanted.items()):
            for row in conn.execute(
                select(r.res_id, r.content, r.patient_id).where(
                    r.res_type == t, r.res_id.in_(sorted(ids)), r.deleted == false()
                )
            ):
                if row.patient_id in (None, pid):  # never another patient's data
                    included.append((t, row.res_id, bytes(row.content)))
    next_cursor = (
        _encode([rows[count - 1].res_type, rows[count - 1].res_id]) if len(rows) > count else None
    )
    # the policy decides every resource, as for a search (and audits the access)
    shown = SearchResult([(f"{t}/{i}", c) for t, i, c in page], included=included)
    shown = await svc.policy.filter_result_async(actor, "Patient", shown, [("_id", pid)])
    matches = [(key.partition("/")[0], key.partition("/")[2], c) for key, c in shown.rows]
    base = fhir_base(request)
    params = [(k, v) for k, v in request.query_params.multi_items() if k != "_cursor"]
    self_url = f"{base}/Patient/{pid}/$everything" + (f"?{urlencode(params)}" if params else "")
    links = [{"relation": "self", "url": self_url}]
    if next_cursor:
        links.append(
            {
                "relation": "next",
                "url": f"{base}/Patient/{pid}/$everything?{urlencode(params + [('_cursor', next_cursor)])}",
            }
        )
    head: dict[str, Any] = {"resourceType": "Bundle", "type": "searchset"}
    if total is not None and len(matches) == len(page):
        head["total"] = total
    head["link"] = links
    parts = _entries(base, matches, "match") + _entries(base, shown.included, "include")
    return fhir_response(orjson.dumps(head)[:-1] + b',"entry":[' + b",".join(parts) + b"]}")


def _references(node: Any) -> list[str]:
    out: list[str] = []
    if isinstance(node, dict):
        for k, v in node.items():
            if k == "reference" and isinstance(v, str):
                out.append(v)
            elif isinstance(v, dict | list):
                out.extend(_references(v))
    elif isinstance(node, list):
        for item in node:
            out.extend(_references(item))
    return out


# ---- $validate -------------------------------------------------------------------------------


def _validation_outcome(resource: Any, rtype: str, profile: str | None) -> dict[str, Any]:
    try:
        validate_resource(resource, expected_type=rtype)
    except FhirError as exc:
        return operation_outcome(exc.issues)
    issues = [
        Issue("information", "informational", f"{rtype} is valid FHIR R4 (base specification)")
    ]
    if profile:
        declared = (resource.get("meta") or {}).get("profile") or []
        issues.append(
            Issue(
                "warning",
                "not-supported",
                f"profile {profile!r}: only the base specification and the product's own rules "
                "are checked" + (" (the resource declares it)" if profile in declared else ""),
            )
        )
    return operation_outcome(issues)


def _validate_input(body: Any) -> tuple[Any, str | None]:
    """(resource, profile) from a $validate body: the resource itself or Parameters."""
    if isinstance(body, dict) and body.get("resourceType") == "Parameters":
        resource = None
        profile = None
        for p in body.get("parameter") or []:
            if not isinstance(p, dict):
                continue
            if p.get("name") == "resource":
                resource = p.get("resource")
            elif p.get("name") == "profile":
                profile = p.get("valueUri") or p.get("valueCanonical")
            elif p.get("name") == "mode" and p.get("valueCode") not in (None, "create", "update"):
                raise error(
                    400, "not-supported", f"$validate mode {p.get('valueCode')!r} is not supported"
                )
        if resource is None:
            raise error(400, "required", "Parameters for $validate carry no 'resource'")
        return resource, profile
    return body, None


@router.post("/{rtype}/$validate")
async def validate_type(
    rtype: str, request: Request, actor: Actor = Depends(require_actor)
) -> Response:
    _check_type(rtype)
    resource, profile = _validate_input(await parse_json_body(request))
    profile = profile or request.query_params.get("profile")
    return json_response(_validation_outcome(resource, rtype, profile), 200)


@router.post("/{rtype}/{rid}/$validate")
async def validate_instance(
    rtype: str, rid: str, request: Request, actor: Actor = Depends(require_actor)
) -> Response:
    _check_type(rtype)
    resource, profile = _validate_input(await parse_json_body(request))
    if isinstance(resource, dict) and resource.get("id") not in (None, rid):
        raise error(400, "invalid", f"the resource's id is not {rid!r}", expression=["id"])
    return json_response(_validation_outcome(resource, rtype, profile), 200)


# ---- type and system _history ----------------------------------------------------------------


def _history_bundle(request: Request, actor: Actor, rtype: str | None) -> Response:
    if not actor.is_admin:
        raise error(403, "forbidden", "the history of a whole type or the system is for admins")
    svc = services(request)
    count = _count(request, 100)
    since = _since(request)
    cursor = request.query_params.get("_cursor")
    r, h = resource_table.c, history_table.c
    current = select(
        r.res_type,
        r.res_id,
        r.version,
        r.last_updated,
        r.deleted,
        r.content,
        literal(True).label("is_current"),
    )
    older = (
        select(
            h.res_type,
            h.res_id,
            h.version,
            h.last_updated,
            h.deleted,
            h.content,
            literal(False).label("is_current"),
        )
        .join(resource_table, and_(r.res_type == h.res_type, r.res_id == h.res_id))
        .where(h.version < r.version)
    )
    if rtype is not None:
        current = current.where(r.res_type == rtype)
        older = older.where(h.res_type == rtype)
    u = union_all(current, older).subquery("v")
    conds = []
    if since is not None:
        conds.append(u.c.last_updated >= since)
    if cursor is not None:
        lu, t, i, v = _decode(cursor, 4)
        key = tuple_(u.c.last_updated, u.c.res_type, u.c.res_id, u.c.version)
        conds.append(key < tuple_(literal(lu), literal(t), literal(i), literal(v)))
    stmt = (
        select(u)
        .where(*conds)
        .order_by(
            u.c.last_updated.desc(), u.c.res_type.desc(), u.c.res_id.desc(), u.c.version.desc()
        )
        .limit(count + 1)
    )
    with svc.store.reader() as conn:
        rows = conn.execute(stmt).all()
    base = fhir_base(request)
    path = f"{rtype}/_history" if rtype else "_history"
    parts = []
    for row in rows[:count]:
        method = "DELETE" if row.deleted else ("POST" if row.version == 1 else "PUT")
        url = row.res_type if method == "POST" else f"{row.res_type}/{row.res_id}"
        entry = b'{"fullUrl":"' + f"{base}/{row.res_type}/{row.res_id}".encode() + b'"'
        if not row.deleted:
            entry += b',"resource":' + bytes(row.content)
        entry += b',"request":' + orjson.dumps({"method": method, "url": url})
        entry += (
            b',"response":'
            + orjson.dumps(
                {
                    "status": {"POST": "201", "PUT": "200", "DELETE": "204"}[method],
                    "etag": f'W/"{row.version}"',
                }
            )
            + b"}"
        )
        parts.append(entry)
    params = [(k, v) for k, v in request.query_params.multi_items() if k != "_cursor"]
    links = [
        {"relation": "self", "url": f"{base}/{path}" + (f"?{urlencode(params)}" if params else "")}
    ]
    if len(rows) > count:
        last = rows[count - 1]
        c = _encode([last.last_updated, last.res_type, last.res_id, last.version])
        links.append(
            {"relation": "next", "url": f"{base}/{path}?{urlencode(params + [('_cursor', c)])}"}
        )
    head = orjson.dumps({"resourceType": "Bundle", "type": "history", "link": links})
    return fhir_response(head[:-1] + b',"entry":[' + b",".join(parts) + b"]}")


@router.get("/_history")
async def system_history(request: Request, actor: Actor = Depends(require_actor)) -> Response:
    return _history_bundle(request, actor, None)


@router.get("/{rtype}/_history")
async def type_history(
    rtype: str, request: Request, actor: Actor = Depends(require_actor)
) -> Response:
    _check_type(rtype)
    return _history_bundle(request, actor, rtype)
