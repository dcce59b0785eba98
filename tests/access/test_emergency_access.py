"""Emergency access (*nødrett*): a health professional opens a record outside the care
relation with a reason, for a limited time; what they read is audited as emergency access and
the opening is listed for review."""

from __future__ import annotations

from sqlalchemy import update

from interop.store.generation import bump
from interop.store.schema import emergency_access_table
from tests.access.test_side_doors import FNR_B, _world


def test_a_gp_opens_another_patient_by_nodrett_for_a_while(client, services) -> None:  # type: ignore[no-untyped-def]
    w = _world(client)
    assert client.get(f"/fhir/Observation/{w.ob}", headers=w.gp1).status_code == 403
    short = client.post(
        f"/api/v1/patients/{FNR_B}/emergency-access", json={"reason": "akutt"}, headers=w.gp1
    )
    assert short.status_code == 400  # a reason a reviewer can judge
    r = client.post(
        f"/api/v1/patients/{FNR_B}/emergency-access",
        json={"reason": "Bevisstløs pasient på legevakten, trenger siste målinger", "minutes": 30},
        headers=w.gp1,
    )
    assert r.status_code == 201, r.text
    assert client.get(f"/fhir/Observation/{w.ob}", headers=w.gp1).status_code == 200
    found = client.get("/fhir/Observation", params={"patient": w.b}, headers=w.gp1).json()
    assert [e["resource"]["id"] for e in found.get("entry", [])] == [w.ob]
    assert client.get(f"/fhir/Observation/{w.oa}", headers=w.gp1).status_code == 200
    # every read under it is audited as emergency access; a normal read is not
    events = client.get("/fhir/AuditEvent", params={"_count": 200}).json()["entry"]
    reads = [
        e["resource"]
        for e in events
        if e["resource"].get("entity", [{}])[0].get("what", {}).get("reference")
        == f"Observation/{w.ob}"
        and e["resource"]["outcome"] == "0"
        and e["resource"]["action"] == "R"
    ]
    assert reads and all("purposeOfEvent" in ev for ev in reads), reads
    own = [
        e["resource"]
        for e in events
        if e["resource"].get("entity", [{}])[0].get("what", {}).get("reference")
        == f"Observation/{w.oa}"
        and e["resource"]["action"] == "R"
    ]
    assert own and all("purposeOfEvent" not in ev for ev in own)
    # listed for review
    listed = client.get("/api/v1/emergency-access").json()
    assert listed[0]["nationalId"] == FNR_B and "Bevisstløs" in listed[0]["reason"]
    assert client.get("/api/v1/emergency-access", headers=w.gp1).status_code == 403
    # when it runs out, the record closes again (in every process at its next request)
    with services.engine.begin() as conn:
        conn.execute(update(emergency_access_table).values(end=1))
        bump(conn)
    assert client.get(f"/fhir/Observation/{w.ob}", headers=w.gp1).status_code == 403


def test_nodrett_is_for_health_professionals(client) -> None:  # type: ignore[no-untyped-def]
    w = _world(client)
    body = {"reason": "Bevisstløs pasient på legevakten, trenger siste målinger"}
    vendor = client.post(
        "/api/v1/actors", json={"role": "vendor", "organization": {"orgnr": "841672119"}}
    ).json()["key"]
    r = client.post(
        f"/api/v1/patients/{FNR_B}/emergency-access",
        json=body,
        headers={"Authorization": f"Bearer {vendor}"},
    )
    assert r.status_code == 403
    assert client.post(f"/api/v1/patients/{FNR_B}/emergency-access", json=body).status_code == 422
    assert w.b


def test_the_review_list_refuses_a_since_that_is_not_a_time(client) -> None:  # type: ignore[no-untyped-def]
    r = client.get("/api/v1/emergency-access", params={"since": " "})
    assert r.status_code == 400 and "since" in r.text
    assert client.get("/api/v1/emergency-access", params={"since": "2026-01-01"}).status_code == 200
