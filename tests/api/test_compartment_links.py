"""The compartment search follows every link the R4 Patient CompartmentDefinition names for a
type (Condition ``asserter``, Observation ``performer``, Patient ``link``, Group ``member`` …),
while the access policy still decides on each resource's *own* patient: a resource about
patient B that names patient A in another link is in A's compartment, but a GP of A alone never
sees it; a type with only ``subject`` (no ``patient`` parameter) is searchable by a GP, who finds
its own patients' resources only."""

from __future__ import annotations

from typing import Any

from interop.fhir.r4_definitions import patient_compartment_params
from interop.fhir.searchparams import definitions
from interop.fhir.validation import SUPPORTED_TYPES
from interop.store import compartment
from tests.api.test_compartment_all_and_meta_write import _all
from tests.api.test_meta_and_system_search import _post, _world
from tests.api.test_r4_types import condition
from tests.api.test_search_breadth import _bp


def _asserted(pid: str, asserter: str) -> dict[str, Any]:
    return {**condition(pid, code="44054006"), "asserter": {"reference": f"Patient/{asserter}"}}


def _group(*members: str) -> dict[str, Any]:
    return {
        "resourceType": "Group",
        "type": "person",
        "actual": True,
        "member": [{"entity": {"reference": f"Patient/{m}"}} for m in members],
    }


def _adverse_event(pid: str) -> dict[str, Any]:
    return {
        "resourceType": "AdverseEvent",
        "actuality": "actual",
        "subject": {"reference": f"Patient/{pid}"},
        "date": "2026-01-05",
    }


def _ids(found: list[tuple[str, str]]) -> set[str]:
    return {rid for _t, rid in found}


def test_every_link_of_the_compartment_definition_is_a_parameter() -> None:
    """The CompartmentDefinition's links are followed from the data, none left out silently."""
    for rtype, names in patient_compartment_params().items():
        if rtype not in SUPPORTED_TYPES or rtype == "AuditEvent":
            continue
        defs = definitions(rtype)
        for name in names:
            assert name in defs and defs[name].type == "reference", (rtype, name)
        got = compartment.links(rtype)
        assert got[: len(names)] == tuple(names), rtype
        assert all(defs[n].compartment for n in got[len(names) :]), rtype


def test_a_device_is_in_its_patients_compartment(client) -> None:  # type: ignore[no-untyped-def]
    """R4 lists Device in the Patient compartment without a parameter; the project's
    ``Device.patient`` is its link, so ``Patient/{id}/Device`` finds the patient's device
    (it answered 404 while ``Device?patient=`` found it)."""
    a, _b, _ca, _cb, gp = _world(client)
    device = _post(client, {"resourceType": "Device", "patient": {"reference": f"Patient/{a}"}})
    for headers in ({}, gp):
        r = client.get(f"/fhir/Patient/{a}/Device", headers=headers)
        assert r.status_code == 200, r.text
        assert device in r.text


def test_the_links_are_followed(client) -> None:  # type: ignore[no-untyped-def]
    a, b, ca, cb, _gp = _world(client)
    b_asserted_by_a = _post(client, _asserted(b, a))
    obs_b_by_a = _post(client, {**_bp(b, 150, 95), "performer": [{"reference": f"Patient/{a}"}]})
    obs_a = _post(client, _bp(a, 120, 80))
    linked = _post(
        client,
        {
            "resourceType": "Patient",
            "link": [{"other": {"reference": f"Patient/{a}"}, "type": "seealso"}],
        },
    )
    group_ba = _post(client, _group(b, a))
    group_b = _post(client, _group(b))
    assert _ids(_all(client, f"/fhir/Patient/{a}/Condition")) == {ca, b_asserted_by_a}
    assert _ids(_all(client, f"/fhir/Patient/{b}/Condition")) == {cb, b_asserted_by_a}
    assert _ids(_all(client, f"/fhir/Patient/{a}/Observation")) == {obs_a, obs_b_by_a}
    assert _ids(_all(client, f"/fhir/Patient/{b}/Observation")) == {obs_b_by_a}
    assert _ids(_all(client, f"/fhir/Patient/{a}/Patient")) == {a, linked}
    assert _ids(_all(client, f"/fhir/Patient/{a}/Group")) == {group_ba}
    assert _ids(_all(client, f"/fhir/Patient/{b}/Group")) == {group_ba, group_b}
    # the client's parameters narrow the compartment; paging stays in it
    assert _ids(_all(client, f"/fhir/Patient/{a}/Condition?code=44054006")) == {b_asserted_by_a}
    paged = _all(client, f"/fhir/Patient/{a}/Condition?_count=1")
    assert sorted(paged) == sorted([("Condition", ca), ("Condition", b_asserted_by_a)])
    r = client.get(f"/fhir/Patient/{a}/Condition?_count=1")
    nxt = next(lk["url"] for lk in r.json()["link"] if lk["relation"] == "next")
    assert f"/Patient/{a}/Condition?" in nxt
    everything = set(_all(client, f"/fhir/Patient/{a}/*"))
    assert {
        ("Condition", b_asserted_by_a),
        ("Observation", obs_b_by_a),
        ("Patient", linked),
        ("Group", group_ba),
    } <= everything
    assert ("Condition", cb) not in everything and ("Group", group_b) not in everything
    r = client.get(f"/fhir/Patient/{a}/*?_summary=count")
    assert r.json()["total"] == len(everything)
    assert client.get(f"/fhir/Patient/{a}/Questionnaire").status_code == 404


def test_a_gp_never_sees_another_patients_resource_through_a_link(client) -> None:  # type: ignore[no-untyped-def]
    a, b, ca, cb, gp = _world(client)
    b_asserted_by_a = _post(client, _asserted(b, a))
    obs_b_by_a = _post(client, {**_bp(b, 173, 99), "performer": [{"reference": f"Patient/{a}"}]})
    obs_a = _post(client, _bp(a, 120, 80))
    group_ba = _post(client, _group(b, a))
    group_a = _post(client, _group(a))
    ae_a = _post(client, _adverse_event(a))
    ae_b = _post(client, _adverse_event(b))
    secrets = (b, cb, b_asserted_by_a, obs_b_by_a, group_ba, ae_b)
    for path, mine in [
        (f"Patient/{a}/Condition", {ca}),
        (f"Patient/{a}/Condition?code=44054006", set()),
        (f"Patient/{a}/Observation", {obs_a}),
        (f"Patient/{a}/Group", {group_a}),
        (f"Patient/{a}/AdverseEvent", {ae_a}),
        (f"Patient/{a}/*", {a, ca, obs_a, group_a, ae_a}),
        (f"Patient/{a}/*?_count=1", {a, ca, obs_a, group_a, ae_a}),
        (f"Patient/{b}/Condition", set()),
        (f"Patient/{b}/*", set()),
        (f"Condition?asserter=Patient/{a}", set()),
        (f"Observation?performer=Patient/{a}", set()),
        ("Group", {group_a}),
        (f"Group?member=Patient/{a}", {group_a}),
        ("AdverseEvent", {ae_a}),
        (f"AdverseEvent?subject=Patient/{b}", set()),
    ]:
        found = _all(client, f"/fhir/{path}", gp)
        assert _ids(found) == mine, path
        r = client.get(f"/fhir/{path}", headers=gp)
        entries = str(r.json().get("entry", []))
        assert not any(s in entries for s in secrets), path
        assert "'value': 173" not in entries, path  # B's systolic value
    # the same searches by an admin find them (the links are followed)
    assert _ids(_all(client, f"/fhir/Patient/{a}/Condition")) == {ca, b_asserted_by_a}
    assert _ids(_all(client, "/fhir/AdverseEvent")) == {ae_a, ae_b}
    # read by id: refused, as the search leaves it out
    for ref in (f"Condition/{b_asserted_by_a}", f"Group/{group_ba}", f"AdverseEvent/{ae_b}"):
        assert client.get(f"/fhir/{ref}", headers=gp).status_code == 403, ref


def test_a_group_is_shown_only_to_whoever_may_see_every_member(client) -> None:  # type: ignore[no-untyped-def]
    """A Group whose first member is the GP's patient and whose second is not: showing it
    would tell the GP who else is in the group (a cohort of a diagnosis, say)."""
    a, b, _ca, _cb, gp = _world(client)
    group_ab = _post(client, _group(a, b))
    group_a = _post(client, _group(a))
    assert client.get(f"/fhir/Group/{group_ab}", headers=gp).status_code == 403
    assert client.get(f"/fhir/Group/{group_a}", headers=gp).status_code == 200
    for path in ("Group", f"Group?member=Patient/{a}", f"Patient/{a}/Group", f"Patient/{a}/*"):
        r = client.get(f"/fhir/{path}", headers=gp)
        assert r.status_code == 200, path
        assert group_ab not in r.text and b not in r.text, path
        assert group_a in r.text, path
    assert client.get(f"/fhir/Group/{group_ab}").status_code == 200  # an admin sees it
    # nor is it counted: a count has no rows to filter
    r = client.get("/fhir/Group", params={"_summary": "count"}, headers=gp)
    assert r.status_code == 200 and r.json()["total"] == 1, r.text


def test_the_audited_search_names_the_compartment(client) -> None:  # type: ignore[no-untyped-def]
    """A GP's ``Patient/{id}/Condition`` that follows the links beyond ``subject`` (another
    patient's Condition names this one as asserter) is audited as that compartment's search,
    never as the client's parameters alone (``Condition?_count=5`` would read as a search of
    every patient's Conditions)."""
    a, b, ca, _cb, gp = _world(client)
    _post(client, _asserted(b, a))  # the compartment is more than ``patient=``
    for path in (f"Patient/{a}/Condition?_count=5", f"Patient/{a}/*?_type=Condition"):
        r = client.get(f"/fhir/{path}", headers=gp)
        assert r.status_code == 200, r.text
        assert ca in r.text
    events = client.get("/fhir/AuditEvent", params={"patient": a, "_count": 100}).json()
    searched = [
        str(en["what"].get("display", ""))
        for e in events["entry"]
        for en in e["resource"].get("entity", [])
        if "Condition" in str(en["what"].get("display", ""))
    ]
    assert f"Patient/{a}/Condition?_count=5" in searched, searched
    assert f"Patient/{a}/Condition?" in searched, searched  # the search across types
    assert not any(s.startswith("Condition?") for s in searched), searched
