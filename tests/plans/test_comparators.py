"""A value given as a bound (``valueQuantity.comparator``) is kept as sent and judged
conservatively at the bound (``> 11`` is at least 11), and the Task says it was a bound."""

from __future__ import annotations

from typing import Any

from tests.address_book import patient_with_gp
from tests.plans.test_triage_every_path import FNR, LOINC, _matches, _recent, _without_meta

GLUCOSE_PLAN = {
    "approvedBy": {"hpr": "9144889"},
    "zones": [
        {
            "code": "14743-9",
            "unit": "mmol/L",
            "green": {"low": 4, "high": 10},
            "yellow": {"low": 3, "high": 15},
        },
    ],
}


def glucose(pid: str, value: float, comparator: str | None) -> dict[str, Any]:
    q: dict[str, Any] = {
        "value": value,
        "unit": "mmol/L",
        "system": "http://unitsofmeasure.org",
        "code": "mmol/L",
    }
    if comparator:
        q["comparator"] = comparator
    return {
        "resourceType": "Observation",
        "status": "final",
        "code": {"coding": [{"system": LOINC, "code": "14743-9"}]},
        "subject": {"reference": f"Patient/{pid}"},
        # after the plan's start (within the allowed clock skew)
        "effectiveDateTime": _recent(-1),
        "valueQuantity": q,
    }


def _zone_of(client: Any, oid: str) -> str:
    for zone in ("green", "yellow", "red", "not-assessed"):
        if any(o["id"] == oid for o in _matches(client, "/fhir/Observation", zone=zone)):
            return zone
    raise AssertionError(f"Observation/{oid} has no zone")


def test_a_bound_is_judged_at_the_bound_and_said(client) -> None:  # type: ignore[no-untyped-def]
    pid = patient_with_gp(client, FNR)
    assert client.put(f"/api/v1/patients/{FNR}/plan", json=GLUCOSE_PLAN).status_code == 201
    sent = glucose(pid, 11, ">")
    r = client.post("/fhir/Observation", json=sent)
    assert r.status_code == 201, r.text
    oid = r.json()["id"]
    assert _without_meta(client.get(f"/fhir/Observation/{oid}").json()) == sent
    assert _zone_of(client, oid) == "yellow"  # at least 11: above green (≤ 10)
    [task] = _matches(client, "/fhir/Task", patient=pid)
    assert ">11 mmol/L" in task["description"], task["description"]
    assert "grense (> 11 mmol/L)" in task["description"] and "over 11" in task["description"]


def test_a_bound_on_the_edge_of_a_zone_leaves_it(client) -> None:  # type: ignore[no-untyped-def]
    pid = patient_with_gp(client, FNR)
    client.put(f"/api/v1/patients/{FNR}/plan", json=GLUCOSE_PLAN)
    edge = client.post("/fhir/Observation", json=glucose(pid, 10, ">")).json()["id"]
    exact = client.post("/fhir/Observation", json=glucose(pid, 10, None)).json()["id"]
    at_most = client.post("/fhir/Observation", json=glucose(pid, 4, "<")).json()["id"]
    within = client.post("/fhir/Observation", json=glucose(pid, 4, ">=")).json()["id"]
    assert _zone_of(client, edge) == "yellow"  # more than 10: not green
    assert _zone_of(client, exact) == "green"  # green is inclusive
    assert _zone_of(client, at_most) == "yellow"  # under 4: below green
    assert _zone_of(client, within) == "green"
