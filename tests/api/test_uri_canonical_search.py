"""uri parameters with versioned canonicals (R4 search: ``url|version``): the version is a
version, not a system and a code; a search without a version matches every version."""

from __future__ import annotations

from typing import Any

from tests.api.test_meta_and_system_search import PROFILE_A, VICTIM_PROFILE, _post, _world
from tests.api.test_r4_types import condition
from tests.api.test_search_breadth import _ids

VS = "http://example.org/fhir/ValueSet/vitals"
PROFILE = "http://example.org/fhir/StructureDefinition/dho-condition"


def _value_set(version: str, url: str = VS) -> dict[str, Any]:
    return {"resourceType": "ValueSet", "url": url, "version": version, "status": "active"}


def test_versioned_canonicals(client) -> None:  # type: ignore[no-untyped-def]
    a, _b, _ca, _cb, _gp = _world(client)
    v1 = _post(client, _value_set("1.0"))
    v2 = _post(client, _value_set("2.0"))
    other = _post(client, _value_set("1.0", url=VS + "-other"))
    assert _ids(client, f"ValueSet?url={VS}") == {v1, v2}
    assert _ids(client, f"ValueSet?url={VS}|1.0") == {v1}
    assert _ids(client, f"ValueSet?url={VS}|2.0,{VS}-other|1.0") == {v2, other}
    assert _ids(client, f"ValueSet?url={VS}|3.0") == set()
    assert _ids(client, f"ValueSet?url:not={VS}|1.0") == {v2, other}
    # a canonical that carries its version (meta.profile) is found with and without it
    plain = _post(client, {**condition(a), "meta": {"profile": [PROFILE]}})
    versioned = _post(client, {**condition(a), "meta": {"profile": [PROFILE + "|2.1"]}})
    assert _ids(client, f"Condition?_profile={PROFILE}") == {plain, versioned}
    assert _ids(client, f"Condition?_profile={PROFILE}|2.1") == {versioned}
    assert _ids(client, f"Condition?_profile={PROFILE}|9") == set()
    # the prefix is the whole URL, not any URL starting with it
    assert _ids(client, "ValueSet?url=http://example.org/fhir/ValueSet/vit") == set()
    assert _ids(client, "ValueSet?url=http://example.org/fhir/ValueSet/vitals_%25") == set()
    for bad in ("ValueSet?url=|1.0", f"ValueSet?url={VS}|"):
        r = client.get(f"/fhir/{bad}")
        assert r.status_code == 400 and "url" in r.text, r.text


def test_the_capability_statement_says_uri(client) -> None:  # type: ignore[no-untyped-def]
    resources = {r["type"]: r for r in client.get("/fhir/metadata").json()["rest"][0]["resource"]}
    types = {p["name"]: p["type"] for p in resources["ValueSet"]["searchParam"]}
    assert types["url"] == "uri" and types["_profile"] == "uri" and types["_tag"] == "token"
    assert types["version"] == "token"


def test_a_gp_searching_by_canonicals_gets_its_own_patients_only(client) -> None:  # type: ignore[no-untyped-def]
    a, b, ca, cb, gp = _world(client)
    versioned = _post(client, {**condition(b), "meta": {"profile": [VICTIM_PROFILE + "|1.0"]}})

    def ids(query: str) -> set[str]:
        r = client.get(f"/fhir/{query}", headers=gp)
        assert r.status_code == 200, r.text
        return {e["resource"]["id"] for e in r.json().get("entry", [])}

    for query in (
        f"Condition?_profile={VICTIM_PROFILE}",
        f"Condition?_profile={VICTIM_PROFILE}|1.0",
        f"Patient?_profile={VICTIM_PROFILE}",
    ):
        assert ids(query) == set(), query
    assert ids(f"Condition?_profile:not={VICTIM_PROFILE}|1.0") == {ca}
    assert ids(f"Condition?_profile={PROFILE_A},{VICTIM_PROFILE}") == {ca}
    assert cb and versioned and a
