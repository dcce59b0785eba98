"""``Patient/{id}/*`` (every type of the compartment the actor may search, paged) and
``$meta-add``/``$meta-delete`` (a new version only when the meta changes, through the same
policy as an update): a GP never reaches another GP's patient through either."""

from __future__ import annotations

from typing import Any

from tests.api.test_meta_and_system_search import VICTIM_TAG, _meta, _post, _world
from tests.api.test_r4_types import condition
from tests.api.test_search_breadth import _bp

TAG = {"system": "urn:test:tags", "code": "reviewed"}


def _all(client, path: str, headers: dict[str, str] | None = None) -> list[tuple[str, str]]:  # type: ignore[no-untyped-def]
    """(type, id) of every match, following the next links."""
    out: list[tuple[str, str]] = []
    url: str | None = path
    pages = 0
    while url is not None:
        r = client.get(url, headers=headers or {})
        assert r.status_code == 200, r.text
        body = r.json()
        for e in body.get("entry", []):
            if e["search"]["mode"] == "match":
                out.append((e["resource"]["resourceType"], e["resource"]["id"]))
        url = next((lk["url"] for lk in body["link"] if lk["relation"] == "next"), None)
        pages += 1
        assert pages < 50
    return out


def test_the_whole_compartment_paged(client) -> None:  # type: ignore[no-untyped-def]
    a, b, ca, cb, _gp = _world(client)
    oa = _post(client, _bp(a, 120, 80))
    ob = _post(client, _bp(b, 173, 99))
    ca2 = _post(client, condition(a, code="44054006"))
    want = {("Patient", a), ("Condition", ca), ("Condition", ca2), ("Observation", oa)}
    assert set(_all(client, f"/fhir/Patient/{a}/*")) == want
    paged = _all(client, f"/fhir/Patient/{a}/*?_count=1")
    assert len(paged) == len(want) and set(paged) == want  # each once, none of B's
    assert ("Observation", ob) not in paged and ("Condition", cb) not in paged
    r = client.get(f"/fhir/Patient/{a}/*?_summary=count")
    assert r.status_code == 200 and r.json()["total"] == 4
    # a parameter every type knows narrows every type; one some type lacks is refused
    assert set(_all(client, f"/fhir/Patient/{a}/*?_id={ca},{oa}")) == {
        ("Condition", ca),
        ("Observation", oa),
    }
    assert _all(client, f"/fhir/Patient/{a}/*?_tag={VICTIM_TAG}") == []
    assert set(_all(client, f"/fhir/Patient/{a}/*?_type=Condition,Patient")) == {
        ("Patient", a),
        ("Condition", ca),
        ("Condition", ca2),
    }
    assert set(_all(client, f"/fhir/Patient/{a}/*?_type=Condition&code=44054006")) == {
        ("Condition", ca2)
    }
    for bad in ("code=38341003", "_type=Organization", "_type=Nonsense", "nonsense=1"):
        r = client.get(f"/fhir/Patient/{a}/*?{bad}")
        assert r.status_code == 400, (bad, r.text)
        assert r.json()["resourceType"] == "OperationOutcome"
    r = client.get(f"/fhir/Patient/{a}/*?_count=x")
    assert r.status_code == 400


def test_a_gp_sees_only_its_own_patients_compartment(client) -> None:  # type: ignore[no-untyped-def]
    a, b, ca, cb, gp = _world(client)
    oa = _post(client, _bp(a, 120, 80))
    ob = _post(client, _bp(b, 173, 99))
    mine = set(_all(client, f"/fhir/Patient/{a}/*", gp))
    assert mine == {("Patient", a), ("Condition", ca), ("Observation", oa)}
    for query in ("", "?_count=1", f"?_id={cb},{ob},{b}", f"?_tag={VICTIM_TAG}"):
        r = client.get(f"/fhir/Patient/{b}/*{query}", headers=gp)
        assert r.status_code == 200, r.text
        entries = str(r.json().get("entry", []))  # the links repeat the client's own URL
        assert b not in entries and cb not in entries and ob not in entries
        assert "'value': 173" not in entries and VICTIM_TAG not in entries
    r = client.get(f"/fhir/Patient/{b}/*?_type=Condition,Observation", headers=gp)
    assert r.status_code == 200 and r.json().get("entry", []) == []
    r = client.get(f"/fhir/Patient/{a}/*?_type=AuditEvent", headers=gp)
    assert r.status_code == 403
    r = client.get(f"/fhir/Patient/{b}/*?_summary=count", headers=gp)
    assert r.status_code == 200 and r.json()["total"] == 0
    # the GP's own patient's compartment, asked with the victim's ids, stays the GP's
    assert _all(client, f"/fhir/Patient/{a}/*?_id={cb},{ob},{b}", gp) == []


def test_meta_add_and_delete_version_only_on_change(client) -> None:  # type: ignore[no-untyped-def]
    a, _b, ca, _cb, _gp = _world(client)
    before = client.get(f"/fhir/Condition/{ca}").json()
    body = _params({"tag": [TAG]})
    r = client.post(f"/fhir/Condition/{ca}/$meta-add", json=body)
    meta = _meta(r)
    assert meta["versionId"] == "2" and TAG in meta["tag"] and len(meta["tag"]) == 2
    assert meta["profile"] == before["meta"]["profile"]
    after = client.get(f"/fhir/Condition/{ca}").json()
    assert {k: v for k, v in after.items() if k != "meta"} == {
        k: v for k, v in before.items() if k != "meta"
    }
    assert _search(client, "Condition?_tag=reviewed") == {ca}
    # the same tag again (display differs: identity is system and code): no new version
    again = _params({"tag": [{**TAG, "display": "Gjennomgått"}]})
    assert _meta(client.post(f"/fhir/Condition/{ca}/$meta-add", json=again))["versionId"] == "2"
    r = client.post(f"/fhir/Condition/{ca}/$meta-delete", json=body)
    meta = _meta(r)
    assert meta["versionId"] == "3" and TAG not in meta["tag"]
    assert _search(client, "Condition?_tag=reviewed") == set()
    assert _meta(client.post(f"/fhir/Condition/{ca}/$meta-delete", json=body))["versionId"] == "3"
    profile = before["meta"]["profile"][0]
    meta = _meta(
        client.post(f"/fhir/Condition/{ca}/$meta-delete", json=_params({"profile": [profile]}))
    )
    assert "profile" not in meta and meta["versionId"] == "4"
    history = client.get(f"/fhir/Condition/{ca}/_history").json()
    assert history["total"] == 4


def test_a_final_observation_takes_meta_but_not_content_changes(client) -> None:  # type: ignore[no-untyped-def]
    a, _b, _ca, _cb, _gp = _world(client)
    oa = _post(client, _bp(a, 120, 80))
    meta = _meta(client.post(f"/fhir/Observation/{oa}/$meta-add", json=_params({"tag": [TAG]})))
    assert meta["versionId"] == "2" and meta["tag"] == [TAG]
    current = client.get(f"/fhir/Observation/{oa}").json()
    assert current["status"] == "final" and current["component"][0]["valueQuantity"]["value"] == 120
    # a PUT changing only the marks is the same change; one changing the value is not
    current["meta"] = {"security": [{"system": "urn:x", "code": "R"}]}
    assert client.put(f"/fhir/Observation/{oa}", json=current).status_code == 200
    current["component"][0]["valueQuantity"]["value"] = 121
    r = client.put(f"/fhir/Observation/{oa}", json=current)
    assert r.status_code == 409 and "status" in r.text


def test_a_gp_changes_the_meta_only_of_its_own_patients(client) -> None:  # type: ignore[no-untyped-def]
    a, b, ca, cb, gp = _world(client)
    ob = _post(client, _bp(b, 173, 99))
    for rtype, rid in (("Condition", cb), ("Patient", b), ("Observation", ob)):
        for op in ("$meta-add", "$meta-delete"):
            marks = {
                "tag": [
                    TAG if op == "$meta-add" else {"system": "urn:test:tags", "code": VICTIM_TAG}
                ]
            }
            r = client.post(f"/fhir/{rtype}/{rid}/{op}", json=_params(marks), headers=gp)
            assert r.status_code == 403, r.text
            assert VICTIM_TAG not in r.text and b not in r.text
        assert client.get(f"/fhir/{rtype}/{rid}").json()["meta"]["versionId"] == "1"
    r = client.post(f"/fhir/Condition/{ca}/$meta-add", json=_params({"tag": [TAG]}), headers=gp)
    assert _meta(r)["versionId"] == "2"


def test_bad_meta_bodies_are_refused_naming_the_element(client) -> None:  # type: ignore[no-untyped-def]
    a, _b, ca, _cb, _gp = _world(client)
    url = f"/fhir/Condition/{ca}/$meta-add"
    cases: list[tuple[Any, str]] = [
        ({"resourceType": "Patient"}, "Parameters"),
        ({"resourceType": "Parameters"}, "meta"),
        ({"resourceType": "Parameters", "parameter": [{"name": "x", "valueString": "y"}]}, "'x'"),
        ({"resourceType": "Parameters", "parameter": [{"name": "meta"}]}, "valueMeta"),
        (_params({"versionId": "9"}), "versionId"),
        (_params({"tag": [{"system": "urn:x"}]}), "tag[0]"),
        (_params({"tag": {"code": "x"}}), "tag"),
        (_params({"profile": [7]}), "profile[0]"),
        ([1, 2], "Parameters"),
    ]
    for body, named in cases:
        r = client.post(url, json=body)
        assert r.status_code == 400, (body, r.text)
        assert r.json()["resourceType"] == "OperationOutcome" and named in r.text, (body, r.text)
    assert client.get(f"/fhir/Condition/{ca}").json()["meta"]["versionId"] == "1"
    r = client.post("/fhir/Condition/nope/$meta-add", json=_params({"tag": [TAG]}))
    assert r.status_code == 404
    r = client.post("/fhir/Nonsense/x/$meta-add", json=_params({"tag": [TAG]}))
    assert r.status_code == 404
    ops = {
        o["name"]
        for res in client.get("/fhir/metadata").json()["rest"][0]["resource"]
        if res["type"] == "Condition"
        for o in res.get("operation", [])
    }
    assert {"meta-add", "meta-delete"} <= ops


def _params(meta: dict[str, Any]) -> dict[str, Any]:
    return {"resourceType": "Parameters", "parameter": [{"name": "meta", "valueMeta": meta}]}


def _search(client, query: str) -> set[str]:  # type: ignore[no-untyped-def]
    r = client.get(f"/fhir/{query}")
    assert r.status_code == 200, r.text
    return {e["resource"]["id"] for e in r.json().get("entry", [])}
