"""The synthetic demo data set: valid FHIR, valid identifiers, deterministic, plausible."""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from fhir.resources.R4B import get_fhir_model_class

from adapters.base import LOINC, Measurement
from interop.demo import (
    DEMO_SOURCE_SYSTEM,
    Condition,
    DemoDataSet,
    generate_demo,
)
from interop.fhir.validation import validate_resource
from interop.identifiers import (
    FNR_OID,
    HERID_OID,
    HPR_OID,
    ORGNR_OID,
    birth_date,
    check_identifier,
    parse_person_id,
)

OSLO = ZoneInfo("Europe/Oslo")
END = datetime(2026, 11, 23, 12, 30, tzinfo=OSLO)
DAYS = 90

# measurement-codes.md §4a: plausibility limits (reject/quarantine outside)
PLAUSIBLE: dict[str, tuple[float, float]] = {
    "8480-6": (50, 300),
    "8462-4": (20, 200),
    "8867-4": (20, 250),
    "2708-6": (50, 100),
    "29463-7": (2, 350),
    "8310-5": (30, 43),
    "14743-9": (0.5, 40),
}
UNITS = {
    "8480-6": "mm[Hg]",
    "8462-4": "mm[Hg]",
    "8867-4": "/min",
    "2708-6": "%",
    "29463-7": "kg",
    "8310-5": "Cel",
    "14743-9": "mmol/L",
}
CODES_BY_CONDITION = {
    Condition.COPD: {"2708-6", "8867-4", "8310-5"},
    Condition.HEART_FAILURE: {"29463-7", "85354-9", "8867-4", "2708-6"},
    Condition.DIABETES: {"14743-9", "29463-7"},
    Condition.HYPERTENSION: {"85354-9", "8867-4"},
}


@pytest.fixture(scope="module")
def demo() -> DemoDataSet:
    return generate_demo(end=END, days=DAYS, seed=42)


def _values(m: Measurement) -> list[tuple[str, Decimal]]:
    if m.components:
        return [(c.code.code, c.value) for c in m.components if c.value is not None]
    assert m.value is not None
    return [(m.code.code, m.value)]


def _series(demo: DemoDataSet) -> dict[tuple[str, str], list[tuple[datetime, float]]]:
    """(fnr, code) → [(time, value)] in time order."""
    out: dict[tuple[str, str], list[tuple[datetime, float]]] = defaultdict(list)
    for m in demo.measurements:
        for code, value in _values(m):
            out[(m.patient.value, code)].append((m.effective, float(value)))
    return out


# ---- the address book ----------------------------------------------------------------------


def test_resource_counts(demo: DemoDataSet) -> None:
    counts = Counter(r["resourceType"] for r in demo.resources)
    assert counts["Patient"] == 50 == len(demo.patients)
    assert counts["Practitioner"] == counts["PractitionerRole"] == 8
    orgs = {r["name"]: r for r in demo.of_type("Organization")}
    assert sum(name.endswith("kommune") for name in orgs) == 1
    centre = orgs["Oppfølgingssenteret"]
    municipality = next(o for n, o in orgs.items() if n.endswith("kommune"))
    assert centre["partOf"]["reference"] == f"Organization/{municipality['id']}"
    practices = {r["organization"]["reference"] for r in demo.of_type("PractitionerRole")}
    assert len(practices) == 4
    assert Counter(p.condition for p in demo.patients) == {
        c: 50 // 4 + (c in (Condition.COPD, Condition.HEART_FAILURE)) for c in Condition
    }


def test_every_resource_is_valid_r4(demo: DemoDataSet) -> None:
    for resource in demo.resources:
        get_fhir_model_class(resource["resourceType"]).model_validate(resource)
        validate_resource(resource)  # the store's own edge validation (identifiers included)


def test_identifiers_are_valid_and_unique(demo: DemoDataSet) -> None:
    seen: Counter[tuple[str, str]] = Counter()
    for resource in demo.resources:
        for ident in resource.get("identifier", []):
            assert check_identifier(ident["system"], ident["value"]) is None, ident
            seen[(ident["system"], ident["value"])] += 1
    assert max(seen.values()) == 1
    systems = {s for s, _ in seen}
    assert {FNR_OID, HERID_OID, HPR_OID, ORGNR_OID} <= systems
    for org in demo.of_type("Organization"):
        assert {i["system"] for i in org["identifier"]} >= {HERID_OID, ORGNR_OID}
    for practitioner in demo.of_type("Practitioner"):
        assert [i["system"] for i in practitioner["identifier"]] == [HPR_OID]


def test_patients_carry_synthetic_fnr_matching_birth_date(demo: DemoDataSet) -> None:
    for patient in demo.of_type("Patient"):
        (ident,) = patient["identifier"]
        pid = parse_person_id(ident["value"], synthetic=True)
        assert pid.synthetic  # never a number that could belong to a real person
        assert check_identifier(FNR_OID, ident["value"], allow_synthetic=False) is not None
        assert birth_date(ident["value"]) == date.fromisoformat(patient["birthDate"])
        age = (END.date() - date.fromisoformat(patient["birthDate"])).days / 365.25
        assert 39 <= age <= 97
        assert patient["address"][0]["district"].endswith("kommune")


def test_references_resolve_to_earlier_resources(demo: DemoDataSet) -> None:
    seen: set[str] = set()

    def refs(node: Any) -> list[str]:
        if isinstance(node, dict):
            found = [node["reference"]] if isinstance(node.get("reference"), str) else []
            return found + [r for v in node.values() for r in refs(v)]
        if isinstance(node, list):
            return [r for v in node for r in refs(v)]
        return []

    for resource in demo.resources:
        for ref in refs(resource):
            assert ref in seen, f"{resource['resourceType']}/{resource['id']} → {ref}"
        seen.add(f"{resource['resourceType']}/{resource['id']}")
    roles = {f"PractitionerRole/{r['id']}" for r in demo.of_type("PractitionerRole")}
    for patient in demo.of_type("Patient"):
        assert patient["generalPractitioner"][0]["reference"] in roles
        assert patient["managingOrganization"]["display"] == "Oppfølgingssenteret"


def test_gp_practice_endpoints(demo: DemoDataSet) -> None:
    endpoints = {f"Endpoint/{e['id']}": e for e in demo.of_type("Endpoint")}
    orgs = {f"Organization/{o['id']}": o for o in demo.of_type("Organization")}
    for role in demo.of_type("PractitionerRole"):
        endpoint = endpoints[role["endpoint"][0]["reference"]]
        practice = orgs[endpoint["managingOrganization"]["reference"]]
        herid = next(i["value"] for i in practice["identifier"] if i["system"] == HERID_OID)
        assert endpoint["address"] == f"file:///tmp/dho-interop/gp-{herid}"
        assert endpoint["connectionType"]["code"] == "file-drop"
        assert endpoint["payloadType"][0]["text"] == "PLO/Dialogmelding"


# ---- the measurements ----------------------------------------------------------------------


def test_measurement_shape(demo: DemoDataSet) -> None:
    fnrs = {p.fnr for p in demo.patients}
    first = END.date() - timedelta(days=DAYS - 1)
    ids = set()
    for m in demo.measurements:
        assert m.effective.tzinfo == OSLO
        assert first <= m.effective.date() and m.effective <= END
        assert m.patient.system == FNR_OID and m.patient.value in fnrs
        assert m.code.system == LOINC
        assert m.device is not None and m.device.identifier_value
        assert m.source_id is not None and m.source_id[0] == DEMO_SOURCE_SYSTEM
        ids.add(m.source_id[1])
        if m.code.code == "85354-9":
            assert m.value is None and m.unit is None
            assert [c.code.code for c in m.components] == ["8480-6", "8462-4"]
            sys_, dia = (c.value for c in m.components)
            assert sys_ is not None and dia is not None and sys_ > dia
        for code, _ in _values(m):
            unit = m.unit if not m.components else m.components[0].unit
            assert unit == UNITS[code]
    assert len(ids) == len(demo.measurements)  # stable ids are unique
    assert [m.effective for m in demo.measurements] == sorted(
        m.effective for m in demo.measurements
    )


def test_codes_per_condition(demo: DemoDataSet) -> None:
    by_fnr = {p.fnr: p.condition for p in demo.patients}
    codes: dict[Condition, set[str]] = defaultdict(set)
    for m in demo.measurements:
        codes[by_fnr[m.patient.value]].add(m.code.code)
    assert codes == CODES_BY_CONDITION


def test_volume_sessions_and_missed_days(demo: DemoDataSet) -> None:
    assert 15_000 <= len(demo.measurements) <= 30_000
    days_measured: dict[str, set[date]] = defaultdict(set)
    hours: Counter[str] = Counter()
    for m in demo.measurements:
        days_measured[m.patient.value].add(m.effective.date())
        hours["morning" if m.effective.hour < 12 else "evening"] += 1
    assert hours["morning"] > hours["evening"] > 0.5 * hours["morning"]
    counts = sorted(len(d) for d in days_measured.values())
    assert len(counts) == 50
    assert counts[-1] <= DAYS and counts[0] < DAYS  # some missed days
    assert sum(counts) / len(counts) > 0.8 * DAYS


def test_values_within_plausibility_limits(demo: DemoDataSet) -> None:
    for m in demo.measurements:
        for code, value in _values(m):
            low, high = PLAUSIBLE[code]
            assert low <= value <= high, (code, value)


def test_deteriorations_reach_yellow_and_red(demo: DemoDataSet) -> None:
    values: dict[str, list[float]] = defaultdict(list)
    for m in demo.measurements:
        for code, value in _values(m):
            values[code].append(float(value))
    # usual default plan thresholds (NEWS2-like red limits); each must be crossed sometimes
    assert sum(v < 88 for v in values["2708-6"]) >= 5  # SpO2 red
    assert sum(v >= 180 for v in values["8480-6"]) >= 3  # systolic red
    assert sum(v >= 15 for v in values["14743-9"]) >= 5  # hyperglycaemia
    assert sum(v < 4 for v in values["14743-9"]) >= 1  # hypoglycaemia
    assert sum(v >= 38 for v in values["8310-5"]) >= 3  # fever
    assert sum(v >= 111 for v in values["8867-4"]) >= 3  # tachycardia
    # and most readings are unremarkable
    assert sorted(values["2708-6"])[len(values["2708-6"]) // 2] >= 92


def test_heart_failure_weight_gain_episodes(demo: DemoDataSet) -> None:
    series = _series(demo)
    gains = 0
    for p in demo.patients:
        if p.condition is not Condition.HEART_FAILURE:
            continue
        weights = series[(p.fnr, "29463-7")]
        for i, (t, w) in enumerate(weights):
            earlier = [w0 for t0, w0 in weights[:i] if t - t0 <= timedelta(days=3)]
            if earlier and w - min(earlier) >= 2.0:
                gains += 1
                break
    assert gains >= 3  # patients with > 2 kg in 3 days, the classic HF warning


def test_baselines_differ_between_patients(demo: DemoDataSet) -> None:
    series = _series(demo)
    medians = sorted(
        sorted(v for _, v in series[(p.fnr, "8480-6")])[len(series[(p.fnr, "8480-6")]) // 2]
        for p in demo.patients
        if p.condition is Condition.HYPERTENSION
    )
    assert medians[-1] - medians[0] >= 10


def test_deterministic_for_a_seed() -> None:
    a = generate_demo(patients=6, days=14, end=END, seed=7)
    b = generate_demo(patients=6, days=14, end=END.astimezone(UTC), seed=7)
    c = generate_demo(patients=6, days=14, end=END, seed=8)
    assert a.resources == b.resources and a.measurements == b.measurements
    assert a.resources != c.resources and a.measurements != c.measurements
    assert all(re.fullmatch(r"[0-9a-f-]{36}", r["id"]) for r in a.resources)


def test_end_must_be_aware() -> None:
    with pytest.raises(ValueError):
        generate_demo(end=datetime(2026, 11, 23, 12, 0))
