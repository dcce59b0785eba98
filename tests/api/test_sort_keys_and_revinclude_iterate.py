"""Several ``_sort`` keys (each its own direction, ties in id order, paged with the same
order) and ``_revinclude:iterate`` (bounded like ``_include:iterate``): what the iteration
reaches goes through the access policy like any include, so a GP never gets another GP's
patient's data through it."""

from __future__ import annotations

from typing import Any

from tests.api.test_compartment_all_and_meta_write import _all
from tests.api.test_meta_and_system_search import _post, _world
from tests.api.test_r4_types import condition
from tests.api.test_search_breadth import _bp


def _ordered(client, query: str, headers: dict[str, str] | None = None) -> list[str]:  # type: ignore[no-untyped-def]
    r = client.get(f"/fhir/{query}", headers=headers or {})
    assert r.status_code == 200, r.text
    return [
        e["resource"]["id"] for e in r.json().get("entry", []) if e["search"]["mode"] == "match"
    ]


def test_several_sort_keys_each_with_its_direction(client) -> None:  # type: ignore[no-untyped-def]
    a, _b, ca, _cb, _gp = _world(client)  # ca: 38341003, onset 2024-02-01
    c1 = _post(client, condition(a, code="38341003", onset="2024-01-01"))
    c2 = _post(client, condition(a, code="38341003", onset="2024-03-01"))
    c3 = _post(client, condition(a, code="44054006", onset="2024-02-15"))
    c4 = _post(client, condition(a, code="38341003", onset="2024-03-01"))
    tied = sorted([c2, c4])
    cases = {
        "code,-onset-date": [*tied, ca, c1, c3],
        "-code,onset-date": [c3, c1, ca, *reversed(tied)],
        "code,onset-date,-_id": [c1, ca, *reversed(tied), c3],
        "-onset-date,code": [*reversed(tied), c3, ca, c1],
    }
    for sort, want in cases.items():
        query = f"Condition?patient={a}&_sort={sort}"
        assert _ordered(client, query) == want, sort
        paged = [i for _t, i in _all(client, f"/fhir/{query}&_count=1")]
        assert paged == want, sort
    # an Observation's date as a later key, from its own index
    o1 = _post(client, _bp(a, 120, 80))
    o2 = _post(client, _bp(a, 121, 81))
    got = [
        i for _t, i in _all(client, f"/fhir/Observation?patient={a}&_sort=status,-date&_count=1")
    ]
    assert sorted(got) == sorted([o1, o2])
    r = client.get(f"/fhir/Condition?patient={a}&_sort=code,onset-date&_cursor=WzEsMl0")
    assert r.status_code == 400 and "_cursor" in r.text


def _encounter(pid: str) -> dict[str, Any]:
    return {
        "resourceType": "Encounter",
        "status": "finished",
        "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"},
        "subject": {"reference": f"Patient/{pid}"},
    }


def test_revinclude_iterate_follows_what_refers_to_the_included(client) -> None:  # type: ignore[no-untyped-def]
    a, b, ca, cb, gp = _world(client)
    ea = _post(client, _encounter(a))
    in_encounter = _post(
        client, {**condition(a, code="44054006"), "encounter": {"reference": f"Encounter/{ea}"}}
    )
    # the victim's Condition names A's Encounter: the iteration reaches it in the store
    victim = _post(
        client, {**condition(b, code="195967001"), "encounter": {"reference": f"Encounter/{ea}"}}
    )
    base = f"Patient?_id={a}&_revinclude=Encounter:subject"
    # a plain _revinclude whose parameter never points at a Patient: refused, never empty
    r = client.get(f"/fhir/{base}&_revinclude=Condition:encounter")
    assert r.status_code == 400 and "Condition:encounter" in r.text
    included = _ids(client, base + "&_revinclude:iterate=Condition:encounter")
    assert included == {ea, in_encounter, victim}  # the admin sees everything
    # the page's own Conditions (via subject) and the iteration's are each listed once
    r = client.get(
        f"/fhir/{base}&_revinclude:iterate=Condition:encounter&_revinclude=Condition:subject"
    )
    ids = [e["resource"]["id"] for e in r.json()["entry"]]
    assert len(ids) == len(set(ids)) and {ca, in_encounter} <= set(ids)
    # the GP: the same search, nothing of the victim's
    r = client.get(f"/fhir/{base}&_revinclude:iterate=Condition:encounter", headers=gp)
    assert r.status_code == 200, r.text
    got = {e["resource"]["id"] for e in r.json()["entry"]}
    assert got == {a, ea, in_encounter}
    assert victim not in r.text and b not in r.text and cb not in r.text
    # starting from the victim's side, the GP gets nothing at all
    r = client.get(
        f"/fhir/Encounter?_id={ea}&_revinclude:iterate=Condition:encounter"
        "&_include:iterate=Condition:subject",
        headers=gp,
    )
    assert r.status_code == 200 and victim not in r.text and f'"id":"{b}"' not in r.text
    # a target type narrows the spec; an unknown one is refused
    assert _ids(client, base + "&_revinclude:iterate=Condition:encounter:Group") == {ea}
    r = client.get(f"/fhir/{base}&_revinclude:iterate=Condition:encounter:Nonsense")
    assert r.status_code == 400


def test_revinclude_iterate_is_bounded(client) -> None:  # type: ignore[no-untyped-def]
    from interop.store.search_breadth import MAX_ITERATE

    a, _b, _ca, _cb, _gp = _world(client)
    # a chain of Encounters, each part of the one before: one more level than the bound
    previous = _post(client, _encounter(a))
    first = previous
    chain = []
    for _ in range(MAX_ITERATE + 2):
        previous = _post(
            client, {**_encounter(a), "partOf": {"reference": f"Encounter/{previous}"}}
        )
        chain.append(previous)
    got = _ids(client, f"Encounter?_id={first}&_revinclude:iterate=Encounter:part-of")
    assert got == set(chain[: MAX_ITERATE + 1])  # the plain level, then MAX_ITERATE rounds


def _ids(client, query: str) -> set[str]:  # type: ignore[no-untyped-def]
    r = client.get(f"/fhir/{query}")
    assert r.status_code == 200, r.text
    return {
        e["resource"]["id"] for e in r.json().get("entry", []) if e["search"]["mode"] == "include"
    }


def test_the_capability_statement_claims_what_is_served(client) -> None:  # type: ignore[no-untyped-def]
    a, _b, _ca, _cb, _gp = _world(client)
    resources = {r["type"]: r for r in client.get("/fhir/metadata").json()["rest"][0]["resource"]}
    assert resources["AuditEvent"]["searchInclude"] == []
    assert resources["AuditEvent"]["searchRevInclude"] == []
    assert "Condition:subject" in resources["Patient"]["searchRevInclude"]
    assert "Provenance:target" in resources["Condition"]["searchRevInclude"]
    assert "Condition:encounter" not in resources["Patient"]["searchRevInclude"]
    # the Observation index answers a reverse include onto the patient only
    assert "Observation:subject" in resources["Patient"]["searchRevInclude"]
    # an Observation's Group subject is in the generic index: served and claimed
    assert "Observation:subject" in resources["Group"]["searchRevInclude"]
    assert "Observation:patient" not in resources["Group"]["searchRevInclude"]
    for rtype in ("Patient", "Encounter", "Observation"):
        claimed = resources[rtype]
        for spec in claimed["searchRevInclude"]:
            r = client.get(f"/fhir/{rtype}?_revinclude={spec}&_count=1&_total=none")
            assert r.status_code == 200, (rtype, spec, r.text)
        for spec in claimed["searchInclude"]:
            r = client.get(f"/fhir/{rtype}?_include={spec}&_count=1&_total=none")
            assert r.status_code == 200, (rtype, spec, r.text)
            assert "outcome" not in r.text, (rtype, spec, r.text)  # not ignored with a warning
    r = client.get(f"/fhir/Patient?_id={a}&_revinclude=Condition:subject")
    assert any(e["search"]["mode"] == "include" for e in r.json()["entry"])
