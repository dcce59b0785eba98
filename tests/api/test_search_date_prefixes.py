"""Date search through HTTP: the prefixes ``sa``, ``eb`` and ``ap`` and the modifiers
``:above``/``:below`` on every kind of date parameter (the Observation index, a generic
type's dateTime and Period, a Patient's date, ``_lastUpdated``, a chain), and modifiers a
parameter type has no meaning for refused with 400 naming the parameter, never dropped."""

from __future__ import annotations

from typing import Any

import pytest

from tests.api.test_fhir_crud import observation, patient
from tests.api.test_r4_types import condition
from tests.api.test_search_breadth import _create, _ids


def _encounter(pid: str, start: str, end: str | None) -> dict[str, Any]:
    period = {"start": start, **({"end": end} if end else {})}
    return {
        "resourceType": "Encounter",
        "status": "finished" if end else "in-progress",
        "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "HH"},
        "subject": {"reference": f"Patient/{pid}"},
        "period": period,
    }


def test_sa_eb_ap_and_above_below_on_every_kind_of_date(client) -> None:  # type: ignore[no-untyped-def]
    pid = _create(client, patient())
    early = _create(client, observation(pid, when="2026-01-05T08:30:00+01:00"))
    late = _create(client, observation(pid, when="2026-03-20T08:30:00+01:00"))
    # the Observation index
    assert _ids(client, "Observation?date=sa2026-02") == {late}
    assert _ids(client, "Observation?date=eb2026-02") == {early}
    assert _ids(client, "Observation?date=ap2026-01-05") == {early}
    assert _ids(client, "Observation?date:above=2026-01-05") == {late}
    assert _ids(client, "Observation?date:below=2026-03-20") == {early}
    assert _ids(client, "Observation?date:above=2026-03") == set()
    # a generic type's dateTime
    c_old = _create(client, condition(pid, onset="2020-06-01"))
    c_new = _create(client, condition(pid, onset="2024-02-01"))
    assert _ids(client, "Condition?onset-date=sa2021") == {c_new}
    assert _ids(client, "Condition?onset-date=eb2021") == {c_old}
    assert _ids(client, "Condition?onset-date=ap2024-02-01") == {c_new}
    assert _ids(client, "Condition?onset-date:above=2020-06-01") == {c_new}
    assert _ids(client, "Condition?onset-date:below=2024") == {c_old}
    # a Period: ``sa`` is "starts after", ``gt``/``:above`` is "goes on after"
    closed = _create(client, _encounter(pid, "2025-01-10", "2025-01-20"))
    open_ = _create(client, _encounter(pid, "2025-01-15", None))
    assert _ids(client, "Encounter?date=sa2025-01-12") == {open_}
    assert _ids(client, "Encounter?date=eb2025-01-21") == {closed}
    assert _ids(client, "Encounter?date:above=2025-01-18") == {closed, open_}
    assert _ids(client, "Encounter?date:below=2025-01-12") == {closed}
    assert _ids(client, "Encounter?date=eb2025-01-14") == set()
    # a Patient's date and a chain into it
    assert _ids(client, "Patient?birthdate=eb2014") == {pid}
    assert _ids(client, "Patient?birthdate:above=2013") == set()
    assert _ids(client, "Patient?birthdate:below=2014") == {pid}
    assert _ids(client, "Condition?patient.birthdate:below=2014") == {c_old, c_new}
    assert _ids(client, "Condition?patient.birthdate:above=2014") == set()
    # _lastUpdated
    assert _ids(client, "Condition?_lastUpdated=sa2000-01-01") == {c_old, c_new}
    assert _ids(client, "Condition?_lastUpdated:below=2000-01-01") == set()
    assert _ids(client, "Condition?_lastUpdated:above=2000-01-01") == {c_old, c_new}
    assert _ids(client, "Condition?_lastUpdated=eb2000-01-01") == set()


@pytest.mark.parametrize(
    "query, named",
    [
        ("Observation?date:above=gt2026-01-01", "date:above"),
        ("Condition?onset-date:below=le2024", "onset-date:below"),
        ("Condition?_lastUpdated:above=eb2024", "_lastUpdated:above"),
        ("Condition?onset-date=xx2024", "onset-date"),
        # a modifier the parameter's type has no meaning for: never dropped (that would widen)
        ("Condition?onset-date:not=2024", "onset-date:not"),
        ("Observation?date:not=2026", "date:not"),
        ("Condition?subject:not=Patient/x", "subject:not"),
        ("Patient?family:not=Hansen", "family:not"),
        ("Condition?code:above=38341003", "code:above"),
        ("Condition?_lastUpdated:not=2024", "_lastUpdated:not"),
        ("Condition?_id:exact=x", "_id:exact"),
        ("Condition?patient.birthdate:not=2013", "birthdate:not"),
        ("Condition?patient.family:missing=true", "family:missing"),
    ],
)
def test_bad_date_input_and_meaningless_modifiers_are_refused(client, query, named) -> None:  # type: ignore[no-untyped-def]
    r = client.get(f"/fhir/{query}")
    assert r.status_code == 400, r.text
    body = r.json()
    assert body["resourceType"] == "OperationOutcome"
    assert named in r.text


def test_id_not(client) -> None:  # type: ignore[no-untyped-def]
    pid = _create(client, patient())
    a = _create(client, condition(pid))
    b = _create(client, condition(pid, code="44054006"))
    assert _ids(client, f"Condition?_id:not={a}") == {b}


def _r4_params(kinds: set[str]) -> list[tuple[str, str, str]]:
    """(type, parameter, kind) of every official R4 parameter of those kinds."""
    import json
    from importlib.resources import files

    raw = json.loads((files("fhir_profiles") / "r4" / "search-parameters.json").read_text())
    return sorted(
        (t, n, p["type"])
        for t, ps in raw["resources"].items()
        for n, p in ps.items()
        if p["type"] in kinds
    )


SERVED_QUANTITIES = {
    ("Observation", n)
    for n in (
        "value-quantity",
        "component-value-quantity",
        "combo-value-quantity",
        "code-value-quantity",
        "component-code-value-quantity",
        "combo-code-value-quantity",
    )
}
"""Served on the Observation index (``store.search_breadth``)."""


def test_every_r4_quantity_number_and_composite_parameter_is_served_or_refused(client) -> None:  # type: ignore[no-untyped-def]
    from interop.fhir.searchparams import definitions
    from interop.fhir.validation import SUPPORTED_TYPES

    params = _r4_params({"quantity", "number", "composite"})
    assert len(params) > 100
    refused = served_composites = 0
    for rtype, name, kind in params:
        if rtype not in SUPPORTED_TYPES:
            continue
        known = definitions(rtype).get(name)
        value = "ap5"
        if kind == "composite":
            parts = len(known.components) if known is not None else 2
            value = "$".join(["x"] + ["5"] * (parts - 1))
            if known is not None:  # a date component takes a date (Observation code-value-date)
                defs = definitions(rtype)
                value = "$".join(
                    "2026" if defs[c].type == "date" else ("x" if i == 0 else "5")
                    for i, (c, _below) in enumerate(known.components)
                )
        if (rtype, name) in SERVED_QUANTITIES or known is not None:
            # the generic index holds the quantities, numbers and composites it can follow
            r = client.get(f"/fhir/{rtype}?{name}={value}")
            assert r.status_code == 200, (rtype, name, r.text)
            if kind == "composite" and known is not None:
                served_composites += 1
                for q in (f"{name}:missing=true", f"_sort={name}", f"{name}=x"):
                    r = client.get(f"/fhir/{rtype}?{q}")
                    assert r.status_code == 400 and name in r.text, (rtype, q, r.text)
            continue
        queries = [f"{name}={value}", f"{name}:missing=true", f"_sort={name}"]
        for q in queries:
            r = client.get(f"/fhir/{rtype}?{q}")
            assert r.status_code == 400, (rtype, q, r.text)
            assert r.json()["resourceType"] == "OperationOutcome"
            assert name in r.text, (rtype, q, r.text)
        refused += 1
    assert served_composites > 50
    assert refused == 2  # MolecularSequence's two %resource (variant-coordinate) composites
    # reached through a chain or a reverse chain, the same
    pid = _create(client, patient())
    _create(client, condition(pid))
    r = client.get("/fhir/Patient?_has:Group:member:characteristic-value=x$5")
    assert r.status_code == 200, r.text
    r = client.get("/fhir/Condition?encounter:Encounter.nonsense-quantity=gt5")
    assert r.status_code == 400, r.text


def test_audit_event_dates_take_the_same_prefixes_and_modifiers(client) -> None:  # type: ignore[no-untyped-def]
    pid = _create(client, patient())
    r = client.post(
        "/api/v1/actors", json={"role": "followup", "organization": {"orgnr": "974589095"}}
    )
    assert r.status_code == 201, r.text
    other = {"Authorization": f"Bearer {r.json()['key']}"}
    client.get(f"/fhir/Patient/{pid}", headers=other)  # a refused read: audited
    every = _ids(client, "AuditEvent?_count=200")
    assert every
    assert _ids(client, "AuditEvent?date=sa2000-01-01&_count=200") == every
    assert _ids(client, "AuditEvent?date:above=2000-01-01&_count=200") == every
    assert _ids(client, "AuditEvent?_lastUpdated:below=2000-01-01") == set()
    assert _ids(client, "AuditEvent?date=eb2000-01-01") == set()
    assert client.get("/fhir/AuditEvent?date:above=gt2000").status_code == 400
    assert client.get("/fhir/AuditEvent?date:not=2000").status_code == 400
