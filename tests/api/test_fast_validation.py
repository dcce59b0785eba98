"""The hand-written Observation validator against ``fhir.resources``: same verdict, same element.

``interop.fhir.fast_observation`` lets the store skip the pydantic models for the Observations
it accepts, so it must never accept what ``fhir.resources.R4B`` refuses. These tests generate
Observation-like documents (valid ones and subtly broken ones: wrong JSON types, impossible
dates, unknown elements, missing status/code, two value[x], bad decimals, empty strings and
lists, odd whitespace, broken references, nulls, primitive extensions) and compare verdicts.
"""

from __future__ import annotations

import copy
import json
import math
import random
import sys
import unicodedata
from collections import Counter
from collections.abc import Callable
from datetime import timedelta, timezone
from functools import partial
from typing import Any

import pytest
from fhir.resources.R4B import get_fhir_model_class
from fhir_core.types import CodeType, StringType
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import TypeAdapter, ValidationError

from interop.fhir import fast_observation
from interop.fhir.fast_observation import check_observation
from interop.fhir.outcome import FhirError
from interop.fhir.validation import validate_resource
from tests.conftest import CONFORMANCE

MODEL = get_fhir_model_class("Observation")
LOINC = "http://loinc.org"
UCUM = "http://unitsofmeasure.org"


def reference_verdict(doc: Any) -> tuple[str, list[str] | None]:
    """fhir.resources' verdict and the element paths it names (``Observation.code.text``);
    ``None`` when it fails without naming any (fhir_core raises AttributeError on a non-string
    ``valueUrl``, for one)."""
    try:
        MODEL.model_validate(copy.deepcopy(doc))
    except ValidationError as exc:
        paths = []
        for err in exc.errors(include_url=False):
            path = "Observation"
            for part in err["loc"]:
                if part == "root":
                    continue
                part = "resourceType" if part == "resource_type" else part
                path += f"[{part}]" if isinstance(part, int) else f".{part}"
            paths.append(path)
        return "reject", paths
    except Exception:  # noqa: BLE001 - any failure is a refusal (validation.py turns it into 422)
        return "reject", None
    return "accept", []


def assert_same_verdict(doc: Any) -> str:
    fast = check_observation(doc)
    ref, paths = reference_verdict(doc)
    if fast.verdict == "accept":
        assert ref == "accept", f"fast path accepted what fhir.resources rejects at {paths}"
    elif fast.verdict == "reject":
        assert ref == "reject", f"fast path rejected ({fast.expression}: {fast.message}) valid"
        assert paths is None or fast.expression in paths, (
            f"fast path names {fast.expression}, fhir.resources {paths}"
        )
    return fast.verdict


# ---- generators ---------------------------------------------------------------------------
WHITESPACE = [" ", "\t", "\n", "\r", "\x0b", "\x0c", "\x1c", "\x85", "\xa0", "\u2003", "\u3000"]
text = st.one_of(
    st.sampled_from(["Heart rate", "Blodtrykk", "Ærlig måling", "x", " ", "a  b", "\t"]),
    st.text(min_size=1, max_size=6),
    st.lists(st.sampled_from(WHITESPACE + ["a", "ø"]), min_size=0, max_size=3).map("".join),
)
codes = st.one_of(
    st.sampled_from(["8867-4", "final", "vital-signs", "mm[Hg]", "/min", "Cel", "a b"]),
    st.lists(st.sampled_from(["a", "1", "-"] + WHITESPACE), min_size=0, max_size=4).map("".join),
)
uris = st.sampled_from([LOINC, UCUM, "urn:oid:2.16.578.1.12.4.1.4.1", "", "a b", "Patient/1"])
ids = st.one_of(
    st.sampled_from(["abc", "a.b-1", "a_b", "x" * 64, "x" * 255, "x" * 256, "ab\n", ""]),
    st.from_regex(r"[A-Za-z0-9\-.]{1,8}", fullmatch=True),
)
decimals = st.one_of(
    st.integers(min_value=-(2**63), max_value=2**63),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([True, False, "72.5", "7x", "1e3", "-0"]),
)
integers = st.one_of(
    st.integers(min_value=-(2**31) - 2, max_value=2**31 + 1),
    st.sampled_from([True, 3.0, 3.5, "3", -(2**31), 2**31 - 1]),
)
booleans = st.sampled_from([True, False, 0, 1, "true", "yes", 2])


@st.composite
def datetimes(draw: st.DrawFn, instant: bool = False) -> str:
    year = draw(st.sampled_from(["2026", "2024", "2100", "2000", "0001", "0000", "9999", "26"]))
    month = draw(st.sampled_from(["01", "02", "04", "12", "13", "00", "1"]))
    day = draw(st.sampled_from(["01", "28", "29", "30", "31", "32", "00"]))
    hour = draw(st.sampled_from(["00", "08", "23", "24"]))
    minute = draw(st.sampled_from(["00", "30", "59", "60"]))
    second = draw(st.sampled_from(["00", "59", "60", "61"]))
    frac = draw(st.sampled_from(["", ".1", ".123", ".123456789012", "."]))
    tz = draw(st.sampled_from(["Z", "+01:00", "-13:59", "+14:00", "+14:30", "", "z", "+0100"]))
    shape = draw(st.integers(0, 3)) if not instant else 3
    if shape == 0:
        return year
    if shape == 1:
        return f"{year}-{month}"
    if shape == 2:
        return f"{year}-{month}-{day}"
    sep = draw(st.sampled_from(["T", "T", "T", " ", "t"]))
    return f"{year}-{month}-{day}{sep}{hour}:{minute}:{second}{frac}{tz}"


def maybe(**fields: st.SearchStrategy[Any]) -> st.SearchStrategy[dict[str, Any]]:
    return st.fixed_dictionaries({}, optional=fields)


coding: st.SearchStrategy[dict[str, Any]]
quantity: st.SearchStrategy[dict[str, Any]]
extension: st.SearchStrategy[dict[str, Any]] = st.deferred(
    lambda: st.fixed_dictionaries(
        {"url": uris},
        optional={
            "valueString": text,
            "valueCode": codes,
            "valueBoolean": booleans,
            "valueDecimal": decimals,
            "valueInteger": integers,
            "valueDateTime": datetimes(),
            "valueCoding": coding,
            "valueQuantity": quantity,
            "valueUrl": uris,
            "extension": st.lists(extension, max_size=1),
        },
    )
)
extensions = st.lists(extension, max_size=2)
coding = maybe(system=uris, version=text, code=codes, display=text, userSelected=booleans, id=text)
concept = maybe(coding=st.lists(coding, max_size=2), text=text, extension=extensions)
period = maybe(start=datetimes(), end=datetimes())
identifier = maybe(
    system=uris,
    value=text,
    use=codes,
    period=period,
    type=st.just({"text": "MR"}),
    assigner=st.just({"display": "x"}),
)
reference = maybe(
    reference=st.sampled_from(["Patient/1", "urn:uuid:1", "", 5, "Patient/1 "]),
    display=text,
    type=uris,
    identifier=identifier,
)
quantity = maybe(value=decimals, unit=text, system=uris, code=codes, comparator=codes)
range_ = maybe(low=quantity, high=quantity)
reference_range = maybe(
    low=quantity, high=quantity, type=concept, appliesTo=st.lists(concept, max_size=1),
    age=range_, text=text,
)  # fmt: skip
VALUES = {
    "valueQuantity": quantity,
    "valueCodeableConcept": concept,
    "valueString": text,
    "valueInteger": integers,
    "valueBoolean": booleans,
    "valueRange": range_,
    "valueDateTime": datetimes(),
    "valueSampledData": st.just({"origin": {"value": 1}, "dimensions": 1}),
}
component = st.fixed_dictionaries(
    {"code": concept},
    optional={
        **VALUES,
        "dataAbsentReason": concept,
        "interpretation": st.lists(concept, max_size=2),
        "referenceRange": st.lists(reference_range, max_size=1),
        "extension": extensions,
    },
)
observation = st.fixed_dictionaries(
    {"resourceType": st.just("Observation"), "status": codes, "code": concept},
    optional={
        "id": ids,
        "meta": maybe(
            versionId=ids,
            lastUpdated=datetimes(instant=True),
            profile=st.lists(uris, max_size=2),
            tag=st.lists(coding, max_size=1),
            source=uris,
        ),
        "text": maybe(status=codes, div=st.just('<div xmlns="http://www.w3.org/1999/xhtml"/>')),
        "extension": extensions,
        "identifier": st.lists(identifier, max_size=2),
        "category": st.lists(concept, max_size=2),
        "subject": reference,
        "device": reference,
        "performer": st.lists(reference, max_size=2),
        "derivedFrom": st.lists(reference, max_size=1),
        "hasMember": st.lists(reference, max_size=1),
        "effectiveDateTime": datetimes(),
        "effectiveInstant": datetimes(instant=True),
        "effectivePeriod": period,
        "issued": datetimes(instant=True),
        **VALUES,
        "dataAbsentReason": concept,
        "interpretation": st.lists(concept, max_size=2),
        "note": st.lists(
            maybe(text=text, time=datetimes(), authorString=text, authorReference=reference),
            max_size=1,
        ),
        "referenceRange": st.lists(reference_range, max_size=2),
        "component": st.lists(component, max_size=3),
    },
)

JUNK = [None, 1, 1.5, True, "", " ", "x y", [], {}, [None], [1], {"text": "x"}, "2026-02-30"]


def _nodes(doc: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [path]
    if isinstance(doc, dict):
        for k, v in doc.items():
            out += _nodes(v, (*path, k))
    elif isinstance(doc, list):
        for i, v in enumerate(doc):
            out += _nodes(v, (*path, i))
    return out


def _get(doc: Any, path: tuple[Any, ...]) -> Any:
    for p in path:
        doc = doc[p]
    return doc


@st.composite
def mutated(draw: st.DrawFn) -> dict[str, Any]:
    """A generated Observation with up to three small corruptions at random places."""
    doc = copy.deepcopy(draw(observation))  # st.just() values are shared between examples
    for _ in range(draw(st.integers(0, 3))):
        path = draw(st.sampled_from(_nodes(doc)))
        node = _get(doc, path)
        parent = _get(doc, path[:-1]) if path else None
        action = draw(st.integers(0, 6))
        if action == 0 and parent is not None:  # replace with junk of another type
            parent[path[-1]] = copy.deepcopy(draw(st.sampled_from(JUNK)))
        elif action == 1 and isinstance(node, dict):  # an element the model does not define
            node[draw(st.sampled_from(["foo", "valueFoo", "_status", "fhir_comments", "Code"]))] = 1
        elif action == 2 and isinstance(node, dict) and node:  # drop an element
            del node[draw(st.sampled_from(sorted(node)))]
        elif action == 3 and parent is not None:  # wrap in / unwrap from a list
            if isinstance(node, list):
                parent[path[-1]] = node[0] if node else {}
            else:
                parent[path[-1]] = [node]
        elif action == 4 and isinstance(node, dict):  # a second value[x]
            node["valueString"] = "second"
        elif action == 5 and isinstance(node, dict):
            node["dataAbsentReason"] = {"text": "obs-6"}
        elif action == 6 and isinstance(node, list):
            node.append(None)
    return doc


# ---- a cheap random generator for volume (hypothesis draws the seeds) ---------------------
TEXTS = ["Heart rate", "Ærlig måling", "x", " ", "a  b", "", "\xa0", "\x0b", "\x1c", "a\ud800"]
CODES = ["8867-4", "final", "mm[Hg]", "a b", "a  b", "", " a", "a\n", "a\xa0b", "a\x1cb", 7]
URIS = [LOINC, UCUM, "", "a b", 1]
IDS = ["abc", "a.b-1", "a_b", "x" * 255, "x" * 256, "ab\n", "", 5]
DECIMALS = [72, -0.5, 1e20, 5e-324, 2**70, math.inf, math.nan, True, "72.5", "7x", None]
INTEGERS = [0, 2**31 - 1, 2**31, -(2**31), -(2**31) - 1, True, 3.0, 3.5, "3"]
BOOLEANS = [True, False, 0, 1, "true", 2]
DATES = [
    "2026", "2026-02", "2026-13", "2026-02-28", "2026-02-29", "2024-02-29", "2100-02-29",
    "2026-04-31", "0000", "0001-01-01", "2026-01-05T08:30:00+01:00", "2026-01-05T08:30:00",
    "2026-01-05T24:00:00Z", "2016-12-31T23:59:60Z", "2026-01-05T08:30:00.123456789Z",
    "2026-01-05T08:30Z", "2026-01-05T08:30:00+14:30", "2026-01-05 08:30:00Z", 1700000000,
]  # fmt: skip
INSTANTS = [
    "2026-01-05T08:30:00Z",
    "2026-01-05T08:30:00.5+01:00",
    "2026-01-05",
    "2026-02-30T00:00:00Z",
]


class RandomObservations:
    """Observation-like documents from :class:`random.Random`: far cheaper than composing
    hypothesis strategies, so many thousands can be compared per run."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng

    def pick(self, values: list[Any]) -> Any:
        # mostly the first (valid) values, sometimes any
        r = self.rng
        return values[0] if r.random() < 0.5 else copy.deepcopy(r.choice(values))

    def some(self, make: Callable[[], Any], most: int = 2) -> list[Any]:
        return [make() for _ in range(self.rng.randint(0, most))]

    def maybe(self, fields: dict[str, Callable[[], Any]], p: float = 0.4) -> dict[str, Any]:
        return {k: make() for k, make in fields.items() if self.rng.random() < p}

    def coding(self) -> dict[str, Any]:
        return self.maybe(
            {
                "system": lambda: self.pick(URIS),
                "code": lambda: self.pick(CODES),
                "display": lambda: self.pick(TEXTS),
                "userSelected": lambda: self.pick(BOOLEANS),
            },
            0.6,
        )

    def concept(self) -> dict[str, Any]:
        return self.maybe(
            {"coding": lambda: self.some(self.coding), "text": lambda: self.pick(TEXTS)}
        )

    def quantity(self) -> dict[str, Any]:
        return self.maybe(
            {
                "value": lambda: self.pick(DECIMALS),
                "unit": lambda: self.pick(TEXTS),
                "system": lambda: self.pick(URIS),
                "code": lambda: self.pick(CODES),
                "comparator": lambda: self.pick(["<", "~", ""]),
            },
            0.6,
        )

    def reference(self) -> dict[str, Any]:
        return self.maybe(
            {
                "reference": lambda: self.pick(["Patient/1", "", 5]),
                "display": lambda: self.pick(TEXTS),
                "identifier": lambda: {"system": self.pick(URIS), "value": self.pick(TEXTS)},
            }
        )

    def period(self) -> dict[str, Any]:
        return self.maybe({"start": lambda: self.pick(DATES), "end": lambda: self.pick(DATES)})

    def extension(self, depth: int = 0) -> dict[str, Any]:
        ext = self.maybe(
            {
                "valueString": lambda: self.pick(TEXTS),
                "valueCode": lambda: self.pick(CODES),
                "valueDecimal": lambda: self.pick(DECIMALS),
                "valueCoding": self.coding,
                "valueInstant": lambda: self.pick(INSTANTS),
                "extension": lambda: [self.extension(depth + 1)] if depth < 2 else [],
            },
            0.3,
        )
        if self.rng.random() < 0.9:
            ext["url"] = self.pick(URIS)
        return ext

    def values(self) -> dict[str, Callable[[], Any]]:
        return {
            "valueQuantity": self.quantity,
            "valueCodeableConcept": self.concept,
            "valueString": lambda: self.pick(TEXTS),
            "valueInteger": lambda: self.pick(INTEGERS),
            "valueBoolean": lambda: self.pick(BOOLEANS),
            "valuePeriod": self.period,
        }

    def observation(self) -> dict[str, Any]:
        r = self.rng
        ref_range = lambda: self.maybe(  # noqa: E731
            {"low": self.quantity, "high": self.quantity, "text": lambda: self.pick(TEXTS)}
        )
        component = lambda: {  # noqa: E731
            "code": self.concept(),
            **self.maybe({**self.values(), "dataAbsentReason": self.concept}, 0.3),
        }
        doc: dict[str, Any] = {"resourceType": "Observation"}
        if r.random() < 0.95:
            doc["status"] = self.pick(CODES[1:])
        if r.random() < 0.95:
            doc["code"] = self.concept()
        doc.update(
            self.maybe(
                {
                    "id": lambda: self.pick(IDS),
                    "meta": lambda: {
                        "versionId": self.pick(IDS),
                        "lastUpdated": self.pick(INSTANTS),
                    },
                    "extension": lambda: self.some(self.extension),
                    "identifier": lambda: [{"system": self.pick(URIS), "value": self.pick(TEXTS)}],
                    "category": lambda: self.some(self.concept),
                    "subject": self.reference,
                    "device": self.reference,
                    "performer": lambda: self.some(self.reference),
                    "hasMember": lambda: self.some(self.reference),
                    "effectiveDateTime": lambda: self.pick(DATES),
                    "effectiveInstant": lambda: self.pick(INSTANTS),
                    "effectivePeriod": self.period,
                    "issued": lambda: self.pick(INSTANTS),
                    **self.values(),
                    "dataAbsentReason": self.concept,
                    "interpretation": lambda: self.some(self.concept),
                    "note": lambda: [
                        self.maybe(
                            {"text": lambda: self.pick(TEXTS), "time": lambda: self.pick(DATES)},
                            0.8,
                        )
                    ],
                    "referenceRange": lambda: self.some(ref_range),
                    "component": lambda: self.some(component, 3),
                },
                0.25,
            )
        )
        return doc

    def mutate(self, doc: dict[str, Any]) -> dict[str, Any]:
        r = self.rng
        for _ in range(r.randint(0, 2)):
            path = r.choice(_nodes(doc))
            node = _get(doc, path)
            parent = _get(doc, path[:-1]) if path else None
            action = r.randint(0, 6)
            if action == 0 and parent is not None:
                parent[path[-1]] = copy.deepcopy(r.choice(JUNK))
            elif action == 1 and isinstance(node, dict):
                node[r.choice(["foo", "valueFoo", "_status", "fhir_comments", "resourceType"])] = 1
            elif action == 2 and isinstance(node, dict) and node:
                del node[r.choice(sorted(node))]
            elif action == 3 and parent is not None:
                parent[path[-1]] = (node[0] if node else {}) if isinstance(node, list) else [node]
            elif action == 4 and isinstance(node, dict):
                node["valueString"] = "second"
            elif action == 5 and isinstance(node, dict):
                node["dataAbsentReason"] = {"text": "obs-6"}
            elif action == 6 and isinstance(node, list):
                node.append(None)
        return doc


@settings(max_examples=150, deadline=None)
@given(st.integers(min_value=0, max_value=2**64))
def test_random_observations_same_verdict(seed: int) -> None:
    gen = RandomObservations(random.Random(seed))
    verdicts = Counter(assert_same_verdict(gen.mutate(gen.observation())) for _ in range(60))
    assert sum(verdicts.values()) == 60


# ---- the properties -------------------------------------------------------------------------
@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(observation)
def test_generated_observations_same_verdict(doc: dict[str, Any]) -> None:
    assert_same_verdict(doc)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated())
def test_mutated_observations_same_verdict(doc: dict[str, Any]) -> None:
    assert_same_verdict(doc)


CLEAN_TEXT = st.text(st.characters(codec="utf-8", exclude_categories=["Cs"]), min_size=1).filter(
    lambda s: s.strip(fast_observation._STRING_ONLY_WS) != ""
)
clean_coding = st.fixed_dictionaries(
    {"system": st.just(LOINC), "code": st.from_regex(r"[0-9]{1,5}-[0-9]", fullmatch=True)},
    optional={"display": CLEAN_TEXT},
)
clean_quantity = st.fixed_dictionaries(
    {"value": st.one_of(st.integers(-(10**9), 10**9), st.floats(allow_nan=False, allow_infinity=False))},
    optional={"unit": CLEAN_TEXT, "system": st.just(UCUM), "code": st.sampled_from(["/min", "%"])},
)  # fmt: skip
clean_when = st.datetimes(
    timezones=st.integers(-13 * 60, 14 * 60).map(lambda m: timezone(timedelta(minutes=m)))
).map(lambda d: d.isoformat(timespec=("seconds", "milliseconds")[d.microsecond % 2]))


@settings(max_examples=200, deadline=None)
@given(
    st.fixed_dictionaries(
        {
            "resourceType": st.just("Observation"),
            "status": st.sampled_from(["final", "amended", "preliminary"]),
            "code": st.fixed_dictionaries(
                {"coding": st.lists(clean_coding, min_size=1, max_size=2)}
            ),
            "subject": st.just({"reference": "Patient/p1"}),
            "effectiveDateTime": clean_when,
        },
        optional={
            "valueQuantity": clean_quantity,
            "component": st.lists(
                st.fixed_dictionaries(
                    {"code": st.fixed_dictionaries({"coding": st.lists(clean_coding, min_size=1)})},
                    optional={"valueQuantity": clean_quantity},
                ),
                max_size=3,
            ),
            "note": st.lists(st.fixed_dictionaries({"text": CLEAN_TEXT}), max_size=1),
        },
    )
)
def test_valid_measurements_take_the_fast_path(doc: dict[str, Any]) -> None:
    """The shapes the product stores are decided without pydantic, and accepted."""
    assert reference_verdict(doc)[0] == "accept"
    assert check_observation(doc).verdict == "accept"


# ---- fixed cases ----------------------------------------------------------------------------
def _base() -> dict[str, Any]:
    return {
        "resourceType": "Observation",
        "status": "final",
        "code": {"coding": [{"system": LOINC, "code": "8867-4"}]},
        "subject": {"reference": "Patient/1"},
        "effectiveDateTime": "2026-01-05T08:30:00+01:00",
        "valueQuantity": {"value": 72, "unit": "/min", "system": UCUM, "code": "/min"},
    }


def _set(**kw: Any) -> Callable[[dict[str, Any]], None]:
    return lambda d: d.update(kw)


def _drop(key: str) -> Callable[[dict[str, Any]], None]:
    return lambda d: d.pop(key)


def _coding(**kw: Any) -> Callable[[dict[str, Any]], None]:
    return lambda d: d["code"]["coding"][0].update(kw)


def _value(v: Any) -> Callable[[dict[str, Any]], None]:
    return lambda d: d["valueQuantity"].update(value=v)


CASES: list[tuple[str, Callable[[dict[str, Any]], object], str, str]] = [
    # (what, change, fast verdict, element named)
    ("as sent", lambda d: None, "accept", ""),
    ("status missing", _drop("status"), "reject", "Observation.status"),
    ("code missing", _drop("code"), "reject", "Observation.code"),
    ("status not a string", _set(status=1), "reject", "Observation.status"),
    ("unknown element", _set(foo=1), "reject", "Observation.foo"),
    ("unknown nested element", lambda d: d["code"].update(foo=1), "reject", "Observation.code.foo"),
    ("two value[x]", _set(valueString="x"), "reject", "Observation"),
    ("two effective[x]", _set(effectiveInstant="2026-01-05T08:00:00Z"), "reject", "Observation"),
    ("dateTime without zone", _set(effectiveDateTime="2026-01-05T08:30:00"), "reject",
     "Observation.effectiveDateTime"),
    ("30 February", _set(effectiveDateTime="2026-02-30"), "reject", "Observation.effectiveDateTime"),
    ("29 February 2100", _set(effectiveDateTime="2100-02-29"), "reject", "Observation.effectiveDateTime"),
    ("instant without time", _set(issued="2026-01-05"), "reject", "Observation.issued"),
    ("decimal infinity", _value(math.inf), "reject", "Observation.valueQuantity.value"),
    ("decimal boolean", _value(True), "reject", "Observation.valueQuantity.value"),
    ("empty code", _coding(code=""), "reject", "Observation.code.coding[0].code"),
    ("code with two spaces", _coding(code="a  b"), "reject", "Observation.code.coding[0].code"),
    ("empty display", _coding(display=""), "reject", "Observation.code.coding[0].display"),
    ("display of a no-break space", _coding(display="\xa0"), "reject",
     "Observation.code.coding[0].display"),
    ("category not a list", _set(category={"text": "x"}), "reject", "Observation.category"),
    ("null in category", _set(category=[None]), "reject", "Observation.category"),
    ("reference not a string", _set(subject={"reference": 5}), "reject",
     "Observation.subject.reference"),
    ("id with underscore", _set(id="a_b"), "reject", "Observation.id"),
    ("extension without url", _set(extension=[{"valueString": "a"}]), "reject",
     "Observation.extension[0].url"),
    ("integer over 32 bits", lambda d: (d.pop("valueQuantity"), d.update(valueInteger=2**31)),
     "reject", "Observation.valueInteger"),
    ("component without code", _set(component=[{"valueQuantity": {"value": 1}}]), "reject",
     "Observation.component[0].code"),
    # fhir.resources accepts these; so must the fast path
    ("obs-6: dataAbsentReason with a value", _set(dataAbsentReason={"text": "x"}), "accept", ""),
    ("obs-7: component code = code", lambda d: d.update(component=[{"code": d["code"]}]), "accept", ""),
    ("status outside the value set (a domain rule)", _set(status="banana"), "accept", ""),
    ("empty list", _set(category=[]), "accept", ""),
    ("uri with a space", _coding(system="a b"), "accept", ""),
    ("leap second", _set(effectiveDateTime="2016-12-31T23:59:60Z"), "accept", ""),
    ("partial date", _set(effectiveDateTime="2026-02"), "accept", ""),
    ("narrative", _set(text={"status": "generated", "div": "<div/>"}), "accept", ""),
    # outside what the fast path models: fhir.resources decides
    ("decimal as a string", _value("72.5"), "defer", "Observation.valueQuantity.value"),
    ("primitive extension", _set(_status={"extension": [{"url": "u", "valueString": "x"}]}),
     "defer", "Observation._status"),
    ("null", _set(subject=None), "defer", "Observation.subject"),
    ("contained", _set(contained=[]), "defer", "Observation.contained"),
    ("effectiveTiming", lambda d: (d.pop("effectiveDateTime"), d.update(effectiveTiming={})),
     "defer", "Observation.effectiveTiming"),
]  # fmt: skip


@pytest.mark.parametrize("what,change,verdict,expression", CASES, ids=[c[0] for c in CASES])
def test_fixed_cases(
    what: str, change: Callable[[dict[str, Any]], object], verdict: str, expression: str
) -> None:
    doc = _base()
    change(doc)
    fast = check_observation(doc)
    assert (fast.verdict, fast.expression) == (verdict, expression), fast
    assert_same_verdict(doc)


def test_refusals_keep_the_fhir_resources_outcome() -> None:
    """A fast-path refusal is re-checked by fhir.resources: the OperationOutcome is unchanged."""
    doc = _base()
    doc["code"]["coding"][0]["code"] = "a  b"
    with pytest.raises(FhirError) as exc:
        validate_resource(doc)
    issue = exc.value.issues[0]
    assert exc.value.status == 422
    assert issue.expression == ("Observation.code.coding[0].code",)
    assert issue.diagnostics.startswith("Observation.code.coding[0].code: String should match")


def test_whitespace_classes_match_pydantic() -> None:
    """pydantic checks ``code``/``string`` patterns with Rust regex, whose ``\\s`` differs from
    Python's (U+001C..U+001F): compare the code points that could matter with pydantic itself."""
    code, string = TypeAdapter(CodeType), TypeAdapter(StringType)

    def ok(check: Callable[[Any], Any], value: str, exc: type[Exception]) -> bool:
        try:
            check(value)
        except exc:
            return False
        return True

    for cp in range(sys.maxunicode + 1):
        c = chr(cp)
        if 0xD800 <= cp <= 0xDFFF or (
            cp > 0x3100
            and not c.isspace()
            and unicodedata.category(c) not in ("Zs", "Zl", "Zp", "Cc", "Cf")
        ):
            continue
        for value in (c, f"a{c}b", c + c):
            assert ok(code.validate_python, value, ValidationError) == ok(
                fast_observation._code, value, fast_observation._Invalid
            ), hex(cp)
            assert ok(string.validate_python, value, ValidationError) == ok(
                fast_observation._string, value, fast_observation._Invalid
            ), hex(cp)


def _describe(check: Any) -> tuple[str, Any]:
    if isinstance(check, partial) and check.func is fast_observation._list:
        return "list", _describe(check.args[0])
    if isinstance(check, partial) and check.func is fast_observation._object:
        return "element", check.args[0].name
    return "primitive", check


def test_field_types_match_the_models() -> None:
    """Every element the fast path handles has, in fhir.resources, the type it is checked as."""
    kinds = {
        fast_observation._string: ("String()",),
        fast_observation._code: ("Code()",),
        fast_observation._id: ("Id()",),
        fast_observation._decimal: ("Decimal()",),
        fast_observation._integer: ("Integer(",),
        fast_observation._datetime: ("DateTime()",),
        fast_observation._instant: ("Instant()",),
        fast_observation._boolean: ("bool",),
        fast_observation._any_text: ("Uri()", "Canonical()", "Markdown()", "Xhtml object"),
    }
    backbone = {"ObservationComponent", "ObservationReferenceRange"}
    checked = 0
    for name, spec in fast_observation._specs().items():
        model = (
            getattr(sys.modules["fhir.resources.R4B.observation"], name)
            if name in backbone
            else get_fhir_model_class(name)
        )
        for element, check in spec.fields.items():
            if element == "resourceType":
                continue
            annotation = str(model.model_fields[element].annotation)
            shape, inner = _describe(check)
            if shape == "list":
                assert "List" in annotation, (name, element, annotation)
                shape, inner = inner
            if shape == "element":
                assert f"{inner}Type" in annotation, (name, element, annotation)
            else:
                assert any(k in annotation for k in kinds[inner]), (name, element, annotation)
            checked += 1
    assert checked > 100


def _observations(node: Any) -> list[dict[str, Any]]:
    found = []
    if isinstance(node, dict):
        if node.get("resourceType") == "Observation":
            found.append(node)
        for v in node.values():
            found += _observations(v)
    elif isinstance(node, list):
        for v in node:
            found += _observations(v)
    return found


def test_conformance_observations_same_verdict() -> None:
    """Every Observation in the shared conformance examples (Bundles included)."""
    seen = accepted = 0
    for path in sorted((CONFORMANCE / "fhir").rglob("*.json")):
        for obs in _observations(json.loads(path.read_text(encoding="utf-8"))):
            seen += 1
            verdict = assert_same_verdict(obs)
            accepted += verdict == "accept"
            assert verdict == reference_verdict(obs)[0], f"{path.name}: {obs.get('id')}"
    assert seen >= 20 and accepted == seen
