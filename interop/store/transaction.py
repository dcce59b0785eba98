"""FHIR ``batch`` and ``transaction`` Bundles.

A transaction is atomic: every entry succeeds or nothing is stored. ``urn:uuid:`` (and
``urn:oid:``) fullUrls of POST entries get server ids first, and every reference to them in
the Bundle is rewritten before anything is written. A batch runs each entry on its own and
reports each outcome.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import parse_qsl, urlsplit

import orjson

from interop.fhir import decimals
from interop.fhir.outcome import FhirError, Issue, error
from interop.fhir.references import unresolved_urn_issues
from interop.fhir.validation import SUPPORTED_TYPES, validate_resource
from interop.store.context import WriteContext
from interop.store.reference_integrity import PENDING
from interop.store.repository import (
    DuplicateIdentifier,
    FhirStore,
    StoredResource,
    WriteTx,
    issue_for_duplicate,
    new_id,
)
from interop.store.search import SearchEngine, SearchRequest, SearchResult


@dataclass(slots=True)
class EntryResult:
    status: str
    location: str | None = None
    etag: str | None = None
    last_modified: str | None = None
    resource: bytes | None = None
    outcome: dict[str, Any] | None = None

    def to_json_bytes(self) -> bytes:
        response: dict[str, Any] = {"status": self.status}
        if self.location:
            response["location"] = self.location
        if self.etag:
            response["etag"] = self.etag
        if self.last_modified:
            response["lastModified"] = self.last_modified
        if self.outcome:
            response["outcome"] = self.outcome
        parts = []
        if self.resource is not None:
            parts.append(b'"resource":' + self.resource)
        parts.append(b'"response":' + orjson.dumps(response))
        return b"{" + b",".join(parts) + b"}"


def _rewrite_refs(node: Any, mapping: dict[str, str]) -> Any:
    if isinstance(node, dict):
        out = {}
        for k, v in node.items():
            if k == "reference" and isinstance(v, str) and v in mapping:
                out[k] = mapping[v]
            else:
                out[k] = _rewrite_refs(v, mapping)
        return out
    if isinstance(node, list):
        return [_rewrite_refs(v, mapping) for v in node]
    return node


_REFERENCE = re.compile(rb'"reference":"((?:[^"\\]|\\.)*)"')
"""A ``reference`` element as orjson writes it (no spaces): the JSON string's raw contents."""


def _with_mapped_refs(resource: Any, mapping: dict[str, str]) -> Any:
    """``resource`` with its references to mapped fullUrls rewritten, or ``resource`` itself
    when it holds none. One scan of the encoded resource for its ``"reference":"…"`` elements
    decides, instead of walking every element of every entry of a large Bundle; a reference
    with an escape in it (never a real fullUrl) is left to the walk."""
    if not mapping:
        return resource
    try:
        blob = decimals.dumps(resource)
    except TypeError:
        return _rewrite_refs(resource, mapping)
    for m in _REFERENCE.finditer(blob):
        raw = m.group(1)
        if b"\\" in raw or raw.decode() in mapping:
            return _rewrite_refs(resource, mapping)
    return resource


def _parse_url(url: str) -> tuple[str, str | None, list[tuple[str, str]]]:
    parts = urlsplit(url)
    path = parts.path.strip("/")
    if path.startswith("fhir/"):
        path = path[5:]
    segs = path.split("/") if path else []
    rtype = segs[0] if segs else ""
    rid = segs[1] if len(segs) > 1 else None
    return rtype, rid, parse_qsl(parts.query, keep_blank_values=True)


def _result(stored: StoredResource, status: str, *, body: bool = True) -> EntryResult:
    return EntryResult(
        status=status,
        location=f"{stored.res_type}/{stored.res_id}/_history/{stored.version}",
        etag=stored.etag,
        last_modified=stored.last_modified,
        resource=stored.content if body else None,
    )


class ReadPolicy(Protocol):
    """What the access policy offers the Bundle processor (see ``interop.access.policy``)."""

    def check_read(self, actor: Any, stored: StoredResource, tx: WriteTx | None = None) -> None: ...

    def restriction(
        self,
        actor: Any,
        res_type: str,
        params: list[tuple[str, str]],
        tx: WriteTx | None = None,
    ) -> list[tuple[str, str]]: ...

    def filter_result(
        self,
        actor: Any,
        res_type: str,
        result: SearchResult,
        params: list[tuple[str, str]] | None = None,
        tx: WriteTx | None = None,
    ) -> SearchResult: ...


class BundleProcessor:
    def __init__(self, store: FhirStore, search: SearchEngine) -> None:
        self.store = store
        self.search = search
        self.policy: ReadPolicy | None = None
        """Decides what an actor's reads inside a Bundle (GET entries, conditional-create
        matches) may see; writes are guarded by the store itself."""

    def process(self, bundle: Any, ctx: WriteContext) -> bytes:
        if not isinstance(bundle, dict) or bundle.get("resourceType") != "Bundle":
            raise error(400, "invalid", "POST to the base expects a Bundle")
        btype = bundle.get("type")
        if btype not in ("transaction", "batch"):
            raise error(
                400,
                "invalid",
                f"Bundle.type {btype!r}: only 'transaction' and 'batch' can be processed",
                expression=["Bundle.type"],
            )
        entries = bundle.get("entry") or []
        if not isinstance(entries, list):
            raise error(400, "structure", "Bundle.entry must be a list")
        for i, e in enumerate(entries):
            req = e.get("request") if isinstance(e, dict) else None
            if not isinstance(req, dict) or req.get("method") not in (
                "GET",
                "POST",
                "PUT",
                "DELETE",
                "HEAD",
            ):
                raise error(
                    400,
                    "required",
                    f"Bundle.entry[{i}].request.method is missing or not GET/POST/PUT/DELETE",
                    expression=[f"Bundle.entry[{i}].request"],
                )
            if not isinstance(req.get("url"), str):
                raise error(
                    400,
                    "required",
                    f"Bundle.entry[{i}].request.url is missing",
                    expression=[f"Bundle.entry[{i}].request.url"],
                )
        if btype == "transaction":
            results = self._transaction(entries, ctx)
            rtype = "transaction-response"
        else:
            results = self._batch(entries, ctx)
            rtype = "batch-response"
        head = orjson.dumps({"resourceType": "Bundle", "id": new_id(), "type": rtype})[:-1]
        return head + b',"entry":[' + b",".join(r.to_json_bytes() for r in results) + b"]}"

    # ---- transaction ---------------------------------------------------------------------
    def _transaction(self, entries: list[dict[str, Any]], ctx: WriteContext) -> list[EntryResult]:
        mapping: dict[str, str] = {}
        assigned: dict[int, str] = {}
        for i, e in enumerate(entries):
            full = e.get("fullUrl")
            req = e["request"]
            resource = e.get("resource")
            if req["method"] == "POST" and isinstance(resource, dict):
                rid = new_id()
                assigned[i] = rid
                rtype = resource.get("resourceType", "")
                if isinstance(full, str) and full:
                    mapping[full] = f"{rtype}/{rid}"
            elif req["method"] == "PUT" and isinstance(full, str) and full.startswith("urn:"):
                rtype, rid_opt, _ = _parse_url(req["url"])
                if rid_opt:
                    mapping[full] = f"{rtype}/{rid_opt}"
        # validate everything before writing anything
        prepared: list[dict[str, Any] | None] = []
        for i, e in enumerate(entries):
            resource = e.get("resource")
            if resource is None:
                prepared.append(None)
                continue
            resource = _with_mapped_refs(resource, mapping)
            try:
                validate_resource(resource)
                unresolved = unresolved_urn_issues(
                    resource, "names no entry of this transaction: the reference cannot be resolved"
                )
                if unresolved:
                    raise FhirError(422, unresolved)
            except FhirError as exc:
                raise FhirError(
                    exc.status,
                    [
                        Issue(
                            iss.severity,
                            iss.code,
                            f"Bundle.entry[{i}]: {iss.diagnostics}",
                            tuple(f"Bundle.entry[{i}].resource.{x}" for x in iss.expression),
                        )
                        for iss in exc.issues
                    ],
                ) from None
            prepared.append(resource)
        results: list[EntryResult | None] = [None] * len(entries)
        # FHIR processing order: DELETE, POST, PUT, GET
        order = sorted(
            range(len(entries)),
            key=lambda i: {"DELETE": 0, "POST": 1, "PUT": 2, "GET": 3, "HEAD": 3}[
                entries[i]["request"]["method"]
            ],
        )
        plain_posts = [
            i
            for i in order
            if entries[i]["request"]["method"] == "POST"
            and not entries[i]["request"].get("ifNoneExist")
            and prepared[i] is not None
            and _parse_url(entries[i]["request"]["url"])[0] == prepared[i]["resourceType"]  # type: ignore[index]
        ]
        batched = set(plain_posts)
        with self.store.write(ctx) as tx:
            # what this transaction creates counts as there for the references in it
            tx.context[PENDING] = _created_here(entries, prepared, assigned, mapping)
            for i in order:
                if entries[i]["request"]["method"] != "DELETE":
                    break
                results[i] = self._run(tx, i, entries[i], prepared[i], assigned, mapping)
            if plain_posts:
                try:
                    stored = tx.create_many(
                        [(prepared[i], assigned[i]) for i in plain_posts],  # type: ignore[misc]
                        validate=False,
                    )
                except DuplicateIdentifier as exc:
                    raise FhirError(409, [Issue("error", "duplicate", f"Bundle: {exc}")]) from None
                for i, st in zip(plain_posts, stored, strict=True):
                    results[i] = _result(st, "201 Created")
            for i in order:
                if results[i] is None and i not in batched:
                    results[i] = self._run(tx, i, entries[i], prepared[i], assigned, mapping)
        return [r for r in results if r is not None]

    def _run(
        self,
        tx: WriteTx,
        i: int,
        entry: dict[str, Any],
        resource: dict[str, Any] | None,
        assigned: dict[int, str],
        mapping: dict[str, str],
    ) -> EntryResult:
        try:
            return self._entry(tx, entry, resource, assigned.get(i), mapping)
        except DuplicateIdentifier as exc:
            raise self._wrap(i, issue_for_duplicate(exc)) from None
        except FhirError as exc:
            raise self._wrap(i, exc) from None

    @staticmethod
    def _wrap(i: int, exc: FhirError) -> FhirError:
        return FhirError(
            exc.status,
            [
                Issue(
                    iss.severity, iss.code, f"Bundle.entry[{i}]: {iss.diagnostics}", iss.expression
                )
                for iss in exc.issues
            ],
        )

    def _entry(
        self,
        tx: WriteTx,
        entry: dict[str, Any],
        resource: dict[str, Any] | None,
        assigned_id: str | None,
        mapping: dict[str, str],
    ) -> EntryResult:
        req = entry["request"]
        method = req["method"]
        rtype, rid, query = _parse_url(req["url"])
        if rtype not in SUPPORTED_TYPES:
            raise error(404, "not-supported", f"resource type {rtype!r} is not supported")
        if method == "POST":
            if resource is None:
                raise error(400, "required", "a POST entry needs a resource")
            if_none_exist = req.get("ifNoneExist")
            if if_none_exist:
                existing = self.conditional_match(rtype, if_none_exist, tx)
                if existing is not None:
                    full = entry.get("fullUrl")
                    if isinstance(full, str) and full:
                        mapping[full] = existing.reference
                    return _result(existing, "200 OK")
            stored = tx.create(resource, res_id=assigned_id, validate=False)
            return _result(stored, "201 Created")
        if method == "PUT":
            if resource is None or rid is None:
                raise error(
                    400, "required", "a PUT entry needs Type/id in request.url and a resource"
                )
            if_match = parse_if_match(req.get("ifMatch"))
            stored, created = tx.update(rtype, rid, resource, if_match=if_match, validate=False)
            return _result(stored, "201 Created" if created else "200 OK")
        if method == "DELETE":
            if rid is None:
                raise error(400, "not-supported", "conditional delete is not supported")
            tx.delete(rtype, rid)
            return EntryResult(status="204 No Content")
        # GET inside a transaction: read or search against committed data
        return self._get(tx.ctx, rtype, rid, query, tx)

    def _get(
        self,
        ctx: WriteContext,
        rtype: str,
        rid: str | None,
        query: list[tuple[str, str]],
        tx: WriteTx | None = None,
    ) -> EntryResult:
        """A GET entry, read as the acting actor (audited in ``tx`` when inside one)."""
        actor = ctx.actor
        policy = self.policy if actor is not None else None
        if rid is not None:
            stored = self.store.read(rtype, rid)
            if policy is not None:
                policy.check_read(actor, stored, tx)
            return _result(stored, "200 OK")
        restriction = policy.restriction(actor, rtype, query, tx) if policy is not None else []
        result = self.search.search(SearchRequest(rtype, query, restriction=restriction))
        if policy is not None:
            result = policy.filter_result(actor, rtype, result, query, tx)
        # the stored bytes as they are: numbers keep the text they were written in
        head: dict[str, Any] = {"resourceType": "Bundle", "type": "searchset"}
        if result.total is not None:
            head["total"] = result.total
        entries = b",".join(b'{"resource":' + c + b"}" for _, c in result.rows)
        return EntryResult(
            status="200 OK", resource=orjson.dumps(head)[:-1] + b',"entry":[' + entries + b"]}"
        )

    def conditional_match(self, rtype: str, criteria: str, tx: WriteTx) -> StoredResource | None:
        """The resource an ``If-None-Exist`` names, searched as the acting actor: a match the
        actor may not read is no match (neither shown nor hinted at)."""
        query = parse_qsl(criteria.lstrip("?"), keep_blank_values=True)
        actor = tx.ctx.actor
        policy = self.policy if actor is not None else None
        # identifier-only criteria on types with unique identifiers: exact, inside the tx
        if len(query) == 1 and query[0][0] == "identifier" and "|" in query[0][1]:
            system, value = query[0][1].split("|", 1)
            rid = self.store.find_by_identifier(rtype, system, value, tx.conn)
            if rid is not None:
                found = tx.get(rtype, rid)
                if found is None or policy is None:
                    return found
                visible = policy.filter_result(
                    actor, rtype, SearchResult([(found.res_id, found.content)]), query, tx
                )
                return found if visible.rows else None
        restriction = [] if policy is None else policy.restriction(actor, rtype, query, tx)
        result = self.search.search(
            SearchRequest(rtype, query + [("_count", "2")], strict=True, restriction=restriction)
        )
        if policy is not None:
            result = policy.filter_result(actor, rtype, result, query, tx)
        if len(result.rows) > 1:
            raise error(
                412, "multiple-matches", f"If-None-Exist {criteria!r} matches several {rtype}"
            )
        if result.rows:
            return tx.get(rtype, result.rows[0][0])
        return None

    # ---- batch --------------------------------------------------------------------------
    def _batch(self, entries: list[dict[str, Any]], ctx: WriteContext) -> list[EntryResult]:
        results: list[EntryResult] = []
        for e in entries:
            resource = e.get("resource")
            try:
                if resource is not None:
                    validate_resource(resource)
                    unresolved = unresolved_urn_issues(
                        resource,
                        "refers to another entry: the entries of a batch are independent, so the "
                        "reference cannot be resolved (send a transaction)",
                    )
                    if unresolved:
                        raise FhirError(422, unresolved)
                if e["request"]["method"] in ("GET", "HEAD"):
                    rtype, rid, query = _parse_url(e["request"]["url"])
                    results.append(self._get(ctx, rtype, rid, query))
                    continue
                with self.store.write(ctx) as tx:
                    results.append(self._entry(tx, e, resource, None, {}))
            except DuplicateIdentifier as exc:
                err = issue_for_duplicate(exc)
                results.append(EntryResult(status=f"{err.status}", outcome=err.outcome()))
            except FhirError as exc:
                results.append(EntryResult(status=f"{exc.status}", outcome=exc.outcome()))
        return results


def _created_here(
    entries: list[dict[str, Any]],
    prepared: list[dict[str, Any] | None],
    assigned: dict[int, str],
    mapping: dict[str, str],
) -> set[str]:
    """``Type/id`` of every resource a transaction creates or writes (POST and PUT entries)."""
    out = set(mapping.values())
    for i, rid in assigned.items():
        resource = prepared[i]
        if resource is not None:
            out.add(f"{resource['resourceType']}/{rid}")
    for e in entries:
        if e["request"]["method"] == "PUT":
            rtype, rid_opt, _ = _parse_url(e["request"]["url"])
            if rid_opt:
                out.add(f"{rtype}/{rid_opt}")
    return out


def parse_if_match(value: Any) -> int | None:
    if value is None:
        return None
    text = str(value).strip()
    if text.startswith("W/"):
        text = text[2:]
    text = text.strip('"')
    try:
        return int(text)
    except ValueError:
        raise error(400, "invalid", f"If-Match {value!r} is not a version ETag") from None
