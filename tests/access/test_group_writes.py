"""A resource about several patients (a Group's members) is written only by an actor who may
write for every one of them, as it is read only by one who may read every one of them (and a
refused read does not name the member the actor may not see).

Checked from outside with a GP's key: the GP's patient A first and patient B (another GP's)
second, so that the Group's compartment (its first member) is A's.
"""

from __future__ import annotations

from typing import Any

FNR = "urn:oid:2.16.578.1.12.4.1.4.1"
HPR = "urn:oid:2.16.578.1.12.4.1.4.4"
GP_A, GP_B = "9144889", "1234567"


def _post(
    client: Any, path: str, body: dict[str, Any], headers: dict[str, str] | None = None
) -> Any:
    return client.post(path, json=body, headers=headers or {})


def _id(r: Any) -> str:
    assert r.status_code == 201, r.text
    return str(r.json()["id"])


def _world(client: Any) -> dict[str, Any]:
    gp = {
        hpr: _id(
            _post(
                client,
                "/fhir/Practitioner",
                {"resourceType": "Practitioner", "identifier": [{"system": HPR, "value": hpr}]},
            )
        )
        for hpr in (GP_A, GP_B)
    }

    def patient(fnr: str, hpr: str) -> str:
        body = {
            "resourceType": "Patient",
            "identifier": [{"system": FNR, "value": fnr}],
            "generalPractitioner": [{"reference": f"Practitioner/{gp[hpr]}"}],
        }
        return _id(_post(client, "/fhir/Patient", body))

    a, b = patient("13031353453", GP_A), patient("02028099471", GP_B)
    r = client.post("/api/v1/actors", json={"role": "gp", "hpr": GP_A})
    assert r.status_code == 201, r.text
    return {"a": a, "b": b, "gp": {"Authorization": f"Bearer {r.json()['key']}"}}


def _group(*members: str, rid: str | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {
        "resourceType": "Group",
        "type": "person",
        "actual": True,
        "member": [{"entity": {"reference": f"Patient/{m}"}} for m in members],
    }
    if rid:
        body["id"] = rid
    return body


def test_a_group_naming_another_patient_is_not_written(client) -> None:  # type: ignore[no-untyped-def]
    w = _world(client)
    a, b, gp = w["a"], w["b"], w["gp"]
    # the GP's own patients only: written
    own = _id(_post(client, "/fhir/Group", _group(a), gp))
    # naming B beside A: refused on every door
    assert _post(client, "/fhir/Group", _group(a, b), gp).status_code == 403
    r = client.put(f"/fhir/Group/{own}", json=_group(a, b, rid=own), headers=gp)
    assert r.status_code == 403, r.text
    r = client.post(
        "/fhir",
        json={
            "resourceType": "Bundle",
            "type": "transaction",
            "entry": [{"request": {"method": "POST", "url": "Group"}, "resource": _group(a, b)}],
        },
        headers=gp,
    )
    assert r.status_code == 403, r.text
    stored = client.get(f"/fhir/Group/{own}").json()
    assert [m["entity"]["reference"] for m in stored["member"]] == [f"Patient/{a}"]
    total = client.get(f"/fhir/Group?member=Patient/{b}&_summary=count").json()["total"]
    assert total == 0, "a Group naming B was stored"


def test_a_group_the_actor_may_not_read_is_not_rewritten(client) -> None:  # type: ignore[no-untyped-def]
    w = _world(client)
    a, b, gp = w["a"], w["b"], w["gp"]
    theirs = _id(_post(client, "/fhir/Group", _group(a, b)))  # by the admin
    for path in (f"/fhir/Group/{theirs}", f"/fhir/Group/{theirs}/_history/1"):
        r = client.get(path, headers=gp)
        # refused, without telling who the other member is
        assert r.status_code == 403 and b not in r.text, r.text
    r = client.put(f"/fhir/Group/{theirs}", json=_group(a, rid=theirs), headers=gp)
    assert r.status_code == 403, r.text
    stored = client.get(f"/fhir/Group/{theirs}").json()
    assert stored["meta"]["versionId"] == "1"
