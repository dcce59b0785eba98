"""Fuzzing the ways in: random and mutated bodies (starting from the real samples in the
shared corpus and conformance folders) and random query strings against the FHIR API, the
Observation operations, every ingest adapter and the inbound message endpoint. No answer may
be a 5xx (nor an exception escaping the app): whatever the input, it is refused with a 4xx or
a diagnostic.

The number of examples is bounded (``INTEROP_FUZZ_EXAMPLES``, default 60 per test) and the
run is derandomised so that the suite is repeatable; set ``INTEROP_FUZZ_RANDOM=1`` (and more
examples) to explore further.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any
from urllib.parse import quote

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import SHARED

FNR = "13031353453"
EXAMPLES = int(os.environ.get("INTEROP_FUZZ_EXAMPLES", "60"))


def bounded(examples: int) -> Any:
    """Hypothesis settings for a fuzz run: ``examples`` per test, derandomised unless
    ``INTEROP_FUZZ_RANDOM`` is set, no example database."""
    return settings(
        max_examples=examples,
        deadline=None,
        derandomize=not os.environ.get("INTEROP_FUZZ_RANDOM"),
        database=None,
        suppress_health_check=[
            HealthCheck.function_scoped_fixture,
            HealthCheck.too_slow,
            HealthCheck.data_too_large,
        ],
    )


fuzz = bounded(EXAMPLES)
MAX_SAMPLE = 120_000
"""Larger samples are left out: mutating them only makes the run slower."""


def _files(*globs: str) -> list[bytes]:
    out: list[bytes] = []
    for pattern in globs:
        for path in sorted(SHARED.glob(pattern)):
            if path.is_file() and path.stat().st_size <= MAX_SAMPLE and path.suffix != ".md":
                out.append(path.read_bytes())
    return out


INGEST: dict[str, tuple[str, list[bytes]]] = {
    "hl7v2": (
        "",
        _files("corpus/ingest/hl7v2/*", "conformance/vendor/continua-ipf/*.hl7*"),
    ),
    "fhir": ("", _files("corpus/ingest/fhir/*.json", "conformance/vendor/vkp/*.json")),
    "openmhealth": (
        "",
        _files("corpus/ingest/openmhealth/*.json", "conformance/vendor/openmhealth/*.json"),
    ),
    "opentele": ("", _files("corpus/ingest/opentele/*", "conformance/vendor/opentele/*")),
    "mapped-csv": (
        "profile=accu-chek-csv",
        _files("corpus/ingest/mapped-csv/*.csv", "conformance/vendor/accu-chek-csv/*.csv"),
    ),
    "mapped-json": (
        "profile=fitbit-body-log-weight",
        _files("conformance/vendor/shimmer/fitbit-body-log-weight.json"),
    ),
    "apple-health": (
        "",
        _files("corpus/ingest/apple-health/*.xml", "conformance/vendor/apple-healthkit/*.xml"),
    ),
    "cda-phmr": (
        "",
        _files("corpus/ingest/cda-phmr/*.xml", "conformance/vendor/continua-ipf/*PHMR*.xml"),
    ),
}
KITH = _files("conformance/kith/*/*.xml")
FHIR_RESOURCES = _files("conformance/fhir/*/*.json", "corpus/ingest/fhir/*.json")
FHIR_TYPES = [
    "Observation",
    "Patient",
    "Bundle",
    "Device",
    "Organization",
    "Endpoint",
    "CarePlan",
    "Task",
    "QuestionnaireResponse",
    "Consent",
]
SEARCH_PARAMS = [
    "code",
    "code:not",
    "component-code",
    "date",
    "patient",
    "patient:identifier",
    "patient.identifier",
    "subject",
    "subject:Patient",
    "identifier",
    "name",
    "name:exact",
    "name:contains",
    "status",
    "category",
    "_id",
    "_lastUpdated",
    "_count",
    "_sort",
    "_summary",
    "_total",
    "_include",
    "_cursor",
    "_elements",
    "_format",
    "max",
    "value-quantity",
    "general-practitioner",
    "organization",
    "x",
]
VALUES = st.one_of(
    st.text(max_size=40),
    st.sampled_from(
        [
            "http://loinc.org|8867-4",
            "8867-4",
            "|8867-4",
            "http://loinc.org|",
            "|",
            "ge2026-01-01",
            "lt2026-01-01T10:00:00+01:00",
            "2026",
            "2026-13-45",
            "ap2026-02-30",
            "Patient/p1",
            "urn:oid:2.16.578.1.12.4.1.4.1|" + FNR,
            FNR,
            "-date",
            "date",
            "count",
            "true",
            "0",
            "-1",
            "99999999999999999999",
            "1e309",
            "NaN",
            "Observation:subject",
            "*",
            "a" * 3000,
            "\x00",
            "%",
        ]
    ),
)


def _query() -> st.SearchStrategy[str]:
    pair = st.tuples(
        st.one_of(st.sampled_from(SEARCH_PARAMS), st.text(max_size=12)),
        st.lists(VALUES, min_size=1, max_size=4).map(",".join),
    )
    return st.lists(pair, max_size=6).map(
        lambda ps: "&".join(f"{quote(k, safe='')}={quote(v, safe='')}" for k, v in ps)
    )


@st.composite
def _mutated(draw: st.DrawFn, samples: list[bytes]) -> bytes:
    """A sample with a few byte-level edits, a structure-level edit (JSON), or random bytes."""
    kind = draw(st.sampled_from(["bytes", "json", "random"] if samples else ["random"]))
    if kind == "random":
        return draw(st.binary(max_size=400))
    data = bytearray(draw(st.sampled_from(samples)))
    if kind == "json":
        try:
            doc = orjson.loads(data)
        except orjson.JSONDecodeError:
            kind = "bytes"
        else:
            return orjson.dumps(draw(_json_edit(doc)))
    for _ in range(draw(st.integers(1, 6))):
        if not data:
            break
        op = draw(st.sampled_from(["flip", "delete", "insert", "duplicate", "truncate"]))
        pos = draw(st.integers(0, len(data) - 1))
        if op == "flip":
            data[pos] = draw(st.integers(0, 255))
        elif op == "delete":
            del data[pos : pos + draw(st.integers(1, 64))]
        elif op == "insert":
            data[pos:pos] = draw(
                st.one_of(
                    st.binary(max_size=16),
                    st.sampled_from(
                        [b"<", b">", b"&", b"]]>", b'"', b"{", b"[", b"|", b"\r", b"\x00", b"\\"]
                    ),
                )
            )
        elif op == "duplicate":
            data[pos:pos] = data[pos : pos + draw(st.integers(1, 200))]
        else:
            del data[pos:]
    return bytes(data)


JSON_LEAF = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=30),
    st.sampled_from(["2026-01-01T10:00:00+01:00", "8867-4", "Patient/p1", "", "final"]),
)
JSON = st.recursive(
    JSON_LEAF,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=12), inner, max_size=4)
    ),
    max_leaves=12,
)


@st.composite
def _json_edit(draw: st.DrawFn, doc: Any) -> Any:
    """``doc`` with one node replaced, removed or given a new key."""
    paths: list[tuple[Any, Any]] = []  # (container, key)
    stack = [doc]
    while stack:
        node = stack.pop()
        items = (
            node.items()
            if isinstance(node, dict)
            else enumerate(node)
            if isinstance(node, list)
            else ()
        )
        for k, v in items:
            paths.append((node, k))
            stack.append(v)
    if not paths:
        return draw(JSON)
    container, key = draw(st.sampled_from(paths))
    op = draw(st.sampled_from(["replace", "remove", "add"]))
    if op == "replace":
        container[key] = draw(JSON)
    elif op == "remove":
        del container[key]
    elif isinstance(container, dict):
        container[draw(st.text(max_size=12))] = draw(JSON)
    else:
        container.append(draw(JSON))
    return doc


def _ok(r: Any) -> None:
    assert r.status_code < 500, (r.status_code, r.text[:500])


# ---- the FHIR API ---------------------------------------------------------------------


@fuzz
@given(rtype=st.sampled_from(FHIR_TYPES), body=_mutated(FHIR_RESOURCES))
def test_fhir_create_and_update_never_5xx(client, rtype: str, body: bytes) -> None:  # type: ignore[no-untyped-def]
    _ok(client.post(f"/fhir/{rtype}", content=body))
    _ok(client.put(f"/fhir/{rtype}/fuzz-1", content=body))


@fuzz
@given(body=_mutated(FHIR_RESOURCES))
def test_fhir_batch_and_transaction_never_5xx(client, body: bytes) -> None:  # type: ignore[no-untyped-def]
    _ok(client.post("/fhir", content=body))
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError:
        return
    for kind in ("batch", "transaction"):
        bundle = {
            "resourceType": "Bundle",
            "type": kind,
            "entry": [{"resource": doc, "request": {"method": "POST", "url": "Observation"}}],
        }
        _ok(client.post("/fhir", content=orjson.dumps(bundle)))


@fuzz
@given(rtype=st.sampled_from(FHIR_TYPES), query=_query())
def test_fhir_search_never_5xx(client, rtype: str, query: str) -> None:  # type: ignore[no-untyped-def]
    _ok(client.get(f"/fhir/{rtype}?{query}"))
    _ok(
        client.post(
            f"/fhir/{rtype}/_search",
            content=query.encode(),
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        )
    )


@fuzz
@given(
    op=st.sampled_from(["$lastn", "$stats"]),
    query=_query(),
    body=st.one_of(
        _mutated(
            [
                b'{"resourceType":"Parameters","parameter":[{"name":"code","valueString":'
                b'"http://loinc.org|8867-4"},{"name":"max","valueInteger":3},'
                b'{"name":"patient","valueString":"Patient/p1"},'
                b'{"name":"period","valueString":"2026"}]}'
            ]
        ),
        _query().map(str.encode),
    ),
    json_body=st.booleans(),
)
def test_observation_operations_never_5xx(
    client, op: str, query: str, body: bytes, json_body: bool
) -> None:  # type: ignore[no-untyped-def]
    _ok(client.get(f"/fhir/Observation/{op}?{query}"))
    ctype = "application/fhir+json" if json_body else "application/x-www-form-urlencoded"
    _ok(
        client.post(
            f"/fhir/Observation/{op}?{query}", content=body, headers={"Content-Type": ctype}
        )
    )


# ---- the ingest adapters and the message endpoint -------------------------------------


@pytest.mark.parametrize("adapter", sorted(INGEST))
def test_every_adapter_is_fuzzed(adapter: str) -> None:
    assert INGEST[adapter][1], f"no samples found for {adapter} under {SHARED}"


@fuzz
@given(data=st.data())
def test_ingest_never_5xx(client, data: st.DataObject) -> None:  # type: ignore[no-untyped-def]
    adapter = data.draw(st.sampled_from(sorted(INGEST)))
    options, samples = INGEST[adapter]
    body = data.draw(_mutated(samples))
    query = "&".join(
        x
        for x in (options, data.draw(st.sampled_from(["", f"patient={FNR}"])), data.draw(_query()))
        if x
    )
    _ok(client.post(f"/ingest/{adapter}?{query}", content=body))


@fuzz
@given(body=_mutated(KITH))
def test_inbound_messages_never_5xx(client, body: bytes) -> None:  # type: ignore[no-untyped-def]
    _ok(
        client.post(
            "/api/v1/messages/inbound", content=body, headers={"Content-Type": "application/xml"}
        )
    )


def test_the_samples_are_there() -> None:
    assert KITH and FHIR_RESOURCES
    assert Path(SHARED).is_dir()
