"""R4's vital-signs invariants vs-2 and vs-3 at the API: what they refuse (a vital sign with no
value, whatever its status), what they let through, and that the OperationOutcome's
``expression`` names exactly the element that is missing."""

from __future__ import annotations

from typing import Any

import pytest

VITAL_SIGNS = {
    "coding": [
        {
            "system": "http://terminology.hl7.org/CodeSystem/observation-category",
            "code": "vital-signs",
        }
    ]
}
DAR = "http://terminology.hl7.org/CodeSystem/data-absent-reason"


def _patient(client) -> str:  # type: ignore[no-untyped-def]
    r = client.post("/fhir/Patient", json={"resourceType": "Patient", "name": [{"family": "Vs"}]})
    assert r.status_code == 201, r.text
    return str(r.json()["id"])


def _heart_rate(pid: str, **extra: Any) -> dict[str, Any]:
    return {
        "resourceType": "Observation",
        "status": "registered",
        "category": [VITAL_SIGNS],
        "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4"}]},
        "subject": {"reference": f"Patient/{pid}"},
        "effectiveDateTime": "2026-12-06T10:00:00+01:00",
        **extra,
    }


@pytest.mark.parametrize("status", ["registered", "final", "preliminary"])
def test_a_vital_sign_without_a_value_names_the_missing_element(client, status: str) -> None:  # type: ignore[no-untyped-def]
    pid = _patient(client)
    r = client.post("/fhir/Observation", json=_heart_rate(pid, status=status))
    assert r.status_code in (400, 422), r.text
    [issue] = [i for i in r.json()["issue"] if i["diagnostics"].startswith("vs-2")]
    assert issue["expression"] == ["Observation.value[x]"]
    assert issue["code"] == "invariant" and issue["severity"] == "error"
    assert "Observation.dataAbsentReason" in issue["diagnostics"]
    assert "temp-unknown" in issue["diagnostics"]  # what a sender of a value to come writes
    # the same through $validate, and inside a transaction
    v = client.post("/fhir/Observation/$validate", json=_heart_rate(pid, status=status))
    assert any(i.get("expression") == ["Observation.value[x]"] for i in v.json()["issue"])
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {
                "resource": _heart_rate(pid, status=status),
                "request": {"method": "POST", "url": "Observation"},
            }
        ],
    }
    t = client.post("/fhir", json=bundle)
    assert t.status_code in (400, 422), t.text
    assert "Observation.value[x]" in t.text


def test_what_vs2_lets_through(client) -> None:  # type: ignore[no-untyped-def]
    pid = _patient(client)
    measured = client.post(
        "/fhir/Observation",
        json=_heart_rate(pid, status="final", valueQuantity={"value": 72, "unit": "/min"}),
    )
    assert measured.status_code == 201, measured.text
    not_vital = _heart_rate(pid)
    not_vital.pop("category")  # not claimed as a vital sign: vs-2 does not apply
    for ok in (
        # registered: the value is still to come, and said so
        _heart_rate(pid, dataAbsentReason={"coding": [{"system": DAR, "code": "temp-unknown"}]}),
        _heart_rate(pid, hasMember=[{"reference": f"Observation/{measured.json()['id']}"}]),
        not_vital,
    ):
        r = client.post("/fhir/Observation", json=ok)
        assert r.status_code == 201, (ok, r.text)


def test_a_component_without_a_value_is_named_by_its_index(client) -> None:  # type: ignore[no-untyped-def]
    pid = _patient(client)
    loinc = "http://loinc.org"
    bp = {
        **_heart_rate(pid, status="final"),
        "code": {"coding": [{"system": loinc, "code": "85354-9"}]},
        "component": [
            {
                "code": {"coding": [{"system": loinc, "code": "8480-6"}]},
                "valueQuantity": {"value": 120, "unit": "mmHg"},
            },
            {"code": {"coding": [{"system": loinc, "code": "8462-4"}]}},
        ],
    }
    r = client.post("/fhir/Observation", json=bp)
    assert r.status_code in (400, 422), r.text
    [issue] = [i for i in r.json()["issue"] if i["diagnostics"].startswith("vs-3")]
    assert issue["expression"] == ["Observation.component[1].value[x]"]
    assert "Observation.component[1].dataAbsentReason" in issue["diagnostics"]
    assert not [i for i in r.json()["issue"] if i["diagnostics"].startswith("vs-2")]
