"""Every R4 resource type: create/read/vread/history/search with the official parameters, the
Patient compartment as data, and whole Synthea patients as one transaction."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from interop.fhir.validation import SUPPORTED_TYPES
from tests.api.test_fhir_crud import patient
from tests.conftest import SHARED

SYNTHEA = SHARED / "corpus" / "fhir" / "synthea"


def _create(client, resource: dict[str, Any]) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    r = client.post(f"/fhir/{resource['resourceType']}", json=resource)
    assert r.status_code == 201, r.text
    return dict(r.json())


def condition(pid: str, code: str = "38341003", onset: str = "2024-02-01") -> dict[str, Any]:
    return {
        "resourceType": "Condition",
        "clinicalStatus": {
            "coding": [
                {
                    "system": "http://terminology.hl7.org/CodeSystem/condition-clinical",
                    "code": "active",
                }
            ]
        },
        "code": {"coding": [{"system": "http://snomed.info/sct", "code": code}]},
        "subject": {"reference": f"Patient/{pid}"},
        "onsetDateTime": onset,
    }


def test_the_types_are_every_r4_type() -> None:
    for t in (
        "Condition",
        "Encounter",
        "DiagnosticReport",
        "MedicationStatement",
        "Questionnaire",
        "DocumentReference",
        "DetectedIssue",
        "Composition",
        "ServiceRequest",
        "Claim",
        "ExplanationOfBenefit",
        "Immunization",
        "Procedure",
    ):
        assert t in SUPPORTED_TYPES
    assert "Parameters" not in SUPPORTED_TYPES and "OperationOutcome" not in SUPPORTED_TYPES


def test_condition_crud_and_search(client) -> None:  # type: ignore[no-untyped-def]
    p = _create(client, patient())
    other = _create(client, patient("02028099471", family="Hansen"))
    c = _create(client, condition(p["id"]))
    _create(client, condition(other["id"], code="44054006", onset="2020-05-01"))
    assert client.get(f"/fhir/Condition/{c['id']}").json()["id"] == c["id"]
    updated = {**c, "note": [{"text": "hypertensjon"}]}
    assert client.put(f"/fhir/Condition/{c['id']}", json=updated).status_code == 200
    assert client.get(f"/fhir/Condition/{c['id']}/_history/1").status_code == 200
    assert client.get(f"/fhir/Condition/{c['id']}/_history").json()["total"] == 2

    def ids(query: str) -> set[str]:
        r = client.get(f"/fhir/Condition?{query}")
        assert r.status_code == 200, r.text
        return {e["resource"]["id"] for e in r.json().get("entry", [])}

    assert ids(f"patient={p['id']}") == {c["id"]}
    assert ids(f"subject=Patient/{p['id']}") == {c["id"]}
    assert ids("code=http://snomed.info/sct|38341003") == {c["id"]}
    assert ids("clinical-status=active") == {c["id"], *ids("code=44054006")}
    assert ids("onset-date=ge2023-01-01") == {c["id"]}
    assert ids("code=44054006&onset-date=lt2021") != set()
    r = client.get("/fhir/Condition?shoe-size=3")
    assert r.status_code == 400 and "shoe-size" in r.text


def test_capability_statement_lists_the_registered_types(client) -> None:  # type: ignore[no-untyped-def]
    cs = client.get("/fhir/metadata").json()
    types = {r["type"]: r for r in cs["rest"][0]["resource"]}
    assert set(types) == set(SUPPORTED_TYPES)
    cond = {p["name"]: p["type"] for p in types["Condition"]["searchParam"]}
    assert cond["onset-date"] == "date" and cond["patient"] == "reference"
    # a parameter type the engine does not search is not claimed
    assert "onset-age" not in cond


@pytest.mark.parametrize("path", sorted(SYNTHEA.glob("*.json"))[:2], ids=lambda p: p.name[:12])
def test_a_synthea_patient_is_one_transaction(client, path: Path) -> None:  # type: ignore[no-untyped-def]
    bundle = json.loads(path.read_text(encoding="utf-8"))
    r = client.post("/fhir", json=bundle)
    assert r.status_code == 200, r.text[:2000]
    out = r.json()
    assert out["type"] == "transaction-response"
    assert len(out["entry"]) == len(bundle["entry"])
    assert all(e["response"]["status"].startswith("201") for e in out["entry"])
    pid = next(
        e["response"]["location"].split("/")[1]
        for e in out["entry"]
        if e["response"]["location"].startswith("Patient/")
    )
    r = client.get(f"/fhir/Encounter?patient={pid}&_count=100")
    want = sum(1 for e in bundle["entry"] if e["resource"]["resourceType"] == "Encounter")
    assert r.json()["total"] == want


def test_a_gp_sees_its_own_patients_conditions_only(client) -> None:  # type: ignore[no-untyped-def]
    from tests.access.test_roles import _ids, _world

    a, b, _oa, _oa_out, _ob, gp = _world(client)
    ca = _create(client, condition(a))
    cb = _create(client, condition(b))
    assert client.get(f"/fhir/Condition/{ca['id']}", headers=gp).status_code == 200
    assert client.get(f"/fhir/Condition/{cb['id']}", headers=gp).status_code == 403
    assert _ids(client.get("/fhir/Condition", headers=gp)) == [ca["id"]]
    assert _ids(client.get(f"/fhir/Condition?patient={b}", headers=gp)) == []
    # a Condition that points at another patient only as its asserter is still its subject's
    moved = {**condition(a), "asserter": {"reference": f"Patient/{b}"}}
    cm = _create(client, moved)
    assert client.get(f"/fhir/Condition/{cm['id']}", headers=gp).status_code == 200
    # a Basic without a patient reference is no one's, and for admins only
    basic = _create(client, {"resourceType": "Basic", "code": {"text": "x"}})
    assert client.get(f"/fhir/Basic/{basic['id']}", headers=gp).status_code == 403
    assert _ids(client.get("/fhir/Basic", headers=gp)) == []
    # a type with no Patient compartment at all is not searchable but for admins
    assert client.get("/fhir/Questionnaire", headers=gp).status_code == 403
