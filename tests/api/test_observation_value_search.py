"""Observation's non-quantity value parameters and their composites (``value-concept``,
``value-string``, ``value-date``, ``code-value-*``, ``component-value-concept``,
``component-code-value-concept``) and the ``combo-*`` parameters (the Observation's own code
or value, or a component's): each matches what R4 says, a composite's components on the same
element only, bad values are refused naming the parameter, and a GP finds only its own
patients' Observations through every one of them."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import select

from interop.store.schema import token_table
from tests.api.test_meta_and_system_search import _post, _world
from tests.api.test_search_breadth import _bp, _ids

LOINC = "http://loinc.org"
SCT = "http://snomed.info/sct"
POSITIVE = f"{SCT}|10828004"
NEGATIVE = f"{SCT}|260385009"
# codes of the GP view (mappings/views/gp.yaml), so the GP's own are shown to it
CODE = "8310-5"
COMPONENT_CODE = "8480-6"


def _concept(system: str, code: str, text: str | None = None) -> dict[str, Any]:
    found: dict[str, Any] = {"coding": [{"system": system, "code": code}]}
    if text:
        found["text"] = text
    return found


def _obs(pid: str, code: str = CODE, **value: Any) -> dict[str, Any]:
    return {
        "resourceType": "Observation",
        "status": "final",
        "code": _concept(LOINC, code),
        "subject": {"reference": f"Patient/{pid}"},
        "effectiveDateTime": "2026-01-05T08:30:00+01:00",
        **value,
    }


def _components(pid: str, *parts: tuple[str, dict[str, Any]]) -> dict[str, Any]:
    """An Observation whose components are (code, value element) each."""
    return {
        **_obs(pid, "85354-9"),
        "component": [{"code": _concept(LOINC, code), **value} for code, value in parts],
    }


def _data(client):  # type: ignore[no-untyped-def]
    a, b, _ca, _cb, gp = _world(client)
    pos = _post(client, _obs(a, valueCodeableConcept=_concept(SCT, "10828004", "Positiv prøve")))
    neg_b = _post(client, _obs(b, valueCodeableConcept=_concept(SCT, "260385009")))
    text = _post(client, _obs(a, "9279-1", valueString="Lett tungpust ved trapper"))
    date = _post(client, _obs(a, "8867-4", valueDateTime="2025-12-24"))
    period = _post(
        client, _obs(b, "8867-4", valuePeriod={"start": "2025-06-01", "end": "2025-06-30"})
    )
    # the first component's code with the second one's value: matches no composite
    mixed = _post(
        client,
        _components(
            a,
            (COMPONENT_CODE, {"valueQuantity": {"value": 120, "code": "mm[Hg]"}}),
            ("8462-4", {"valueCodeableConcept": _concept(SCT, "10828004")}),
        ),
    )
    comp_b = _post(
        client,
        _components(b, (COMPONENT_CODE, {"valueCodeableConcept": _concept(SCT, "10828004")})),
    )
    bp = _post(client, _bp(a, 150, 95))
    return a, b, gp, pos, neg_b, text, date, period, mixed, comp_b, bp


def test_value_parameters(client) -> None:  # type: ignore[no-untyped-def]
    a, b, gp, pos, neg_b, text, date, period, mixed, comp_b, bp = _data(client)
    assert _ids(client, f"Observation?value-concept={POSITIVE}") == {pos}
    assert _ids(client, "Observation?value-concept=260385009") == {neg_b}
    assert _ids(client, f"Observation?value-concept:not={POSITIVE}&patient={a}") == {
        text,
        date,
        mixed,
        bp,
    }
    assert _ids(client, "Observation?value-string=lett") == {text}
    assert _ids(client, "Observation?value-string=positiv") == {pos}  # the concept's text
    assert _ids(client, "Observation?value-string:contains=trapp") == {text}
    assert _ids(client, "Observation?value-string:exact=lett tungpust ved trapper") == set()
    assert _ids(client, "Observation?value-date=2025-12-24") == {date}
    assert _ids(client, "Observation?value-date=ge2025-06-15&value-date=lt2025-07") == {period}
    assert _ids(client, "Observation?value-date=gt2025") == set()
    assert _ids(client, "Observation?component-value-concept=10828004") == {mixed, comp_b}
    assert _ids(client, "Observation?value-concept:missing=false") == {pos, neg_b}
    assert _ids(client, f"Observation?value-concept:missing=true&patient={b}") == {
        period,
        comp_b,
    }


def test_composites_match_one_element(client) -> None:  # type: ignore[no-untyped-def]
    a, b, gp, pos, neg_b, text, date, period, mixed, comp_b, bp = _data(client)
    assert _ids(client, f"Observation?code-value-concept={LOINC}|{CODE}${POSITIVE}") == {pos}
    assert _ids(client, f"Observation?code-value-concept={CODE}$260385009") == {neg_b}
    assert _ids(client, f"Observation?code-value-concept=9279-1${POSITIVE}") == set()
    assert _ids(client, "Observation?code-value-string=9279-1$lett") == {text}
    assert _ids(client, f"Observation?code-value-string={CODE}$lett") == set()
    assert _ids(client, "Observation?code-value-date=8867-4$2025-12-24") == {date}
    assert _ids(client, "Observation?code-value-date=8867-4$ge2025-06-01") == {date, period}
    # the component's code and value on one component only
    q = "Observation?component-code-value-concept="
    assert _ids(client, f"{q}{COMPONENT_CODE}$10828004") == {comp_b}
    assert _ids(client, f"{q}8462-4${POSITIVE}") == {mixed}
    assert _ids(client, f"{q}{COMPONENT_CODE}$10828004,8462-4$10828004") == {comp_b, mixed}
    assert _ids(client, f"{q}8480-6$260385009") == set()


def test_combo_parameters(client) -> None:  # type: ignore[no-untyped-def]
    a, b, gp, pos, neg_b, text, date, period, mixed, comp_b, bp = _data(client)
    # the Observation's own code or a component's
    assert _ids(client, f"Observation?combo-code={COMPONENT_CODE}") == {mixed, comp_b, bp}
    assert _ids(client, f"Observation?combo-code={CODE}") == {pos, neg_b}
    assert _ids(client, f"Observation?combo-code={LOINC}|85354-9&patient={a}") == {mixed, bp}
    assert _ids(client, f"Observation?combo-code:not=8867-4&patient={b}") == {neg_b, comp_b}
    assert _ids(client, "Observation?combo-value-concept=10828004") == {pos, mixed, comp_b}
    assert _ids(client, "Observation?combo-code-value-concept=8462-4$10828004") == {mixed}
    assert _ids(client, f"Observation?combo-code-value-concept={CODE}$10828004") == {pos}
    assert _ids(client, f"Observation?combo-code-value-concept={CODE}$260385009,{q_comp()}") == {
        neg_b,
        comp_b,
    }
    assert _ids(client, "Observation?combo-code-value-quantity=8480-6$gt140") == {bp}
    assert _ids(client, "Observation?combo-value-quantity=gt140") == {bp}
    assert _ids(client, "Observation?combo-value-concept:missing=true&patient=" + a) == {
        text,
        date,
        bp,
    }


def q_comp() -> str:
    return f"{COMPONENT_CODE}$10828004"


@pytest.mark.parametrize(
    "query",
    [
        "code-value-concept=8310-5",
        "code-value-concept=8310-5$a$b",
        "code-value-string=$x",
        "code-value-date=8867-4$notadate",
        "value-date=yesterday",
        "combo-code-value-concept=8310-5",
        "component-code-value-concept=8480-6",
        "value-concept:exact=x",
        "code-value-concept:not=8310-5$x",
    ],
)
def test_bad_values_are_refused_naming_the_parameter(client, query: str) -> None:  # type: ignore[no-untyped-def]
    r = client.get(f"/fhir/Observation?{query}")
    assert r.status_code == 400, (query, r.text)
    body = r.json()
    assert body["resourceType"] == "OperationOutcome"
    assert query.partition("=")[0].partition(":")[0] in r.text


def test_a_gp_finds_only_its_own_patients(client) -> None:  # type: ignore[no-untyped-def]
    a, b, gp, pos, neg_b, text, date, period, mixed, comp_b, bp = _data(client)
    for query, everyone, mine in [
        (f"value-concept={SCT}|", {pos, neg_b}, {pos}),
        ("code-value-concept=8310-5$10828004,8310-5$260385009", {pos, neg_b}, {pos}),
        ("combo-code=8480-6", {mixed, comp_b, bp}, {mixed, bp}),
        ("combo-value-concept=10828004", {pos, mixed, comp_b}, {pos, mixed}),
        ("component-value-concept=10828004", {mixed, comp_b}, {mixed}),
        ("component-code-value-concept=8480-6$10828004", {comp_b}, set()),
        ("combo-code-value-concept=8480-6$10828004", {comp_b}, set()),
        ("value-date=ge2025", {date, period}, {date}),
        ("code-value-date=8867-4$ge2025", {date, period}, {date}),
        ("value-concept:missing=false", {pos, neg_b}, {pos}),
        (f"value-concept={SCT}|&patient={b}", {neg_b}, set()),
    ]:
        assert _ids(client, f"Observation?{query}") == everyone, query
        r = client.get(f"/fhir/Observation?{query}", headers=gp)
        assert r.status_code == 200, r.text
        got = {e["resource"]["id"] for e in r.json().get("entry", [])}
        assert got == mine, query
        assert b not in str(r.json().get("entry", [])), query
        # the compartment search and a system search take the parameters too
        r = client.get(f"/fhir/Patient/{b}/Observation?{query}", headers=gp)
        assert r.status_code == 200 and not r.json().get("entry"), query


def test_values_indexed_only_when_present(client, services) -> None:  # type: ignore[no-untyped-def]
    """A measurement with a valueQuantity (the hot path) gets no row of the new parameters."""
    a, *_rest = _world(client)
    bp = _post(client, _bp(a, 150, 95))
    t = token_table.c
    with services.store.reader() as conn:
        params = set(
            conn.execute(
                select(t.param).where(t.res_type == "Observation", t.res_id == bp)
            ).scalars()
        )
    assert not {p for p in params if "value" in p or "combo" in p}, params


def test_capability_lists_them(client) -> None:  # type: ignore[no-untyped-def]
    body = client.get("/fhir/metadata").json()
    obs = next(r for r in body["rest"][0]["resource"] if r["type"] == "Observation")
    listed = {p["name"]: p["type"] for p in obs["searchParam"]}
    for name, ptype in {
        "value-concept": "token",
        "value-string": "string",
        "value-date": "date",
        "code-value-concept": "composite",
        "code-value-string": "composite",
        "code-value-date": "composite",
        "combo-code": "token",
        "combo-value-concept": "token",
        "combo-value-quantity": "quantity",
        "combo-code-value-concept": "composite",
        "combo-code-value-quantity": "composite",
        "component-value-concept": "token",
        "component-code-value-concept": "composite",
    }.items():
        assert listed.get(name) == ptype, name
    assert len(listed) == len(obs["searchParam"])  # each once


def test_code_and_component_code_together(client) -> None:  # type: ignore[no-untyped-def]
    """``code`` and ``component-code`` (and two ``component-code``) are on different rows of
    the observation index; the search finds the Observation that has each, also for a GP,
    whose view adds its codes to every Observation search."""
    a, b, _ca, _cb, gp = _world(client)
    bp_a = _post(client, _bp(a, 150, 95))
    bp_b = _post(client, _bp(b, 160, 99))
    for query, everyone, mine in [
        ("code=85354-9&component-code=8480-6", {bp_a, bp_b}, {bp_a}),
        ("component-code=8480-6&code=85354-9", {bp_a, bp_b}, {bp_a}),
        ("component-code=8480-6&component-code=8462-4", {bp_a, bp_b}, {bp_a}),
        ("component-code=8480-6", {bp_a, bp_b}, {bp_a}),
        ("code=85354-9&component-code=8867-4", set(), set()),
        ("component-code=8480-6&component-code=8867-4", set(), set()),
        ("code=8867-4&component-code=8480-6", set(), set()),
        ("component-code=8480-6&component-code-value-quantity=8462-4$gt96", {bp_b}, set()),
    ]:
        assert _ids(client, f"Observation?{query}") == everyone, query
        r = client.get(f"/fhir/Observation?{query}", headers=gp)
        assert r.status_code == 200, r.text
        assert {e["resource"]["id"] for e in r.json().get("entry", [])} == mine, query
