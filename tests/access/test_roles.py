"""Actors (contract), API keys and per-role access: each role's allowed and refused requests."""

from __future__ import annotations

from typing import Any

from tests.access.audit_trail import last_refusal
from tests.access.test_side_doors import _deny

FNR_SYSTEM = "urn:oid:2.16.578.1.12.4.1.4.1"
HPR = "urn:oid:2.16.578.1.12.4.1.4.4"
FNR_A, FNR_B = "13031353453", "02028099471"
VENDOR_ORG = "841672119"


def _post(client, path: str, body: dict[str, Any], **kw: Any) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    r = client.post(path, json=body, **kw)
    assert r.status_code in (200, 201), r.text
    return r.json()  # type: ignore[no-any-return]


def _obs(pid: str, code: str) -> dict[str, Any]:
    return {
        "resourceType": "Observation",
        "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": code}]},
        "subject": {"reference": f"Patient/{pid}"},
        "effectiveDateTime": "2026-03-01T08:00:00+01:00",
        "valueQuantity": {
            "value": 70,
            "unit": "/min",
            "system": "http://unitsofmeasure.org",
            "code": "/min",
        },
    }


def _world(client):  # type: ignore[no-untyped-def]
    gp1 = _post(
        client,
        "/fhir/Practitioner",
        {"resourceType": "Practitioner", "identifier": [{"system": HPR, "value": "9144889"}]},
    )["id"]
    gp2 = _post(
        client,
        "/fhir/Practitioner",
        {"resourceType": "Practitioner", "identifier": [{"system": HPR, "value": "1234567"}]},
    )["id"]
    role1 = _post(
        client,
        "/fhir/PractitionerRole",
        {"resourceType": "PractitionerRole", "practitioner": {"reference": f"Practitioner/{gp1}"}},
    )["id"]
    a = _post(
        client,
        "/fhir/Patient",
        {
            "resourceType": "Patient",
            "identifier": [{"system": FNR_SYSTEM, "value": FNR_A}],
            "generalPractitioner": [{"reference": f"PractitionerRole/{role1}"}],
        },
    )["id"]
    b = _post(
        client,
        "/fhir/Patient",
        {
            "resourceType": "Patient",
            "identifier": [{"system": FNR_SYSTEM, "value": FNR_B}],
            "generalPractitioner": [{"reference": f"Practitioner/{gp2}"}],
        },
    )["id"]
    oa = _post(client, "/fhir/Observation", _obs(a, "8867-4"))["id"]
    oa_out = _post(client, "/fhir/Observation", _obs(a, "2339-0"))["id"]  # not in the gp view
    ob = _post(client, "/fhir/Observation", _obs(b, "8867-4"))["id"]
    gp_key = _post(client, "/api/v1/actors", {"role": "gp", "organization": {}, "hpr": "9144889"})[
        "key"
    ]
    return a, b, oa, oa_out, ob, {"Authorization": f"Bearer {gp_key}"}


def _ids(r) -> list[str]:  # type: ignore[no-untyped-def]
    assert r.status_code == 200, r.text
    return [
        e["resource"]["id"] for e in r.json().get("entry", []) if e["search"]["mode"] == "match"
    ]


def test_actor_contract(client) -> None:  # type: ignore[no-untyped-def]
    r = client.post(
        "/api/v1/actors",
        json={"role": "vendor", "organization": {"orgnr": VENDOR_ORG, "herid": "8094866"}},
    )
    assert r.status_code == 201 and set(r.json()) >= {"id", "key"}
    key = r.json()["key"]
    assert (
        client.get("/fhir/Patient", headers={"Authorization": f"Bearer {key}"}).status_code == 403
    )
    assert (
        client.post(
            "/api/v1/actors", json={"role": "gp", "organization": {"orgnr": "123456789"}}
        ).status_code
        == 422
    )
    assert client.post("/api/v1/actors", json={"role": "wizard"}).status_code == 422
    assert (
        client.post(
            "/api/v1/actors",
            json={"role": "gp", "hpr": "9144889"},
            headers={"Authorization": f"Bearer {key}"},
        ).status_code
        == 403
    )
    assert client.delete(f"/api/v1/actors/{r.json()['id']}").status_code == 200
    assert (
        client.get("/fhir/Patient", headers={"Authorization": f"Bearer {key}"}).status_code == 401
    )


def test_gp_sees_only_own_patients_and_view_codes(client) -> None:  # type: ignore[no-untyped-def]
    a, b, oa, oa_out, ob, gp = _world(client)
    assert client.get(f"/fhir/Patient/{a}", headers=gp).status_code == 200
    refused = client.get(f"/fhir/Patient/{b}", headers=gp)
    assert refused.status_code == 403 and "not one of your patients" in refused.text
    assert "not a patient of gp HPR 9144889" in last_refusal(client)
    assert client.get(f"/fhir/Observation/{ob}", headers=gp).status_code == 403
    assert client.get(f"/fhir/Observation/{oa_out}", headers=gp).status_code == 403
    assert _ids(client.get("/fhir/Observation", headers=gp)) == [oa]
    assert _ids(client.get("/fhir/Observation", params={"patient": b}, headers=gp)) == []
    assert _ids(client.get("/fhir/Patient", params={"_id": f"{a},{b}"}, headers=gp)) == [a]
    assert (
        _ids(
            client.get("/fhir/Patient", params={"identifier": f"{FNR_SYSTEM}|{FNR_B}"}, headers=gp)
        )
        == []
    )
    assert (
        client.get("/fhir/Observation", params={"_summary": "count"}, headers=gp).json()["total"]
        == 1
    )
    lastn = client.get("/fhir/Observation/$lastn", params={"patient": b}, headers=gp)
    assert _ids(lastn) == []
    assert client.get("/fhir/AuditEvent", headers=gp).status_code == 403
    # a GP may not write for someone else's patient
    assert (
        client.post(
            "/fhir/Observation",
            json=_obs(b, "8867-4"),
            headers={**gp, "Content-Type": "application/fhir+json"},
        ).status_code
        == 403
    )


def test_vendor_writes_only_for_linked_patients(client) -> None:  # type: ignore[no-untyped-def]
    a, b, *_ = _world(client)
    vendor = {
        "Authorization": "Bearer "
        + _post(
            client, "/api/v1/actors", {"role": "vendor", "organization": {"orgnr": VENDOR_ORG}}
        )["key"]
    }
    _post(
        client,
        "/api/v1/patient-links",
        {"source": VENDOR_ORG, "userId": "u-1", "nationalId": FNR_A},
    )
    assert (
        client.post("/fhir/Observation", json=_obs(a, "8867-4"), headers=vendor).status_code == 201
    )
    assert (
        client.post("/fhir/Observation", json=_obs(b, "8867-4"), headers=vendor).status_code == 403
    )
    assert client.get(f"/fhir/Patient/{a}", headers=vendor).status_code == 403
    assert client.get("/fhir/Observation", headers=vendor).status_code == 403


def test_consent_deny_is_honoured(client) -> None:  # type: ignore[no-untyped-def]
    a, _b, oa, _o, _ob, gp = _world(client)
    practitioner = client.get("/fhir/Practitioner", params={"identifier": f"{HPR}|9144889"}).json()[
        "entry"
    ][0]["resource"]["id"]
    assert client.get(f"/fhir/Observation/{oa}", headers=gp).status_code == 200
    _deny(client, a, f"Practitioner/{practitioner}")
    r = client.get(f"/fhir/Observation/{oa}", headers=gp)
    assert r.status_code == 403 and "not one of your patients" in r.text
    assert "denies" in last_refusal(client)
    assert _ids(client.get("/fhir/Observation", headers=gp)) == []


def test_audit_trail_is_chained_and_verifiable(client, services, settings) -> None:  # type: ignore[no-untyped-def]
    import os
    import subprocess
    import sys

    from sqlalchemy import text

    from interop.access.audit import verify

    a, b, oa, _o, _ob, gp = _world(client)
    client.get(f"/fhir/Observation/{oa}", headers=gp)
    client.get(f"/fhir/Patient/{b}", headers=gp)  # refused: audited with outcome 4
    client.get("/fhir/Observation", headers=gp)
    events = client.get("/fhir/AuditEvent", params={"_count": 100}).json()["entry"]
    actions = sorted((e["resource"]["action"], e["resource"]["outcome"]) for e in events)
    assert ("R", "0") in actions and ("R", "4") in actions and ("E", "0") in actions
    patients = {en["what"].get("reference") for e in events for en in e["resource"]["entity"]}
    assert f"Patient/{a}" in patients
    with services.store.reader() as conn:
        ok, message = verify(conn)
    assert ok, message
    env = {**os.environ, "INTEROP_DATABASE_URL": settings.database_url}
    cli = subprocess.run(
        [sys.executable, "-m", "interop.cli", "audit", "verify"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert cli.returncode == 0, cli.stderr
    # tamper with one audited event directly in the database
    victim = events[0]["resource"]["id"]
    with services.engine.begin() as conn:
        row = conn.execute(
            text("SELECT content FROM audit_chain WHERE res_id=:i"),
            {"i": victim},
        ).scalar()
        forged = (
            bytes(row)
            .replace(b'"outcome":"4"', b'"outcome":"0"')
            .replace(b'"outcome":"0"', b'"outcome":"8"', 1)
        )
        conn.execute(
            text("UPDATE audit_chain SET content=:c WHERE res_id=:i"),
            {"c": forged, "i": victim},
        )
    with services.store.reader() as conn:
        ok, message = verify(conn)
    assert not ok and victim in message
    cli = subprocess.run(
        [sys.executable, "-m", "interop.cli", "audit", "verify"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert cli.returncode == 1 and victim in cli.stderr


def test_hospital_and_followup_scopes(client) -> None:  # type: ignore[no-untyped-def]
    a, b, oa, _o, ob, _gp = _world(client)
    org = _post(
        client,
        "/fhir/Organization",
        {
            "resourceType": "Organization",
            "identifier": [{"system": "urn:oid:2.16.578.1.12.4.1.4.101", "value": "987789328"}],
        },
    )["id"]
    _post(
        client,
        "/fhir/EpisodeOfCare",
        {
            "resourceType": "EpisodeOfCare",
            "status": "active",
            "patient": {"reference": f"Patient/{a}"},
            "managingOrganization": {"reference": f"Organization/{org}"},
        },
    )
    hospital = {
        "Authorization": "Bearer "
        + _post(
            client, "/api/v1/actors", {"role": "hospital", "organization": {"orgnr": "987789328"}}
        )["key"]
    }
    assert client.get(f"/fhir/Observation/{oa}", headers=hospital).status_code == 200
    assert client.get(f"/fhir/Observation/{ob}", headers=hospital).status_code == 403
    assert client.get(f"/fhir/Patient/{b}", headers=hospital).status_code == 403
    followup = {
        "Authorization": "Bearer "
        + _post(
            client, "/api/v1/actors", {"role": "followup", "organization": {"orgnr": "987789328"}}
        )["key"]
    }
    assert _ids(client.get("/fhir/Patient", headers=followup)) == []  # nobody is managed by it yet
    pa = client.get(f"/fhir/Patient/{a}").json()
    pa["managingOrganization"] = {"reference": f"Organization/{org}"}
    assert client.put(f"/fhir/Patient/{a}", json=pa).status_code == 200
    assert _ids(client.get("/fhir/Patient", headers=followup)) == [a]
