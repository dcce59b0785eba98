"""FHIR REST basics: create/read/vread/update/history/delete and error outcomes."""

from __future__ import annotations

from typing import Any

FNR = "urn:oid:2.16.578.1.12.4.1.4.1"


def patient(fnr: str = "13031353453", family: str = "Nordmann") -> dict[str, Any]:
    return {
        "resourceType": "Patient",
        "identifier": [{"system": FNR, "value": fnr}],
        "name": [{"family": family, "given": ["Kari"]}],
        "gender": "female",
        "birthDate": "2013-03-13",
    }


def observation(
    pid: str, value: float = 72, when: str = "2026-01-05T08:30:00+01:00", ident: str | None = None
) -> dict[str, Any]:
    obs: dict[str, Any] = {
        "resourceType": "Observation",
        "status": "final",
        "category": [
            {
                "coding": [
                    {
                        "system": "http://terminology.hl7.org/CodeSystem/observation-category",
                        "code": "vital-signs",
                    }
                ]
            }
        ],
        "code": {
            "coding": [{"system": "http://loinc.org", "code": "8867-4", "display": "Heart rate"}]
        },
        "subject": {"reference": f"Patient/{pid}"},
        "effectiveDateTime": when,
        "valueQuantity": {
            "value": value,
            "unit": "/min",
            "system": "http://unitsofmeasure.org",
            "code": "/min",
        },
    }
    if ident:
        obs["identifier"] = [{"system": "urn:test", "value": ident}]
    return obs


def test_create_read_vread_update_history(client) -> None:  # type: ignore[no-untyped-def]
    r = client.post("/fhir/Patient", json=patient())
    assert r.status_code == 201, r.text
    assert r.headers["content-type"].startswith("application/fhir+json")
    assert r.headers["etag"] == 'W/"1"'
    body = r.json()
    pid = body["id"]
    assert body["meta"]["versionId"] == "1"
    assert r.headers["location"] == f"Patient/{pid}/_history/1"

    r = client.get(f"/fhir/Patient/{pid}")
    assert r.status_code == 200
    assert r.json()["name"][0]["family"] == "Nordmann"

    changed = r.json()
    changed["name"][0]["family"] = "Hansen"
    r = client.put(f"/fhir/Patient/{pid}", json=changed, headers={"If-Match": 'W/"1"'})
    assert r.status_code == 200, r.text
    assert r.json()["meta"]["versionId"] == "2"

    # stale If-Match is refused with 412 and an OperationOutcome
    r = client.put(f"/fhir/Patient/{pid}", json=changed, headers={"If-Match": 'W/"1"'})
    assert r.status_code == 412
    assert r.json()["resourceType"] == "OperationOutcome"

    r = client.get(f"/fhir/Patient/{pid}/_history/1")
    assert r.status_code == 200 and r.json()["name"][0]["family"] == "Nordmann"
    r = client.get(f"/fhir/Patient/{pid}/_history")
    assert r.status_code == 200
    hist = r.json()
    assert hist["type"] == "history" and hist["total"] == 2
    assert [e["resource"]["meta"]["versionId"] for e in hist["entry"]] == ["2", "1"]

    r = client.delete(f"/fhir/Patient/{pid}")
    assert r.status_code == 200
    assert client.get(f"/fhir/Patient/{pid}").status_code == 410
    assert client.get(f"/fhir/Patient/{pid}/_history/2").status_code == 200


def test_observation_is_immutable_and_never_deleted(client) -> None:  # type: ignore[no-untyped-def]
    pid = client.post("/fhir/Patient", json=patient()).json()["id"]
    obs = client.post("/fhir/Observation", json=observation(pid)).json()
    obs["valueQuantity"]["value"] = 80
    r = client.put(f"/fhir/Observation/{obs['id']}", json=obs)
    assert r.status_code == 409
    assert "amended" in r.json()["issue"][0]["diagnostics"]
    obs["status"] = "corrected"
    r = client.put(f"/fhir/Observation/{obs['id']}", json=obs)
    assert r.status_code == 200 and r.json()["meta"]["versionId"] == "2"
    r = client.delete(f"/fhir/Observation/{obs['id']}")
    assert r.status_code == 405
    assert "entered-in-error" in r.json()["issue"][0]["diagnostics"]
    assert client.get(f"/fhir/Observation/{obs['id']}").status_code == 200


def test_client_errors_are_operation_outcomes(client) -> None:  # type: ignore[no-untyped-def]
    r = client.post("/fhir/Patient", content=b"{not json")
    assert r.status_code == 400 and r.json()["resourceType"] == "OperationOutcome"
    r = client.post("/fhir/Patient", json={"resourceType": "Observation", "status": "final"})
    assert r.status_code == 400
    r = client.post("/fhir/Patient", json={"resourceType": "Patient", "gender": 12})
    assert r.status_code == 422
    issue = r.json()["issue"][0]
    assert "Patient.gender" in issue["expression"][0]
    r = client.post("/fhir/Patient", json={"resourceType": "Patient", "birthDate": "2020-13-45"})
    assert r.status_code == 422
    # bad fødselsnummer check digits
    r = client.post("/fhir/Patient", json=patient(fnr="13031353454"))
    assert r.status_code == 422
    assert "identifier" in r.json()["issue"][0]["diagnostics"]
    assert client.get("/fhir/Patient/does-not-exist").status_code == 404
    assert client.get("/fhir/Banana/1").status_code == 404
    # XML is read (tests/api/test_xml_format.py); a root outside the FHIR namespace is not FHIR
    assert (
        client.post(
            "/fhir/Patient", content=b"<Patient/>", headers={"Content-Type": "application/fhir+xml"}
        ).status_code
        == 400
    )
    assert (
        client.post(
            "/fhir/Patient", content=b"x", headers={"Content-Type": "application/yaml"}
        ).status_code
        == 415
    )
    r = client.get("/fhir/Patient", headers={"Authorization": "Bearer wrong"})
    assert r.status_code == 401 and r.json()["resourceType"] == "OperationOutcome"
    r = client.get("/fhir/Patient", headers={"Authorization": ""})
    assert r.status_code == 401


def test_conditional_create_and_unique_observation_identifier(client) -> None:  # type: ignore[no-untyped-def]
    r1 = client.post(
        "/fhir/Patient", json=patient(), headers={"If-None-Exist": f"identifier={FNR}|13031353453"}
    )
    r2 = client.post(
        "/fhir/Patient", json=patient(), headers={"If-None-Exist": f"identifier={FNR}|13031353453"}
    )
    assert r1.status_code == 201 and r2.status_code == 200
    assert r1.json()["id"] == r2.json()["id"]
    pid = r1.json()["id"]
    assert client.post("/fhir/Observation", json=observation(pid, ident="m-1")).status_code == 201
    r = client.post("/fhir/Observation", json=observation(pid, ident="m-1"))
    assert r.status_code == 409 and r.json()["issue"][0]["code"] == "duplicate"


def test_metadata_is_truthful(client) -> None:  # type: ignore[no-untyped-def]
    r = client.get("/fhir/metadata", headers={"Authorization": ""})
    assert r.status_code == 200
    cs = r.json()
    assert cs["fhirVersion"] == "4.0.1"
    types = {res["type"]: res for res in cs["rest"][0]["resource"]}
    assert "Observation" in types and "Task" in types and "AuditEvent" in types
    obs_interactions = {i["code"] for i in types["Observation"]["interaction"]}
    assert "delete" not in obs_interactions and "update" in obs_interactions
    assert "update" not in {i["code"] for i in types["AuditEvent"]["interaction"]}
