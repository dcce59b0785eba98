"""Observation searches by subject/patient in every form the API accepts.

An Observation's Patient subject is indexed once (observation_index.patient_id); these tests pin
what each search form finds, so that the index layout can change without changing answers.
"""

from __future__ import annotations

from typing import Any

import pytest

FNR_SYSTEM = "urn:oid:2.16.578.1.12.4.1.4.1"
LOINC = "http://loinc.org"
FNR_A, FNR_B = "13031353453", "02028099471"


def _post(client, resource: dict[str, Any]) -> str:  # type: ignore[no-untyped-def]
    r = client.post(f"/fhir/{resource['resourceType']}", json=resource)
    assert r.status_code == 201, r.text
    return str(r.json()["id"])


def _obs(subject: dict[str, Any], when: str, **extra: Any) -> dict[str, Any]:
    return {
        "resourceType": "Observation",
        "status": "final",
        "code": {"coding": [{"system": LOINC, "code": "8867-4"}]},
        "subject": subject,
        "effectiveDateTime": when,
        "valueQuantity": {
            "value": 70,
            "unit": "/min",
            "system": "http://unitsofmeasure.org",
            "code": "/min",
        },
        **extra,
    }


def ids(client, path: str, params: list[tuple[str, str]] | dict[str, str]) -> list[str]:  # type: ignore[no-untyped-def]
    r = client.get(path, params=params)
    assert r.status_code == 200, r.text
    return [
        e["resource"]["id"]
        for e in r.json().get("entry", [])
        if e.get("search", {}).get("mode") == "match"
    ]


def included(client, path: str, params: dict[str, str]) -> set[str]:  # type: ignore[no-untyped-def]
    r = client.get(path, params=params)
    assert r.status_code == 200, r.text
    return {
        f"{e['resource']['resourceType']}/{e['resource']['id']}"
        for e in r.json().get("entry", [])
        if e.get("search", {}).get("mode") == "include"
    }


@pytest.fixture
def data(client):  # type: ignore[no-untyped-def]
    a = _post(
        client,
        {"resourceType": "Patient", "identifier": [{"system": FNR_SYSTEM, "value": FNR_A}]},
    )
    b = _post(
        client,
        {"resourceType": "Patient", "identifier": [{"system": FNR_SYSTEM, "value": FNR_B}]},
    )
    dev = _post(
        client,
        {
            "resourceType": "Device",
            "identifier": [{"system": "urn:test:device", "value": "d-1"}],
            "patient": {"reference": f"Patient/{a}"},
        },
    )
    obs = {
        "a1": _post(
            client,
            _obs(
                {"reference": f"Patient/{a}"},
                "2026-01-05T08:00:00+01:00",
                device={"reference": f"Device/{dev}"},
            ),
        ),
        "a2": _post(client, _obs({"reference": f"Patient/{a}"}, "2026-01-06T08:00:00+01:00")),
        "b1": _post(client, _obs({"reference": f"Patient/{b}"}, "2026-01-07T08:00:00+01:00")),
        "dev": _post(client, _obs({"reference": f"Device/{dev}"}, "2026-01-08T08:00:00+01:00")),
    }
    return a, b, dev, obs


def test_patient_and_subject_forms(client, data) -> None:  # type: ignore[no-untyped-def]
    a, b, _dev, o = data
    both_a = {o["a1"], o["a2"]}
    for params in (
        {"patient": a},
        {"patient": f"Patient/{a}"},
        {"subject": a},
        {"subject": f"Patient/{a}"},
        {"subject:identifier": f"{FNR_SYSTEM}|{FNR_A}"},
        {"patient:identifier": f"{FNR_SYSTEM}|{FNR_A}"},
        {"patient.identifier": f"{FNR_SYSTEM}|{FNR_A}"},
        {"subject.identifier": f"{FNR_SYSTEM}|{FNR_A}"},
        {"patient.identifier": FNR_A},
    ):
        assert set(ids(client, "/fhir/Observation", params)) == both_a, params
    assert set(ids(client, "/fhir/Observation", {"patient": f"{a},{b}"})) == both_a | {o["b1"]}
    assert set(ids(client, "/fhir/Observation", {"subject": f"Patient/{b}"})) == {o["b1"]}
    # both parameters together narrow as AND
    assert ids(client, "/fhir/Observation", [("patient", a), ("subject", b)]) == []
    assert set(ids(client, "/fhir/Observation", [("patient", a), ("subject", a)])) == both_a
    assert ids(client, "/fhir/Observation", {"patient": "Patient/unknown"}) == []


def test_device_reference_and_includes(client, data) -> None:  # type: ignore[no-untyped-def]
    a, _b, dev, o = data
    assert ids(client, "/fhir/Observation", {"device": f"Device/{dev}"}) == [o["a1"]]
    assert included(
        client, "/fhir/Observation", {"patient": a, "_include": "Observation:subject"}
    ) == {f"Patient/{a}"}
    assert included(
        client, "/fhir/Observation", {"patient": a, "_include": "Observation:patient"}
    ) == {f"Patient/{a}"}
    assert included(
        client, "/fhir/Observation", {"_id": o["dev"], "_include": "Observation:subject"}
    ) == {f"Device/{dev}"}
    assert (
        included(client, "/fhir/Observation", {"_id": o["dev"], "_include": "Observation:patient"})
        == set()
    )
    assert included(client, "/fhir/Observation", {"_id": o["a1"], "_include": "Observation:*"}) == {
        f"Patient/{a}",
        f"Device/{dev}",
    }


def test_non_patient_subject(client, data) -> None:  # type: ignore[no-untyped-def]
    """An Observation about a Device is found by subject (not by patient)."""
    _a, _b, dev, o = data
    assert ids(client, "/fhir/Observation", {"subject": f"Device/{dev}"}) == [o["dev"]]
    assert ids(client, "/fhir/Observation", {"patient": f"Device/{dev}"}) == []
    # in the patient-less Observation list (no code filter) it counts once
    everything = ids(client, "/fhir/Observation", {"_count": "50"})
    assert sorted(everything) == sorted(o.values())


def test_other_types_keep_patient_and_subject(client, data) -> None:  # type: ignore[no-untyped-def]
    """Flag/Task/CarePlan keep both reference rows (access control and triage read them)."""
    a, _b, _dev, _o = data
    flag = _post(
        client,
        {
            "resourceType": "Flag",
            "status": "active",
            "code": {"text": "test"},
            "subject": {"reference": f"Patient/{a}"},
        },
    )
    assert ids(client, "/fhir/Flag", {"patient": a}) == [flag]
    assert ids(client, "/fhir/Flag", {"subject": f"Patient/{a}"}) == [flag]
