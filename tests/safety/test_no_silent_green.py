"""No silent green: defaults for home monitoring, labelled wherever used, and a code nobody
has thresholds for is *not assessed* (never green) with one Task per patient and code.

Scenarios: 154/95 mmHg without a plan is yellow, 196 mmHg systolic red, SpO2 89 % green for
a KOLS patient and red for others, weight without a plan threshold not assessed.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from random import Random
from typing import Any

import pytest

from adapters.base import (
    FNR_OID,
    LOINC,
    MDC,
    AdapterResult,
    Code,
    Component,
    IngestMeta,
    Measurement,
    PatientRef,
)
from interop.care.default_thresholds import defaults_for
from interop.care.triage import V3, ZONE_SYSTEM
from interop.identifiers import generate_fnr
from interop.ingest.pipeline import IngestPipeline
from tests.address_book import patient_with_gp
from tests.conftest import SHARED

_rng = Random(3)
P1, P2 = (generate_fnr(date(1940 + i, 5, 6), rng=_rng, synthetic=True) for i in range(2))
NOW = datetime.now(UTC) - timedelta(hours=1)


def _patient(client, fnr: str) -> str:  # type: ignore[no-untyped-def]
    """The patient, with the GP who approves the plans (HPR 9144889) as fastlege."""
    return patient_with_gp(client, fnr)


def _ingest(services, *ms: Measurement) -> list[str]:  # type: ignore[no-untyped-def]
    report = IngestPipeline(services).ingest_result(
        "test", AdapterResult(measurements=list(ms)), IngestMeta(source="t")
    )
    assert report.rejected == 0, report.diagnostics
    return report.resources


def _bp(fnr: str, sys_: int, dia: int, minutes: int = 0) -> Measurement:
    return Measurement(
        Code(MDC, "150020"),
        None,
        None,
        NOW + timedelta(minutes=minutes),
        PatientRef(FNR_OID, fnr),
        "x",
        components=(
            Component(Code(MDC, "150021"), Decimal(sys_), "mm[Hg]"),
            Component(Code(MDC, "150022"), Decimal(dia), "mm[Hg]"),
        ),
    )


def _single(
    fnr: str, loinc: str, value: str, unit: str, minutes: int = 0, when: datetime | None = None
) -> Measurement:
    return Measurement(
        Code(LOINC, loinc),
        Decimal(value),
        unit,
        when or NOW + timedelta(minutes=minutes),
        PatientRef(FNR_OID, fnr),
        "x",
    )


def _zone(node: dict[str, Any]) -> str | None:
    for i in node.get("interpretation", []):
        for c in i.get("coding", []):
            if c.get("system") == ZONE_SYSTEM:
                return str(c["code"])
    return None


def _v3(node: dict[str, Any]) -> list[str]:
    return [
        c["code"]
        for i in node.get("interpretation", [])
        for c in i.get("coding", [])
        if c.get("system") == V3
    ]


def _found(client, rtype: str, pid: str) -> list[dict[str, Any]]:  # type: ignore[no-untyped-def]
    b = client.get(f"/fhir/{rtype}", params={"patient": pid, "_count": 100}).json()
    return [e["resource"] for e in b.get("entry", []) if e["search"]["mode"] == "match"]


def test_154_over_95_at_home_is_yellow_and_labelled_as_defaults(client, services) -> None:  # type: ignore[no-untyped-def]
    pid = _patient(client, P1)
    [ref] = _ingest(services, _bp(P1, 154, 95))
    obs = client.get(f"/fhir/{ref}").json()
    assert _zone(obs) == "yellow"
    assert [_zone(c) for c in obs["component"]] == ["yellow", "yellow"]
    for text in [obs["interpretation"][0]["text"]] + [
        rr["text"] for c in obs["component"] for rr in c["referenceRange"]
    ]:
        assert "standardgrenser" in text and "ESH 2023" in text, text
    [task] = _found(client, "Task", pid)
    assert "standardgrenser" in task["description"]
    [flag] = _found(client, "Flag", pid)
    assert "standardgrenser" in flag["code"]["text"]


def test_196_systolic_is_red(client, services) -> None:  # type: ignore[no-untyped-def]
    _patient(client, P1)
    [ref] = _ingest(services, _bp(P1, 196, 80))
    obs = client.get(f"/fhir/{ref}").json()
    assert _zone(obs) == "red" and _zone(obs["component"][0]) == "red"
    assert "HH" in _v3(obs)


@pytest.mark.parametrize(
    ("systolic", "diastolic", "zone"),
    [
        (134, 84, "green"),
        (135, 84, "yellow"),
        (134, 85, "yellow"),
        (179, 109, "yellow"),
        (180, 80, "red"),
        (120, 110, "red"),
        (89, 60, "red"),
    ],
)
def test_home_blood_pressure_bounds(
    client, services, systolic: int, diastolic: int, zone: str
) -> None:  # type: ignore[no-untyped-def]
    _patient(client, P1)
    [ref] = _ingest(services, _bp(P1, systolic, diastolic))
    assert _zone(client.get(f"/fhir/{ref}").json()) == zone


def test_spo2_for_a_kols_patient_and_for_others(client, services) -> None:  # type: ignore[no-untyped-def]
    kols = _patient(client, P1)
    other = _patient(client, P2)
    episode = {
        "resourceType": "EpisodeOfCare",
        "status": "active",
        "type": [{"coding": [{"system": "http://snomed.info/sct", "code": "13645005"}]}],
        "patient": {"reference": f"Patient/{kols}"},
    }
    assert client.post("/fhir/EpisodeOfCare", json=episode).status_code == 201
    [k] = _ingest(services, _single(P1, "2708-6", "89", "%"))
    [o] = _ingest(services, _single(P2, "2708-6", "89", "%"))
    k_obs, o_obs = client.get(f"/fhir/{k}").json(), client.get(f"/fhir/{o}").json()
    assert _zone(k_obs) == "green" and "kols" in k_obs["interpretation"][0]["text"]
    assert "kols" not in o_obs["interpretation"][0]["text"]
    assert _zone(o_obs) == "red"
    assert other != kols
    [k2] = _ingest(services, _single(P1, "2708-6", "84", "%", minutes=1))
    assert _zone(client.get(f"/fhir/{k2}").json()) == "red"
    [o2] = _ingest(services, _single(P2, "2708-6", "93", "%", minutes=1))
    assert _zone(client.get(f"/fhir/{o2}").json()) == "yellow"


def test_a_code_without_thresholds_is_not_assessed_with_one_task(client, services) -> None:  # type: ignore[no-untyped-def]
    p1 = _patient(client, P1)
    p2 = _patient(client, P2)
    refs = _ingest(services, *(_single(P1, "29463-7", str(80 + n), "kg", n) for n in range(3)))
    refs += _ingest(services, _single(P1, "29463-7", "90", "kg", 10))
    for ref in refs:
        obs = client.get(f"/fhir/{ref}").json()
        assert _zone(obs) == "not-assessed"
        assert _v3(obs) == []  # no N: nobody judged it normal
        assert "referenceRange" not in obs
    tasks = _found(client, "Task", p1)
    assert len(tasks) == 1
    [task] = tasks
    assert task["code"]["coding"][0]["code"] == "thresholds-missing"
    assert task["code"]["coding"][0]["display"] == "Grenseverdier mangler"
    assert task["priority"] == "routine" and task["status"] == "requested"
    assert task["input"][0]["valueCode"] == "29463-7"
    # words a nurse reads: the measurement's name, the reading and its local time; the code
    # and the Observation stay in the data
    assert task["code"]["text"] == "Grenseverdier mangler for Vekt"
    assert task["description"].startswith("Grenseverdier mangler for Vekt: ")
    assert re.search(
        r"Første måling uten vurdering: 8\d kg, målt \d\d\.\d\d\.\d{4} kl\. ", task["description"]
    )
    for words in (task["code"]["text"], task["description"]):
        assert "29463-7" not in words and "Observation/" not in words
    assert task["focus"]["reference"].startswith("Observation/")
    assert _found(client, "Flag", p1) == []
    # another code: its own Task; another patient: their own
    _ingest(services, _single(P1, "2339-0", "6.1", "mmol/L", 20))
    assert len(_found(client, "Task", p1)) == 2
    _ingest(services, _single(P2, "29463-7", "70", "kg"))
    assert len(_found(client, "Task", p2)) == 1
    # the search index knows it as not assessed, never green
    green = client.get("/fhir/Observation", params={"patient": p1, "code": "29463-7"}).json()
    assert green["total"] == 4


def test_a_plan_threshold_makes_the_code_assessed(client, services) -> None:  # type: ignore[no-untyped-def]
    _patient(client, P1)
    plan = {
        "approvedBy": {"hpr": "9144889"},
        "zones": [
            {
                "code": "29463-7",
                "unit": "kg",
                "green": {"low": 60, "high": 85},
                "yellow": {"low": 55, "high": 90},
            }
        ],
    }
    assert client.put(f"/api/v1/patients/{P1}/plan", json=plan).status_code == 201
    [ref] = _ingest(services, _single(P1, "29463-7", "80", "kg", when=datetime.now(UTC)))
    assert _zone(client.get(f"/fhir/{ref}").json()) == "green"


def test_real_vendor_blood_pressure_with_high_diastolic_is_not_green(client, services) -> None:  # type: ignore[no-untyped-def]
    """iHealth manual reading 130/95 mmHg (shimmer sample): the diastolic was never judged."""
    _patient(client, P1)
    data = (
        SHARED / "corpus" / "ingest" / "mapped-json" / "shimmer-ihealth-bp-no-heart-rate.json"
    ).read_bytes()
    meta = IngestMeta(
        source="ihealth", patient=PatientRef(FNR_OID, P1), options={"profile": "ihealth-bp"}
    )
    report = IngestPipeline(services).ingest("mapped-json", data, meta)
    assert report.created >= 1, report.diagnostics
    zones = {}
    for ref in report.resources:
        obs = client.get(f"/fhir/{ref}").json()
        if obs.get("component"):
            zones[ref] = _zone(obs)
            values = [c["valueQuantity"]["value"] for c in obs["component"]]
            assert values == [130, 95]
    assert list(zones.values()) == ["yellow"]


def test_every_default_names_its_source() -> None:
    for ranges in defaults_for().values():
        assert ranges.label
    assert defaults_for()["8480-6"].green[1] == Decimal(134)
    assert defaults_for(frozenset({"copd"}))["2708-6"].green[0] == Decimal(88)
    assert json.dumps([r.label for r in defaults_for().values()])


def test_summaries_show_the_defaults_that_judged_and_unjudged_readings(client, services) -> None:  # type: ignore[no-untyped-def]
    """The GP's summary shows the KOLS patient's SpO2 default (what triage used), and its
    page draws a reading nobody judged (weight without a plan) without failing."""
    kols = _patient(client, P1)
    episode = {
        "resourceType": "EpisodeOfCare",
        "status": "active",
        "type": [{"text": "KOLS"}],
        "patient": {"reference": f"Patient/{kols}"},
    }
    assert client.post("/fhir/EpisodeOfCare", json=episode).status_code == 201
    _ingest(services, _single(P1, "2708-6", "89", "%"), _single(P1, "29463-7", "81", "kg", 1))
    r = client.get(f"/api/v1/patients/{P1}/summary", params={"view": "followup"})
    assert r.status_code == 200, r.text
    codes = {c["code"]: c for c in r.json()["codes"]}
    assert codes["2708-6"]["ranges"]["green"] == [88.0, None]
    assert codes["29463-7"]["ranges"] is None
    page = client.get(
        f"/api/v1/patients/{P1}/summary",
        params={"view": "followup"},
        headers={"Accept": "text/html"},
    )
    assert page.status_code == 200 and "not-assessed" in page.text
