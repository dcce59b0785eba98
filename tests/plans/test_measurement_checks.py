"""Plausibility and time checks on every write of a measurement: a client's Observation
through ``/fhir`` (create, update, transaction and batch Bundles) is refused with a 422 naming
the element, as the ingest mapping refuses the item."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from interop.fhir.dates import format_instant
from tests.address_book import patient_with_gp
from tests.plans.test_triage_every_path import FNR, LOINC, _bundle, _matches, spo2


def heart_rate(pid: str, value: float, unit: str = "/min") -> dict[str, Any]:
    return {
        "resourceType": "Observation",
        "status": "final",
        "code": {"coding": [{"system": LOINC, "code": "8867-4"}]},
        "subject": {"reference": f"Patient/{pid}"},
        "effectiveDateTime": format_instant(datetime.now(UTC) - timedelta(minutes=3)),
        "valueQuantity": {
            "value": value,
            "unit": unit,
            "system": "http://unitsofmeasure.org",
            "code": unit,
        },
    }


def _issue(r: Any) -> dict[str, Any]:
    assert r.status_code == 422, r.text
    body = r.json()
    assert body["resourceType"] == "OperationOutcome"
    return body["issue"][0]  # type: ignore[no-any-return]


def test_an_implausible_heart_rate_is_refused_naming_the_element(client) -> None:  # type: ignore[no-untyped-def]
    pid = patient_with_gp(client, FNR)
    issue = _issue(client.post("/fhir/Observation", json=heart_rate(pid, 1e308)))
    assert issue["expression"] == ["Observation.valueQuantity.value"]
    assert "plausible" in issue["diagnostics"] and "8867-4" in issue["diagnostics"]
    put = client.put("/fhir/Observation/hr-1", json={**heart_rate(pid, 0), "id": "hr-1"})
    assert _issue(put)["expression"] == ["Observation.valueQuantity.value"]
    assert _matches(client, "/fhir/Observation", patient=pid) == []
    assert _matches(client, "/fhir/Task", patient=pid) == []
    # a plausible one is stored
    assert client.post("/fhir/Observation", json=heart_rate(pid, 72)).status_code == 201


def test_a_component_out_of_range_is_named(client) -> None:  # type: ignore[no-untyped-def]
    pid = patient_with_gp(client, FNR)

    def part(code: str, value: float) -> dict[str, Any]:
        return {
            "code": {"coding": [{"system": LOINC, "code": code}]},
            "valueQuantity": {
                "value": value,
                "unit": "mmHg",
                "system": "http://unitsofmeasure.org",
                "code": "mm[Hg]",
            },
        }

    bp = {
        **heart_rate(pid, 0),
        "code": {"coding": [{"system": LOINC, "code": "85354-9"}]},
        "component": [part("8480-6", 1200), part("8462-4", 80)],
    }
    del bp["valueQuantity"]
    issue = _issue(client.post("/fhir/Observation", json=bp))
    assert issue["expression"] == ["Observation.component[0].valueQuantity.value"]


def test_a_converted_unit_is_checked_in_the_concepts_unit(client) -> None:  # type: ignore[no-untyped-def]
    pid = patient_with_gp(client, FNR)
    weight = {
        **heart_rate(pid, 0),
        "code": {"coding": [{"system": LOINC, "code": "29463-7"}]},
        "valueQuantity": {
            "value": 400000,
            "unit": "g",
            "system": "http://unitsofmeasure.org",
            "code": "g",
        },
    }
    assert "plausible" in _issue(client.post("/fhir/Observation", json=weight))["diagnostics"]
    weight["valueQuantity"] = {**weight["valueQuantity"], "value": 80000}
    assert client.post("/fhir/Observation", json=weight).status_code == 201


def test_bundles_refuse_the_implausible_entry(client) -> None:  # type: ignore[no-untyped-def]
    pid = patient_with_gp(client, FNR)
    bad, good = heart_rate(pid, 1e308), spo2(pid, 97)
    r = client.post("/fhir", json=_bundle("transaction", good, bad))
    assert r.status_code == 422, r.text
    assert "valueQuantity.value" in r.text
    assert _matches(client, "/fhir/Observation", patient=pid) == []
    r = client.post("/fhir", json=_bundle("batch", good, bad))
    assert r.status_code == 200, r.text
    statuses = [e["response"]["status"] for e in r.json()["entry"]]
    assert statuses[0].startswith("201") and statuses[1].startswith("422")
    outcome = r.json()["entry"][1]["response"]["outcome"]
    assert outcome["issue"][0]["expression"] == ["Observation.valueQuantity.value"]


def test_a_reading_in_the_future_is_refused(client) -> None:  # type: ignore[no-untyped-def]
    pid = patient_with_gp(client, FNR)
    future = format_instant(datetime.now(UTC) + timedelta(hours=2))
    issue = _issue(client.post("/fhir/Observation", json=spo2(pid, 97, when=future)))
    assert issue["expression"] == ["Observation.effectiveDateTime"]
    assert "future" in issue["diagnostics"]
    # within the clock skew it is stored
    soon = format_instant(datetime.now(UTC) + timedelta(seconds=60))
    assert client.post("/fhir/Observation", json=spo2(pid, 97, when=soon)).status_code == 201
