"""``_tag``, ``_profile`` and ``_security`` searched on every type from the index, and
``$meta`` of a type and of the server read from the same rows (no scan of the resources):
over a whole Synthea patient, with an update and a delete moving the rows, and a GP's
``$meta`` and searches covering only what the GP may read."""

from __future__ import annotations

import json
from typing import Any

from tests.api.test_fhir_corpus import SYNTHEA
from tests.api.test_meta_and_system_search import (
    PROFILE_A,
    VICTIM_PROFILE,
    VICTIM_TAG,
    _meta,
    _post,
    _tags,
    _world,
)
from tests.api.test_r4_types import condition
from tests.api.test_search_breadth import _ids

SYNTHEA_TAG = "https://smarthealthit.org/tags|synthea-5-2019"
CONFIDENTIALITY = "http://terminology.hl7.org/CodeSystem/v3-Confidentiality"


def test_a_synthea_patient_by_its_tag(client) -> None:  # type: ignore[no-untyped-def]
    bundle = json.loads(SYNTHEA[0].read_text(encoding="utf-8"))
    r = client.post("/fhir", json=bundle)
    assert r.status_code == 200, r.text[:2000]
    by_type: dict[str, int] = {}
    for e in bundle["entry"]:
        t = e["resource"]["resourceType"]
        by_type[t] = by_type.get(t, 0) + 1
    for rtype, n in by_type.items():
        assert len(_ids(client, f"{rtype}?_tag={SYNTHEA_TAG}&_count=500")) == n, rtype
        assert _ids(client, f"{rtype}?_tag:not={SYNTHEA_TAG}") == set(), rtype
    assert _ids(client, "Observation?_tag=synthea-5-2019&_count=1") != set()
    assert _ids(client, "Observation?_tag=urn:other|synthea-5-2019") == set()
    system = _meta(client.get("/fhir/$meta"))
    assert system["tag"] == [{"system": "https://smarthealthit.org/tags", "code": "synthea-5-2019"}]
    assert _meta(client.get("/fhir/Encounter/$meta")) == system


def test_profile_and_security_searches(client) -> None:  # type: ignore[no-untyped-def]
    a, b, ca, cb, _gp = _world(client)
    assert _ids(client, f"Condition?_profile={PROFILE_A}") == {ca}
    assert _ids(client, f"Patient?_profile={VICTIM_PROFILE}") == {b}
    assert _ids(client, f"Condition?_security={CONFIDENTIALITY}|N") == {ca, cb}
    assert _ids(client, "Condition?_security=R") == set()
    assert _ids(client, f"Condition?_tag={VICTIM_TAG}") == {cb}
    assert _ids(client, "Condition?_tag:missing=true") == set()
    plain = _post(client, condition(a))
    assert _ids(client, "Condition?_tag:missing=true") == {plain}
    assert _ids(client, f"Condition?_profile:missing=false&_tag={VICTIM_TAG}") == {cb}


def test_an_update_and_a_delete_move_the_meta_rows(client) -> None:  # type: ignore[no-untyped-def]
    _a, b, _ca, cb, _gp = _world(client)
    body = {**client.get(f"/fhir/Condition/{cb}").json()}
    body["meta"] = {"tag": [{"system": "urn:test:tags", "code": "moved"}]}
    assert client.put(f"/fhir/Condition/{cb}", json=body).status_code == 200
    assert _ids(client, f"Condition?_tag={VICTIM_TAG}") == set()
    assert _ids(client, "Condition?_tag=moved") == {cb}
    assert VICTIM_TAG not in _tags(_meta(client.get("/fhir/Condition/$meta")))
    assert client.delete(f"/fhir/Condition/{cb}").status_code == 200
    assert _ids(client, "Condition?_tag=moved") == set()
    assert "moved" not in _tags(_meta(client.get("/fhir/Condition/$meta")))
    assert VICTIM_TAG in _tags(_meta(client.get("/fhir/Patient/$meta")))  # still on b
    assert b


def test_a_gp_meta_finds_its_own_mark_behind_many_refused_carriers(client) -> None:  # type: ignore[no-untyped-def]
    """More of the victim's resources carry a shared tag than ``$meta`` tries by id first
    (``fhir_meta.PROBE``): the GP's own resource with it is still found, by the GP's search,
    and the victim's own tags stay out."""
    from interop.api.fhir_meta import PROBE

    a, b, _ca, _cb, gp = _world(client)
    shared = {"tag": [{"system": "urn:test:tags", "code": "shared"}]}
    entries: list[dict[str, Any]] = [
        {
            "resource": {**condition(b), "meta": shared},
            "request": {"method": "POST", "url": "Condition"},
        }
        for _ in range(PROBE + 5)
    ]
    r = client.post(
        "/fhir", json={"resourceType": "Bundle", "type": "transaction", "entry": entries}
    )
    assert r.status_code == 200, r.text[:500]
    own = _post(client, {**condition(a), "meta": shared})
    meta = _meta(client.get("/fhir/Condition/$meta", headers=gp))
    assert _tags(meta) == {"a-tag", "shared"}
    assert VICTIM_PROFILE not in meta["profile"]
    r = client.get("/fhir/Condition?_tag=shared", headers=gp)
    assert {e["resource"]["id"] for e in r.json()["entry"]} == {own}
    r = client.get(f"/fhir/Condition?_tag={VICTIM_TAG}", headers=gp)
    assert r.status_code == 200 and r.json().get("entry", []) == []


def test_too_many_distinct_marks_are_refused(client) -> None:  # type: ignore[no-untyped-def]
    from interop.store.meta_index import MAX_MARKS

    tags = [{"system": "urn:test:tags", "code": f"t{i}"} for i in range(MAX_MARKS + 1)]
    _post(client, {"resourceType": "Basic", "code": {"text": "x"}, "meta": {"tag": tags}})
    r = client.get("/fhir/Basic/$meta")
    assert r.status_code == 400, r.text
    assert r.json()["issue"][0]["code"] == "too-costly"
    assert _ids(client, "Basic?_tag=t17") != set()  # the search by one of them is served
