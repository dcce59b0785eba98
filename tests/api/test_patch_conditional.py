"""PATCH (JSON Patch, FHIRPath Patch) and conditional update/patch/delete."""

from __future__ import annotations

from typing import Any

from tests.api.test_fhir_crud import observation, patient

JSON_PATCH = {"Content-Type": "application/json-patch+json"}


def _create(client, resource: dict[str, Any]) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    r = client.post(f"/fhir/{resource['resourceType']}", json=resource)
    assert r.status_code == 201, r.text
    return dict(r.json())


def _op(kind: str, path: str, **parts: Any) -> dict[str, Any]:
    out = [{"name": "type", "valueCode": kind}, {"name": "path", "valueString": path}]
    for name, value in parts.items():
        out.append({"name": name, **value})
    return {"name": "operation", "part": out}


def test_json_patch_with_if_match(client) -> None:  # type: ignore[no-untyped-def]
    p = _create(client, patient())
    ops = [
        {"op": "replace", "path": "/gender", "value": "male"},
        {"op": "add", "path": "/name/0/given/-", "value": "Ola"},
    ]
    r = client.patch(
        f"/fhir/Patient/{p['id']}", json=ops, headers={**JSON_PATCH, "If-Match": 'W/"1"'}
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["gender"] == "male"
    assert body["name"][0]["given"] == ["Kari", "Ola"]
    assert body["meta"]["versionId"] == "2"
    assert r.headers["etag"] == 'W/"2"'
    # a stale If-Match is refused and nothing is written
    r = client.patch(
        f"/fhir/Patient/{p['id']}",
        json=[{"op": "replace", "path": "/gender", "value": "female"}],
        headers={**JSON_PATCH, "If-Match": 'W/"1"'},
    )
    assert r.status_code == 412
    assert client.get(f"/fhir/Patient/{p['id']}").json()["gender"] == "male"


def test_bad_patches_are_4xx_and_write_nothing(client) -> None:  # type: ignore[no-untyped-def]
    p = _create(client, patient())
    url = f"/fhir/Patient/{p['id']}"
    cases = [
        ([{"op": "jump", "path": "/gender"}], 400),
        ([{"op": "remove", "path": "/telecom"}], 422),
        ([{"op": "test", "path": "/gender", "value": "male"}], 422),
        ({"op": "replace"}, 400),
        ([{"op": "replace", "path": "/gender", "value": "robot"}], 422),  # breaks validation
        ([{"op": "replace", "path": "/id", "value": "other"}], 422),
    ]
    for ops, status in cases:
        r = client.patch(url, json=ops, headers=JSON_PATCH)
        assert r.status_code == status, (ops, r.text)
        assert r.json()["resourceType"] == "OperationOutcome"
    assert client.get(url).json()["meta"]["versionId"] == "1"
    r = client.patch("/fhir/Patient/nope", json=[], headers=JSON_PATCH)
    assert r.status_code == 404


def test_fhirpath_patch(client) -> None:  # type: ignore[no-untyped-def]
    p = _create(client, patient())
    params = {
        "resourceType": "Parameters",
        "parameter": [
            _op("replace", "Patient.gender", value={"valueCode": "other"}),
            _op(
                "add",
                "Patient",
                name={"valueString": "telecom"},
                value={"valueContactPoint": {"system": "phone", "value": "+4712345678"}},
            ),
            _op(
                "insert",
                "Patient.name",
                index={"valueInteger": 0},
                value={"valueHumanName": {"family": "Hansen"}},
            ),
            _op(
                "add",
                "Patient.name.where(family='Nordmann')",
                name={"valueString": "text"},
                value={"valueString": "Kari Nordmann"},
            ),
            _op("delete", "Patient.birthDate"),
        ],
    }
    r = client.patch(f"/fhir/Patient/{p['id']}", json=params)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["gender"] == "other"
    assert body["telecom"] == [{"system": "phone", "value": "+4712345678"}]  # repeats: a list
    assert [n["family"] for n in body["name"]] == ["Hansen", "Nordmann"]
    assert body["name"][1]["text"] == "Kari Nordmann"
    assert "birthDate" not in body
    bad = {
        "resourceType": "Parameters",
        "parameter": [_op("replace", "Patient.name.exists()", value={"valueString": "x"})],
    }
    r = client.patch(f"/fhir/Patient/{p['id']}", json=bad)
    assert r.status_code == 400 and "not supported" in r.text


def test_final_observation_patch_follows_the_put_rules(client) -> None:  # type: ignore[no-untyped-def]
    p = _create(client, patient())
    o = _create(client, observation(p["id"]))
    url = f"/fhir/Observation/{o['id']}"
    r = client.patch(
        url,
        json=[{"op": "replace", "path": "/valueQuantity/value", "value": 99}],
        headers=JSON_PATCH,
    )
    assert r.status_code == 409, r.text
    r = client.patch(
        url,
        json=[
            {"op": "replace", "path": "/valueQuantity/value", "value": 99},
            {"op": "replace", "path": "/status", "value": "corrected"},
        ],
        headers=JSON_PATCH,
    )
    assert r.status_code == 200, r.text
    assert r.json()["valueQuantity"]["value"] == 99
    other = _create(client, patient("02028099471"))
    r = client.patch(
        url,
        json=[
            {"op": "replace", "path": "/subject/reference", "value": f"Patient/{other['id']}"},
            {"op": "replace", "path": "/status", "value": "amended"},
        ],
        headers=JSON_PATCH,
    )
    assert r.status_code == 422


def test_conditional_update_outcomes(client) -> None:  # type: ignore[no-untyped-def]
    fnr = "urn:oid:2.16.578.1.12.4.1.4.1|13031353453"
    # 0 matches: created
    r = client.put(f"/fhir/Patient?identifier={fnr}", json=patient())
    assert r.status_code == 201, r.text
    pid = r.json()["id"]
    # 1 match: updated in place
    r = client.put(f"/fhir/Patient?identifier={fnr}", json=patient(family="Hansen"))
    assert r.status_code == 200, r.text
    assert r.json()["id"] == pid and r.json()["meta"]["versionId"] == "2"
    # the body's id must be the match's
    r = client.put(f"/fhir/Patient?identifier={fnr}", json={**patient(), "id": "other"})
    assert r.status_code == 400
    # many matches: 412
    _create(client, patient("02028099471", family="Hansen"))
    r = client.put("/fhir/Patient?family=Hansen", json=patient(family="Hansen"))
    assert r.status_code == 412
    # no criteria, unknown parameter
    assert client.put("/fhir/Patient", json=patient()).status_code == 400
    assert client.put("/fhir/Patient?shoe-size=4", json=patient()).status_code == 400


def test_conditional_patch_and_delete(client) -> None:  # type: ignore[no-untyped-def]
    fnr = "urn:oid:2.16.578.1.12.4.1.4.1|13031353453"
    p = _create(client, patient())
    r = client.patch(
        f"/fhir/Patient?identifier={fnr}",
        json=[{"op": "replace", "path": "/gender", "value": "male"}],
        headers=JSON_PATCH,
    )
    assert r.status_code == 200 and r.json()["gender"] == "male"
    r = client.patch(
        "/fhir/Patient?identifier=x|y",
        json=[{"op": "replace", "path": "/gender", "value": "male"}],
        headers=JSON_PATCH,
    )
    assert r.status_code == 404
    flag = {
        "resourceType": "Flag",
        "status": "active",
        "code": {"text": "ingen data"},
        "subject": {"reference": f"Patient/{p['id']}"},
    }
    f1 = _create(client, flag)
    _create(client, {**flag, "status": "inactive"})
    assert client.delete(f"/fhir/Flag?patient={p['id']}").status_code == 412
    r = client.delete(f"/fhir/Flag?patient={p['id']}&status=active")
    assert r.status_code == 200, r.text
    assert client.get(f"/fhir/Flag/{f1['id']}").status_code == 410
    r = client.delete(f"/fhir/Flag?patient={p['id']}&status=active")
    assert r.status_code == 200 and "nothing deleted" in r.text


def test_merge_patch(client) -> None:  # type: ignore[no-untyped-def]
    p = _create(client, patient())
    r = client.patch(f"/fhir/Patient/{p['id']}", json={"active": False, "birthDate": None})
    assert r.status_code == 200, r.text
    assert r.json()["active"] is False and "birthDate" not in r.json()
    r = client.patch(
        f"/fhir/Patient/{p['id']}",
        json={"gender": "robot"},
        headers={"Content-Type": "application/merge-patch+json"},
    )
    assert r.status_code == 422
    r = client.patch(
        f"/fhir/Patient/{p['id']}", content=b"x", headers={"Content-Type": "text/plain"}
    )
    assert r.status_code == 415
