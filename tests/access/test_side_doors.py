"""The side doors an outside attack suite found: each path a non-admin actor could use to read
or move another patient's data, tried the way an attacker would."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest

from tests.access.audit_trail import last_refusal

FNR_SYSTEM = "urn:oid:2.16.578.1.12.4.1.4.1"
HPR = "urn:oid:2.16.578.1.12.4.1.4.4"
ORGNR = "urn:oid:2.16.578.1.12.4.1.4.101"
FNR_A, FNR_B, FNR_C = "13031353453", "02028099471", "15076591919"
PRACTICE_ORG, HOSPITAL_ORG, VENDOR_ORG = "987789328", "974589095", "841672119"
GP1_HPR, GP2_HPR = "9144889", "1234567"


def _post(client, path: str, body: dict[str, Any]) -> str:  # type: ignore[no-untyped-def]
    r = client.post(path, json=body)
    assert r.status_code in (200, 201), r.text
    return str(r.json()["id"])


def _key(client, body: dict[str, Any]) -> dict[str, str]:  # type: ignore[no-untyped-def]
    r = client.post("/api/v1/actors", json=body)
    assert r.status_code == 201, r.text
    return {"Authorization": f"Bearer {r.json()['key']}", "Content-Type": "application/fhir+json"}


def _obs(pid: str, value: float = 70, ident: str | None = None) -> dict[str, Any]:
    obs: dict[str, Any] = {
        "resourceType": "Observation",
        "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4"}]},
        "subject": {"reference": f"Patient/{pid}"},
        "effectiveDateTime": "2026-03-01T08:00:00+01:00",
        "valueQuantity": {
            "value": value,
            "unit": "/min",
            "system": "http://unitsofmeasure.org",
            "code": "/min",
        },
    }
    if ident:
        obs["identifier"] = [{"system": "urn:test:obs", "value": ident}]
    return obs


@dataclass
class World:
    a: str
    """GP1's patient."""
    b: str
    """GP2's patient, at the same practice."""
    c: str
    """A patient of nobody here."""
    oa: str
    ob: str
    oc: str
    practice: str
    gp1_practitioner: str
    gp1_role: str
    gp1: dict[str, str]
    gp2: dict[str, str]


def _world(client) -> World:  # type: ignore[no-untyped-def]
    practice = _post(
        client,
        "/fhir/Organization",
        {"resourceType": "Organization", "identifier": [{"system": ORGNR, "value": PRACTICE_ORG}]},
    )
    p1 = _post(
        client,
        "/fhir/Practitioner",
        {"resourceType": "Practitioner", "identifier": [{"system": HPR, "value": GP1_HPR}]},
    )
    p2 = _post(
        client,
        "/fhir/Practitioner",
        {"resourceType": "Practitioner", "identifier": [{"system": HPR, "value": GP2_HPR}]},
    )
    roles = [
        _post(
            client,
            "/fhir/PractitionerRole",
            {
                "resourceType": "PractitionerRole",
                "practitioner": {"reference": f"Practitioner/{p}"},
                "organization": {"reference": f"Organization/{practice}"},
            },
        )
        for p in (p1, p2)
    ]

    def patient(fnr: str, gp: str | None) -> str:
        body: dict[str, Any] = {
            "resourceType": "Patient",
            "identifier": [{"system": FNR_SYSTEM, "value": fnr}],
        }
        if gp:
            body["generalPractitioner"] = [{"reference": gp}]
        return _post(client, "/fhir/Patient", body)

    a = patient(FNR_A, f"PractitionerRole/{roles[0]}")
    b = patient(FNR_B, f"PractitionerRole/{roles[1]}")
    c = patient(FNR_C, None)
    oa = _post(client, "/fhir/Observation", _obs(a, 71, "obs-a"))
    ob = _post(client, "/fhir/Observation", _obs(b, 72, "obs-b"))
    oc = _post(client, "/fhir/Observation", _obs(c, 73, "obs-c"))
    gp1 = _key(client, {"role": "gp", "hpr": GP1_HPR, "organization": {"orgnr": PRACTICE_ORG}})
    gp2 = _key(client, {"role": "gp", "hpr": GP2_HPR, "organization": {"orgnr": PRACTICE_ORG}})
    return World(a, b, c, oa, ob, oc, practice, p1, roles[0], gp1, gp2)


def _ids(r) -> list[str]:  # type: ignore[no-untyped-def]
    assert r.status_code == 200, r.text
    return [
        e["resource"]["id"] for e in r.json().get("entry", []) if e["search"]["mode"] == "match"
    ]


# ---- 1. conditional create -------------------------------------------------------------


def test_conditional_create_matches_only_what_the_actor_may_read(client) -> None:  # type: ignore[no-untyped-def]
    w = _world(client)
    # a criteria matching several patients' Observations finds only GP1's own
    r = client.post(
        "/fhir/Observation",
        json=_obs(w.a, 81),
        headers={**w.gp1, "If-None-Exist": "code=http://loinc.org|8867-4"},
    )
    assert r.status_code == 200, r.text
    assert r.json()["id"] == w.oa
    # GP1 asks If-None-Exist with the identifier of GP2's patient's Observation: no match
    # shown or hinted at; GP1's own Observation is created
    r = client.post(
        "/fhir/Observation",
        json=_obs(w.a, 80),
        headers={**w.gp1, "If-None-Exist": "identifier=urn:test:obs|obs-b"},
    )
    assert r.status_code == 201, r.text
    assert w.ob not in r.text and r.json()["subject"]["reference"] == f"Patient/{w.a}"


def test_conditional_create_in_a_bundle_does_not_return_another_patient(client) -> None:  # type: ignore[no-untyped-def]
    w = _world(client)
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {
                "resource": {
                    "resourceType": "Patient",
                    "id": w.a,
                    "identifier": [{"system": FNR_SYSTEM, "value": FNR_A}],
                },
                "request": {
                    "method": "POST",
                    "url": "Patient",
                    "ifNoneExist": f"identifier={FNR_SYSTEM}|{FNR_B}",
                },
            }
        ],
    }
    r = client.post("/fhir", json=bundle, headers=w.gp1)
    assert FNR_B not in r.text and w.b not in r.text
    batch = {**bundle, "type": "batch"}
    r = client.post("/fhir", json=batch, headers=w.gp1)
    assert FNR_B not in r.text and w.b not in r.text


# ---- 2. updates are checked against the stored version ---------------------------------


def test_a_gp_cannot_move_another_patients_observation(client) -> None:  # type: ignore[no-untyped-def]
    w = _world(client)
    stolen = {**_obs(w.a, 99), "id": w.ob, "status": "corrected"}
    r = client.put(f"/fhir/Observation/{w.ob}", json=stolen, headers=w.gp1)
    assert r.status_code == 403, r.text
    assert client.get(f"/fhir/Observation/{w.ob}").json()["subject"]["reference"] == (
        f"Patient/{w.b}"
    )
    # the same through a transaction and a batch
    for btype in ("transaction", "batch"):
        bundle = {
            "resourceType": "Bundle",
            "type": btype,
            "entry": [
                {
                    "resource": stolen,
                    "request": {"method": "PUT", "url": f"Observation/{w.ob}"},
                }
            ],
        }
        r = client.post("/fhir", json=bundle, headers=w.gp1)
        assert r.status_code == 403 or '"status":"403"' in r.text.replace(" ", ""), r.text
    assert client.get(f"/fhir/Observation/{w.ob}").json()["subject"]["reference"] == (
        f"Patient/{w.b}"
    )


def test_an_observation_subject_never_changes_even_for_an_admin(client) -> None:  # type: ignore[no-untyped-def]
    w = _world(client)
    moved = {**_obs(w.c, 71), "id": w.oa, "status": "corrected"}
    r = client.put(f"/fhir/Observation/{w.oa}", json=moved)
    assert r.status_code == 422 and "Observation.subject" in r.text
    # the right way: entered-in-error, then a new Observation for the right patient
    withdrawn = {**client.get(f"/fhir/Observation/{w.oa}").json(), "status": "entered-in-error"}
    assert client.put(f"/fhir/Observation/{w.oa}", json=withdrawn).status_code == 200


def test_a_non_admin_cannot_move_a_resource_to_another_patient(client) -> None:  # type: ignore[no-untyped-def]
    w = _world(client)
    followup = _key(client, {"role": "followup", "organization": {"orgnr": PRACTICE_ORG}})
    for pid in (w.a, w.b):
        patient = client.get(f"/fhir/Patient/{pid}").json()
        patient["managingOrganization"] = {"reference": f"Organization/{w.practice}"}
        assert client.put(f"/fhir/Patient/{pid}", json=patient).status_code == 200
    flag = _post(
        client,
        "/fhir/Flag",
        {
            "resourceType": "Flag",
            "status": "active",
            "code": {"text": "fall risk"},
            "subject": {"reference": f"Patient/{w.a}"},
        },
    )
    moved = {
        "resourceType": "Flag",
        "id": flag,
        "status": "active",
        "code": {"text": "fall risk"},
        "subject": {"reference": f"Patient/{w.b}"},
    }
    r = client.put(f"/fhir/Flag/{flag}", json=moved, headers=followup)
    assert r.status_code == 403 and "never moves" in r.text


def test_history_of_another_patients_resource_is_refused(client) -> None:  # type: ignore[no-untyped-def]
    w = _world(client)
    for path in (f"/fhir/Observation/{w.ob}/_history", f"/fhir/Observation/{w.ob}/_history/1"):
        r = client.get(path, headers=w.gp1)
        assert r.status_code == 403, (path, r.text)
        assert "72" not in r.text
    assert client.get(f"/fhir/Observation/{w.oa}/_history", headers=w.gp1).status_code == 200


# ---- 3. Consent ------------------------------------------------------------------------


def _deny(client, patient: str, actor_ref: str) -> None:  # type: ignore[no-untyped-def]
    _post(
        client,
        "/fhir/Consent",
        {
            "resourceType": "Consent",
            "status": "active",
            "scope": {
                "coding": [
                    {
                        "system": "http://terminology.hl7.org/CodeSystem/consentscope",
                        "code": "patient-privacy",
                    }
                ]
            },
            "category": [{"coding": [{"system": "http://loinc.org", "code": "59284-0"}]}],
            "patient": {"reference": f"Patient/{patient}"},
            "provision": {
                "type": "deny",
                "actor": [
                    {
                        "role": {
                            "coding": [
                                {
                                    "system": "http://terminology.hl7.org/CodeSystem/v3-ParticipationType",
                                    "code": "PRCP",
                                }
                            ]
                        },
                        "reference": {"reference": actor_ref},
                    }
                ],
            },
        },
    )


@pytest.mark.parametrize("named", ["role", "organization", "parent", "careteam"])
def test_consent_deny_names_the_actor_in_any_of_its_forms(client, named: str) -> None:  # type: ignore[no-untyped-def]
    w = _world(client)
    if named == "role":
        ref = f"PractitionerRole/{w.gp1_role}"
    elif named == "organization":
        ref = f"Organization/{w.practice}"
    elif named == "parent":
        parent = _post(client, "/fhir/Organization", {"resourceType": "Organization"})
        practice = client.get(f"/fhir/Organization/{w.practice}").json()
        practice["partOf"] = {"reference": f"Organization/{parent}"}
        assert client.put(f"/fhir/Organization/{w.practice}", json=practice).status_code == 200
        ref = f"Organization/{parent}"
    else:
        team = _post(
            client,
            "/fhir/CareTeam",
            {
                "resourceType": "CareTeam",
                "status": "active",
                "subject": {"reference": f"Patient/{w.c}"},
                "participant": [{"member": {"reference": f"Practitioner/{w.gp1_practitioner}"}}],
            },
        )
        ref = f"CareTeam/{team}"
    assert client.get(f"/fhir/Observation/{w.oa}", headers=w.gp1).status_code == 200
    _deny(client, w.a, ref)
    r = client.get(f"/fhir/Observation/{w.oa}", headers=w.gp1)
    assert r.status_code == 403 and "not one of your patients" in r.text
    assert "denies" in last_refusal(client)
    assert _ids(client.get("/fhir/Observation", headers=w.gp1)) == []
    count = client.get("/fhir/Observation", params={"_summary": "count"}, headers=w.gp1)
    assert count.json()["total"] == 0
    lastn = client.get("/fhir/Observation/$lastn", params={"patient": w.a}, headers=w.gp1)
    assert _ids(lastn) == []
    summary = client.get(f"/api/v1/patients/{FNR_A}/summary", headers=w.gp1)
    assert summary.status_code == 403


# ---- 6. which patients a GP sees --------------------------------------------------------


def test_a_gp_sees_only_the_patients_they_are_fastlege_for(client) -> None:  # type: ignore[no-untyped-def]
    w = _world(client)
    assert _ids(client.get("/fhir/Patient", headers=w.gp1)) == [w.a]
    assert client.get(f"/fhir/Observation/{w.ob}", headers=w.gp1).status_code == 403
    assert client.get(f"/api/v1/patients/{FNR_B}/summary", headers=w.gp1).status_code == 403


def test_practice_wide_gp_access_is_a_setting(settings, services) -> None:  # type: ignore[no-untyped-def]
    from fastapi.testclient import TestClient

    from interop.api.app import create_app
    from interop.services import Services

    settings.gp_access = "practice"
    practice_services = Services(
        settings, services.engine, services.store, services.search, services.bundles
    )
    app = create_app(settings, services=practice_services)
    with TestClient(app, headers={"Authorization": "Bearer test-admin-key"}) as client:
        w = _world(client)
        assert sorted(_ids(client.get("/fhir/Patient", headers=w.gp1))) == sorted([w.a, w.b])
        assert client.get(f"/fhir/Observation/{w.ob}", headers=w.gp1).status_code == 200
        assert client.get(f"/fhir/Observation/{w.oc}", headers=w.gp1).status_code == 403


# ---- 7. plans ---------------------------------------------------------------------------

PLAN_ZONES = [
    {
        "code": "8867-4",
        "unit": "/min",
        "green": {"low": 50, "high": 100},
        "yellow": {"low": 40, "high": 120},
    }
]


def test_a_gp_writes_plans_only_for_own_patients_with_own_hpr(client) -> None:  # type: ignore[no-untyped-def]
    w = _world(client)
    own = {"approvedBy": {"hpr": GP1_HPR}, "zones": PLAN_ZONES}
    r = client.put(f"/api/v1/patients/{FNR_B}/plan", json=own, headers=w.gp1)
    assert r.status_code == 403
    r = client.put(f"/api/v1/patients/{FNR_C}/plan", json=own, headers=w.gp1)
    assert r.status_code == 403
    other = {"approvedBy": {"hpr": GP2_HPR}, "zones": PLAN_ZONES}
    r = client.put(f"/api/v1/patients/{FNR_A}/plan", json=other, headers=w.gp1)
    assert r.status_code == 403 and "approvedBy.hpr" in r.text
    r = client.put(f"/api/v1/patients/{FNR_A}/plan", json=own, headers=w.gp1)
    assert r.status_code == 201, r.text
    # an unknown fødselsnummer answers like another GP's patient: no hint that it is ours
    unknown = client.put("/api/v1/patients/03027195724/plan", json=own, headers=w.gp1)
    assert unknown.status_code == 403 and unknown.text == (
        client.put(f"/api/v1/patients/{FNR_C}/plan", json=own, headers=w.gp1).text
    )


def test_a_nurse_records_the_patients_gps_approval(client) -> None:  # type: ignore[no-untyped-def]
    w = _world(client)
    centre = _post(
        client,
        "/fhir/Organization",
        {"resourceType": "Organization", "identifier": [{"system": ORGNR, "value": HOSPITAL_ORG}]},
    )
    patient = client.get(f"/fhir/Patient/{w.a}").json()
    patient["managingOrganization"] = {"reference": f"Organization/{centre}"}
    assert client.put(f"/fhir/Patient/{w.a}", json=patient).status_code == 200
    nurse = _key(
        client,
        {
            "role": "followup",
            "hpr": "5655590",
            "name": "Kari Sykepleier",
            "organization": {"orgnr": HOSPITAL_ORG},
        },
    )
    wrong = {"approvedBy": {"hpr": GP2_HPR}, "zones": PLAN_ZONES}
    r = client.put(f"/api/v1/patients/{FNR_A}/plan", json=wrong, headers=nurse)
    assert r.status_code == 422 and "not this patient's GP" in r.text
    right = {"approvedBy": {"hpr": GP1_HPR}, "zones": PLAN_ZONES}
    r = client.put(f"/api/v1/patients/{FNR_A}/plan", json=right, headers=nurse)
    assert r.status_code == 201, r.text
    care_plan = r.json()["carePlan"]["id"]
    provenance = client.get("/fhir/Provenance", params={"target": f"CarePlan/{care_plan}"}).json()
    agents = provenance["entry"][0]["resource"]["agent"]
    roles = {a["type"]["coding"][0]["code"]: a["who"] for a in agents}
    assert roles["verifier"]["reference"] == f"Practitioner/{w.gp1_practitioner}"
    assert roles["author"]["identifier"]["value"] == "5655590"
    assert roles["author"]["display"] == "Kari Sykepleier"


# ---- vendors over /fhir -----------------------------------------------------------------


def test_a_vendor_updates_only_what_it_created(client) -> None:  # type: ignore[no-untyped-def]
    w = _world(client)
    vendor = _key(client, {"role": "vendor", "organization": {"orgnr": VENDOR_ORG}})
    r = client.post(
        "/api/v1/patient-links", json={"source": VENDOR_ORG, "userId": "u-1", "nationalId": FNR_A}
    )
    assert r.status_code == 201
    mine = client.post("/fhir/Observation", json=_obs(w.a, 60), headers=vendor)
    assert mine.status_code == 201, mine.text
    corrected = {**mine.json(), "status": "corrected"}
    assert (
        client.put(
            f"/fhir/Observation/{corrected['id']}", json=corrected, headers=vendor
        ).status_code
        == 200
    )
    # the red value someone else measured cannot be turned green by the vendor
    theirs = {**_obs(w.a, 70), "id": w.oa, "status": "corrected"}
    r = client.put(f"/fhir/Observation/{w.oa}", json=theirs, headers=vendor)
    assert r.status_code == 403 and "only update what it created" in r.text
    r = client.post("/fhir/Observation", json=_obs(w.c, 60), headers=vendor)
    assert r.status_code == 403 and "not linked" in r.text


def test_audit_events_cannot_be_written_by_clients(client) -> None:  # type: ignore[no-untyped-def]
    w = _world(client)
    client.get(f"/fhir/Observation/{w.oa}", headers=w.gp1)
    event = client.get("/fhir/AuditEvent", params={"_count": 1}).json()["entry"][0]["resource"]
    forged = {k: v for k, v in event.items() if k not in ("id", "meta")}
    assert client.post("/fhir/AuditEvent", json=forged).status_code == 403
    event["outcome"] = "0"
    assert client.put(f"/fhir/AuditEvent/{event['id']}", json=event).status_code in (403, 405)
    assert client.delete(f"/fhir/AuditEvent/{event['id']}").status_code in (403, 405)
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [{"resource": forged, "request": {"method": "POST", "url": "AuditEvent"}}],
    }
    assert client.post("/fhir", json=bundle).status_code == 403


# ---- a cached scope never outlives a change of care relation ------------------------------


def test_a_change_of_gp_takes_effect_at_once_in_another_process(settings, services) -> None:  # type: ignore[no-untyped-def]
    """Two API processes (two apps with their own policy and scope cache) on one database: a
    change made through one is honoured by the other on the next request."""
    from fastapi.testclient import TestClient

    from interop.api.app import create_app
    from interop.services import Services

    other = Services(settings, services.engine, services.store, services.search, services.bundles)
    admin = {"Authorization": "Bearer test-admin-key"}
    with (
        TestClient(create_app(settings, services=services), headers=admin) as one,
        TestClient(create_app(settings, services=other), headers=admin) as two,
    ):
        w = _world(one)
        assert one.get(f"/fhir/Observation/{w.oa}", headers=w.gp1).status_code == 200  # cached
        patient = two.get(f"/fhir/Patient/{w.a}").json()
        patient["generalPractitioner"] = [{"reference": f"Practitioner/{w.gp1_practitioner}x"}]
        assert two.put(f"/fhir/Patient/{w.a}", json=patient).status_code == 200
        assert one.get(f"/fhir/Observation/{w.oa}", headers=w.gp1).status_code == 403
        assert one.get(f"/fhir/Observation/{w.ob}", headers=w.gp2).status_code == 200  # cached
        _deny(two, w.b, f"Organization/{w.practice}")
        assert one.get(f"/fhir/Observation/{w.ob}", headers=w.gp2).status_code == 403
