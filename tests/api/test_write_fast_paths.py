"""The write path's shortcuts give the same results as the plain code they replace: index
extraction, the reference rewrite in transactions, server ids, and creates that skip routing."""

from __future__ import annotations

import json
import random
import uuid
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from interop.bench import data
from interop.fhir.searchparams import (
    EXACT,
    IndexEntries,
    _component_rows,
    _walk,
    composite_plan,
    dates_of,
    definitions,
    extract,
    fold,
    reference_target,
    strings_of,
    tokens_of,
    values,
)
from interop.store.context import WriteContext
from interop.store.repository import new_id
from interop.store.transaction import _rewrite_refs, _with_mapped_refs
from tests.conftest import CONFORMANCE


def plain_extract(resource: dict[str, Any], zone: str = "Europe/Oslo") -> IndexEntries:
    """The straightforward extraction (every parameter through :func:`values`)."""
    entries = IndexEntries()
    if resource["resourceType"] == "Patient":
        entries.patient_id = resource.get("id")
    for name, param in definitions(resource["resourceType"]).items():
        if param.index != "generic" and param.type != "reference":
            continue
        for v in values(resource, param):
            if param.type == "token":
                entries.tokens += [(name, s or "", c) for s, c in tokens_of(v)]
            elif param.type == "reference" and isinstance(v, str) and v:
                entries.references.append((name, v[:255]))  # a canonical
            elif param.type == "reference" and isinstance(v, dict):
                ref = v.get("reference")
                if isinstance(ref, str):
                    target = reference_target(ref)
                    if not param.target or target.startswith(param.target + "/"):
                        # a Patient reference of the observation index is its patient_id only
                        if param.index == "generic" or not target.startswith("Patient/"):
                            entries.references.append((name, target))
                        if param.compartment and entries.patient_id is None:
                            entries.patient_id = target.split("/", 1)[1]
                ident = v.get("identifier")
                if isinstance(ident, dict) and ident.get("value"):
                    entries.tokens.append(
                        (name + ":identifier", ident.get("system", ""), str(ident["value"]))
                    )
            elif param.type == "date":
                entries.dates += [(name, s, e) for s, e in dates_of(v, zone)]
            elif param.type == "string":
                for raw in strings_of(v):
                    if fold(raw):
                        entries.strings.append((name, fold(raw)[:255]))
                        entries.strings.append((name + EXACT, raw[:255]))
    _plain_composites(entries, resource, zone)
    return entries


def _plain_composites(entries: IndexEntries, resource: dict[str, Any], zone: str) -> None:
    """A composite's rows per element under its root, every component walked in full."""
    for _name, roots, comps in composite_plan(resource["resourceType"]):
        ordinal = 0
        for root in roots:
            for node in _walk(resource, root) if root else [resource]:
                found = [
                    [v for path in below for v in _walk(node, path)] for *_x, below, _p in comps
                ]
                if not isinstance(node, dict) or not all(found):
                    continue
                part = IndexEntries()
                for (key, ctype, _below, prefix), vals in zip(comps, found, strict=True):
                    before = part.row_count()
                    _component_rows(part, f"{key}{ordinal}", ctype, vals, prefix, zone)
                    if part.row_count() == before:
                        break
                else:
                    entries.add(part)
                    ordinal += 1


def _resources(node: Any) -> list[dict[str, Any]]:
    found = []
    if isinstance(node, dict):
        if isinstance(node.get("resourceType"), str) and definitions(node["resourceType"]):
            found.append(node)
        for v in node.values():
            found += _resources(v)
    elif isinstance(node, list):
        for v in node:
            found += _resources(v)
    return found


def test_extract_matches_the_plain_extraction() -> None:
    corpus: list[dict[str, Any]] = []
    for path in sorted(CONFORMANCE.rglob("*.json")):
        try:
            corpus += _resources(json.loads(path.read_text(encoding="utf-8")))
        except ValueError:
            continue
    rng = random.Random(5)
    corpus += [data.observation(rng, data.patient_id(i), data.END, i) for i in range(200)]
    corpus += [data.patient(i) for i in range(20)]
    corpus.append(
        {
            "resourceType": "Observation",
            "subject": [{"reference": "Patient/a"}, {"identifier": {"value": "x"}}],
            "performer": {"reference": "https://example.org/fhir/Practitioner/1/_history/2"},
            "status": None,
            "category": [{"coding": [{"code": "a"}, {"system": "s"}]}, "text", 5, True],
        }
    )
    assert len({r["resourceType"] for r in corpus}) >= 8
    for resource in corpus:
        assert extract(resource) == plain_extract(resource), resource.get("id")


fullurls = st.one_of(
    st.uuids().map(lambda u: f"urn:uuid:{u}"),
    st.sampled_from(["http://example.org/fhir/Patient/1", 'urn:x:"quoted"', "urn:ø:å", "a\\b"]),
    st.text(min_size=1, max_size=8),
)
json_values = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(-5, 5), st.text(max_size=5), fullurls),
    lambda inner: st.one_of(
        st.lists(inner, max_size=3),
        st.dictionaries(st.sampled_from(["reference", "display", "x", "extension"]), inner),
    ),
    max_leaves=12,
)


@settings(max_examples=300, deadline=None)
@given(st.lists(fullurls, min_size=1, max_size=4, unique=True), json_values, st.data())
def test_reference_rewrite_prefilter_never_misses(
    keys: list[str], doc: Any, draw: st.DataObject
) -> None:
    mapping = {k: f"Patient/{i}" for i, k in enumerate(keys)}
    if draw.draw(st.booleans()):  # a reference to one of the fullUrls somewhere
        doc = {"wrapped": doc, "subject": {"reference": draw.draw(st.sampled_from(keys))}}
    resource = {"resourceType": "Observation", "body": doc}
    assert _with_mapped_refs(resource, mapping) == _rewrite_refs(resource, mapping)


def test_new_ids_are_uuid7() -> None:
    seen = set()
    for _ in range(2000):
        rid = new_id()
        u = uuid.UUID(rid)
        assert str(u) == rid and u.version == 7 and u.variant == uuid.RFC_4122
        seen.add(rid)
    assert len(seen) == 2000


OBS = {
    "resourceType": "Observation",
    "status": "final",
    "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4"}]},
    "valueQuantity": {"value": 72, "unit": "/min"},
}


def test_create_with_and_without_the_routing_shortcut(client) -> None:  # type: ignore[no-untyped-def]
    r = client.post("/fhir/Observation", json=OBS)
    assert r.status_code == 201, r.text
    assert r.headers["location"].startswith("Observation/")
    r = client.post("/fhir/Observation?_format=json", json=OBS)  # a query: the routed endpoint
    assert r.status_code == 201, r.text
    r = client.post("/fhir/Observation", json={**OBS, "status": 1})
    assert r.status_code == 422
    assert r.json()["issue"][0]["expression"] == ["Observation.status"]
    r = client.post("/fhir/Observation", content=b"{", headers={"Content-Type": "application/json"})
    assert r.status_code == 400 and r.json()["resourceType"] == "OperationOutcome"
    # XML is read (tests/api/test_xml_format.py): a root outside the FHIR namespace is a 400
    r = client.post("/fhir/Observation", content=b"<x/>", headers={"Content-Type": "text/xml"})
    assert r.status_code == 400 and "OperationOutcome" in r.text
    r = client.post("/fhir/Observation", content=b"a,b", headers={"Content-Type": "text/csv"})
    assert r.status_code == 415 and r.json()["resourceType"] == "OperationOutcome"
    r = client.post("/fhir/Observation", json=OBS, headers={"Authorization": "Bearer wrong"})
    assert r.status_code == 401 and r.json()["resourceType"] == "OperationOutcome"
    r = client.post("/fhir/Banana", json=OBS)
    assert r.status_code == 404 and r.json()["resourceType"] == "OperationOutcome"


def test_bulk_rows_round_trip_and_duplicates(services) -> None:  # type: ignore[no-untyped-def]
    """Bulk inserts (COPY on PostgreSQL) keep every character and raise SQLAlchemy's
    IntegrityError for a duplicate key, as INSERT does."""
    import pytest
    from sqlalchemy import select
    from sqlalchemy.exc import IntegrityError

    from interop.fhir.outcome import FhirError
    from interop.store.schema import token_table, unique_identifier_table

    store = services.store
    odd = ["tab\there", "line\nbreak", "back\\slash", "\\N", "ø æ å ✓", "quote\"'", ""]
    items = [
        (
            {
                "resourceType": "Device",
                "identifier": [{"system": "urn:odd", "value": value or "empty"}],
                "status": "active",
                "manufacturer": value or "x",
            },
            None,
        )
        for value in odd
    ]
    with store.write(WriteContext.service()) as tx:
        stored = tx.create_many(items)
    for one, (resource, _) in zip(stored, items, strict=True):
        assert store.read("Device", one.res_id).json()["manufacturer"] == resource["manufacturer"]
    with store.reader() as conn:
        codes = set(
            conn.execute(
                select(token_table.c.code).where(
                    token_table.c.res_type == "Device", token_table.c.system == "urn:odd"
                )
            ).scalars()
        )
    assert codes == {v or "empty" for v in odd}

    with pytest.raises(FhirError) as exc, store.write(WriteContext.service()) as tx:
        org = {"resourceType": "Organization", "name": "x"}
        tx.create_many([(org, "same-id"), (org, "same-id")], validate=False)
    assert exc.value.status == 409
    rows = [("Device", "urn:dup", "1", "a"), ("Device", "urn:dup", "1", "b")]
    with pytest.raises(IntegrityError), store.write(WriteContext.service()) as tx:
        tx.bulk.insert_rows(
            unique_identifier_table, ("res_type", "system", "value", "res_id"), rows
        )
        tx.bulk.flush()
