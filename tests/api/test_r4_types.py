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
    assert cond["onset-age"] == "quantity"  # the generic quantity rows serve it
    # a generic type's composite is searched, so claimed; one whose components the index
    # cannot follow (MolecularSequence's %resource components) is not
    group = {p["name"]: p["type"] for p in types["Group"]["searchParam"]}
    assert group["characteristic-value"] == "composite"
    seq = {p["name"] for p in types["MolecularSequence"]["searchParam"]}
    assert "chromosome-variant-coordinate" not in seq


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


def _load_synthea(client, path: Path) -> tuple[dict[str, Any], str]:  # type: ignore[no-untyped-def]
    bundle = json.loads(path.read_text(encoding="utf-8"))
    r = client.post("/fhir", json=bundle)
    assert r.status_code == 200, r.text[:2000]
    pid = next(
        e["response"]["location"].split("/")[1]
        for e in r.json()["entry"]
        if e["response"]["location"].startswith("Patient/")
    )
    return bundle, pid


def _all_pages(client, url: str) -> list[dict[str, Any]]:  # type: ignore[no-untyped-def]
    out: list[dict[str, Any]] = []
    while url:
        r = client.get(url)
        assert r.status_code == 200, r.text
        page = r.json()
        out += page.get("entry", [])
        url = next((link["url"] for link in page["link"] if link["relation"] == "next"), "")
    return out


def test_everything_returns_the_whole_synthea_patient(client) -> None:  # type: ignore[no-untyped-def]
    path = sorted(SYNTHEA.glob("*.json"))[0]
    bundle, pid = _load_synthea(client, path)
    _load_synthea(client, sorted(SYNTHEA.glob("*.json"))[1])  # another patient: never in it
    entries = _all_pages(client, f"/fhir/Patient/{pid}/$everything?_count=7")
    got: dict[str, int] = {}
    for e in entries:
        got[e["resource"]["resourceType"]] = got.get(e["resource"]["resourceType"], 0) + 1
    want: dict[str, int] = {}
    for e in bundle["entry"]:
        want[e["resource"]["resourceType"]] = want.get(e["resource"]["resourceType"], 0) + 1
    # every page brings what it refers to outside the compartment again: count distinct
    distinct = {
        (e["resource"]["resourceType"], e["resource"]["id"]): e["resource"] for e in entries
    }
    for rtype, n in want.items():
        assert sum(1 for t, _ in distinct if t == rtype) == n, rtype
    # besides what was sent, only what triage made of it for this patient (alerts, its Flag)
    extra = [r for (t, _), r in distinct.items() if t not in want]
    assert {r["resourceType"] for r in extra} <= {"Task", "Flag"}
    for r in extra:
        assert (r.get("for") or r.get("subject"))["reference"] == f"Patient/{pid}"
    patients = [e for e in entries if e["resource"]["resourceType"] == "Patient"]
    assert {p["resource"]["id"] for p in patients} == {pid}
    # _type and _since narrow it
    only = _all_pages(client, f"/fhir/Patient/{pid}/$everything?_type=Condition,Encounter")
    assert {e["resource"]["resourceType"] for e in only} <= {"Condition", "Encounter"}
    assert len(only) == want.get("Condition", 0) + want.get("Encounter", 0)
    later = client.get(f"/fhir/Patient/{pid}/$everything?_since=2999-01-01T00:00:00Z").json()
    assert later.get("entry", []) == []
    assert client.get(f"/fhir/Patient/{pid}/$everything?_type=Nonsense").status_code == 400
    assert client.get("/fhir/Patient/nobody/$everything").status_code == 404


def test_validate_meta_and_type_history(client) -> None:  # type: ignore[no-untyped-def]
    p = _create(client, patient())
    good = client.post("/fhir/Condition/$validate", json=condition(p["id"]))
    assert good.status_code == 200
    assert all(i["severity"] not in ("error", "fatal") for i in good.json()["issue"])
    bad = client.post(
        "/fhir/Condition/$validate", json={**condition(p["id"]), "onsetDateTime": "nope"}
    )
    assert bad.status_code == 200
    assert any(i["severity"] == "error" for i in bad.json()["issue"])
    params = {
        "resourceType": "Parameters",
        "parameter": [{"name": "resource", "resource": {"resourceType": "Condition"}}],
    }
    r = client.post("/fhir/Condition/$validate", json=params)
    assert any(i["severity"] == "error" for i in r.json()["issue"])  # subject is required
    tagged = _create(
        client, {**condition(p["id"]), "meta": {"tag": [{"system": "urn:t", "code": "x"}]}}
    )
    r = client.get(f"/fhir/Condition/{tagged['id']}/$meta")
    assert r.json()["parameter"][0]["valueMeta"]["tag"] == [{"system": "urn:t", "code": "x"}]
    c = _create(client, condition(p["id"]))
    client.put(f"/fhir/Condition/{c['id']}", json={**c, "note": [{"text": "x"}]})
    h = client.get("/fhir/Condition/_history?_count=2").json()
    assert h["type"] == "history"
    assert [e["request"]["method"] for e in h["entry"]] == ["PUT", "POST"]
    everything = _all_pages_history(client, "/fhir/_history?_count=2")
    ours = [e for e in everything if e["resource"]["resourceType"] != "AuditEvent"]
    assert len(ours) == 4  # the patient, 2 conditions and the update of one
    assert client.get("/fhir/_history", headers={"Authorization": ""}).status_code == 401


def _all_pages_history(client, url: str) -> list[dict[str, Any]]:  # type: ignore[no-untyped-def]
    out: list[dict[str, Any]] = []
    while url:
        page = client.get(url).json()
        out += page.get("entry", [])
        url = next((link["url"] for link in page["link"] if link["relation"] == "next"), "")
    return out
