"""``$meta`` of a type and of the whole server, and the system search's ``_elements``,
``_summary`` and ``_summary=count``: each answers what a type search by the same actor would,
so a GP never learns anything of another GP's patient through them."""

from __future__ import annotations

from typing import Any

import pytest

from tests.api.test_r4_types import condition

FNR = "urn:oid:2.16.578.1.12.4.1.4.1"
HPR = "urn:oid:2.16.578.1.12.4.1.4.4"
GP_A, GP_B = "9144889", "1234567"
PROFILE_A = "http://example.org/StructureDefinition/a-profile"
VICTIM_PROFILE = "http://example.org/StructureDefinition/victim-profile"
VICTIM_TAG = "victim-tag-417"


def _post(client, body: dict[str, Any]) -> str:  # type: ignore[no-untyped-def]
    r = client.post(f"/fhir/{body['resourceType']}", json=body)
    assert r.status_code == 201, r.text
    return str(r.json()["id"])


def _tagged(resource: dict[str, Any], tag: str, profile: str) -> dict[str, Any]:
    return {
        **resource,
        "meta": {
            "profile": [profile],
            "tag": [{"system": "urn:test:tags", "code": tag}],
            "security": [
                {"system": "http://terminology.hl7.org/CodeSystem/v3-Confidentiality", "code": "N"}
            ],
        },
    }


def _world(client):  # type: ignore[no-untyped-def]
    """Patient A (GP A's), patient B (GP B's, the victim), a Condition each, tagged apart;
    returns (a, b, condition of a, condition of b, GP A's headers)."""
    gps = {
        hpr: _post(
            client, {"resourceType": "Practitioner", "identifier": [{"system": HPR, "value": hpr}]}
        )
        for hpr in (GP_A, GP_B)
    }

    def patient(fnr: str, gp: str, tag: str, profile: str) -> str:
        body = {
            "resourceType": "Patient",
            "identifier": [{"system": FNR, "value": fnr}],
            "name": [{"family": "Nordmann", "given": ["Kari"]}],
            "birthDate": "2013-03-13",
            "generalPractitioner": [{"reference": f"Practitioner/{gps[gp]}"}],
        }
        return _post(client, _tagged(body, tag, profile))

    a = patient("13031353453", GP_A, "a-tag", PROFILE_A)
    b = patient("02028099471", GP_B, VICTIM_TAG, VICTIM_PROFILE)
    ca = _post(client, _tagged(condition(a), "a-tag", PROFILE_A))
    cb = _post(client, _tagged(condition(b, code="44054006"), VICTIM_TAG, VICTIM_PROFILE))
    r = client.post("/api/v1/actors", json={"role": "gp", "hpr": GP_A})
    assert r.status_code == 201, r.text
    return a, b, ca, cb, {"Authorization": f"Bearer {r.json()['key']}"}


def _meta(response) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["resourceType"] == "Parameters"
    value: dict[str, Any] = body["parameter"][0]["valueMeta"]
    return value


def _tags(meta: dict[str, Any]) -> set[str]:
    return {t["code"] for t in meta.get("tag", [])}


def test_type_and_system_meta_cover_what_is_stored(client) -> None:  # type: ignore[no-untyped-def]
    a, b, ca, cb, _gp = _world(client)
    meta = _meta(client.get("/fhir/Condition/$meta"))
    assert set(meta["profile"]) == {PROFILE_A, VICTIM_PROFILE}
    assert _tags(meta) == {"a-tag", VICTIM_TAG}
    assert len(meta["security"]) == 1  # the same label on both, listed once
    assert _meta(client.post("/fhir/Condition/$meta")) == meta
    system = _meta(client.get("/fhir/$meta"))
    assert set(system["profile"]) == {PROFILE_A, VICTIM_PROFILE}
    assert _tags(system) == {"a-tag", VICTIM_TAG}
    assert _meta(client.get("/fhir/Encounter/$meta")) == {}
    assert _tags(_meta(client.get(f"/fhir/Condition/{ca}/$meta"))) == {"a-tag"}
    r = client.get("/fhir/Nonsense/$meta")
    assert r.status_code == 404 and r.json()["resourceType"] == "OperationOutcome"


def test_a_gp_meta_covers_only_what_the_gp_may_read(client) -> None:  # type: ignore[no-untyped-def]
    a, b, ca, cb, gp = _world(client)
    for path in ("/fhir/Condition/$meta", "/fhir/Patient/$meta", "/fhir/$meta"):
        r = client.get(path, headers=gp)
        meta = _meta(r)
        assert _tags(meta) == {"a-tag"}, path
        assert meta["profile"] == [PROFILE_A], path
        assert VICTIM_TAG not in r.text and VICTIM_PROFILE not in r.text
        assert b not in r.text and cb not in r.text
    assert client.get(f"/fhir/Condition/{cb}/$meta", headers=gp).status_code == 403
    # a type the policy keeps from a GP is refused, not answered empty
    assert client.get("/fhir/AuditEvent/$meta", headers=gp).status_code == 403


def test_system_search_applies_elements_and_summary(client) -> None:  # type: ignore[no-untyped-def]
    a, b, ca, cb, _gp = _world(client)
    r = client.get("/fhir?_type=Patient,Condition&_elements=subject,name")
    assert r.status_code == 200, r.text
    entries = r.json()["entry"]
    assert len(entries) == 4
    for e in entries:
        res = e["resource"]
        assert "SUBSETTED" in {t["code"] for t in res["meta"]["tag"]}
        assert "birthDate" not in res and "onsetDateTime" not in res
        assert ("name" in res) == (res["resourceType"] == "Patient")
        assert ("subject" in res) == (res["resourceType"] == "Condition")
    r = client.get("/fhir?_type=Patient&_summary=true")
    res = r.json()["entry"][0]["resource"]
    assert "birthDate" in res and "SUBSETTED" in {t["code"] for t in res["meta"]["tag"]}
    r = client.get("/fhir?_type=Patient,Condition&_summary=count")
    assert r.status_code == 200, r.text
    assert r.json()["total"] == 4 and "entry" not in r.json()
    r = client.get("/fhir?_type=Condition&_summary=count&code=44054006")
    assert r.json()["total"] == 1


def test_system_search_subset_and_count_for_a_gp(client) -> None:  # type: ignore[no-untyped-def]
    a, b, ca, cb, gp = _world(client)
    r = client.get("/fhir?_type=Patient,Condition&_summary=count", headers=gp)
    assert r.status_code == 200, r.text
    assert r.json()["total"] == 2
    r = client.get(f"/fhir?_type=Condition&_summary=count&patient={b}", headers=gp)
    assert r.json()["total"] == 0
    r = client.get("/fhir?_type=Patient,Condition&_elements=id", headers=gp)
    assert {e["resource"]["id"] for e in r.json()["entry"]} == {a, ca}
    assert b not in r.text and cb not in r.text and VICTIM_TAG not in r.text


@pytest.mark.parametrize("query", ["_summary=nonsense", "_elements="])
def test_system_search_odd_subset_never_fails(client, query) -> None:  # type: ignore[no-untyped-def]
    _world(client)
    r = client.get(f"/fhir?_type=Condition&{query}")
    assert r.status_code in (200, 400), r.text
    assert r.json()["resourceType"] in ("Bundle", "OperationOutcome")


def test_the_capability_statement_names_meta_once_per_type_and_on_the_system(client) -> None:  # type: ignore[no-untyped-def]
    cs = client.get("/fhir/metadata").json()
    rest = cs["rest"][0]
    assert {"name": "meta", "definition": META} in rest["operation"]
    for res in rest["resource"]:
        names = [op["name"] for op in res.get("operation", [])]
        assert names.count("meta") == 1, res["type"]
        assert len(names) == len(set(names)), res["type"]
    # what the statement claims is served: a type and the system answer $meta
    assert client.get("/fhir/Condition/$meta").status_code == 200
    assert client.get("/fhir/$meta").status_code == 200


META = "http://hl7.org/fhir/OperationDefinition/Resource-meta"
