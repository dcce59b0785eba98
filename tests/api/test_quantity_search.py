"""Quantity and number search on the generic types (the ``search_quantity`` rows): prefixes,
units (UCUM code, a Money's currency, conversion through ``mappings/units.yaml``), Ranges,
``:missing``, chains; and migration 0021 backfills the rows of resources stored before it."""

from __future__ import annotations

from typing import Any

from alembic import command
from fastapi.testclient import TestClient

from interop.api.app import create_app
from interop.store.migrate import alembic_config, upgrade
from tests.api.test_fhir_crud import patient
from tests.api.test_r4_types import condition
from tests.api.test_search_breadth import _create, _ids
from tests.conftest import ADMIN_HEADERS

UCUM = "http://unitsofmeasure.org"


def _aged(pid: str, onset: dict[str, Any], key: str = "onsetAge") -> dict[str, Any]:
    c = condition(pid)
    c.pop("onsetDateTime")
    c[key] = onset
    return c


def _encounter(pid: str, minutes: float) -> dict[str, Any]:
    return {
        "resourceType": "Encounter",
        "status": "finished",
        "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "HH"},
        "subject": {"reference": f"Patient/{pid}"},
        "length": {"value": minutes, "unit": "min", "system": UCUM, "code": "min"},
    }


def test_quantities_of_generic_types(client) -> None:  # type: ignore[no-untyped-def]
    pid = _create(client, patient())
    child = _create(client, _aged(pid, {"value": 7, "unit": "år", "system": UCUM, "code": "a"}))
    adult = _create(client, _aged(pid, {"value": 45, "unit": "år", "system": UCUM, "code": "a"}))
    teen = _create(
        client,
        _aged(
            pid,
            {"low": {"value": 13, "system": UCUM, "code": "a"}, "high": {"value": 19}},
            "onsetRange",
        ),
    )
    _create(client, condition(pid))  # no age at all
    assert _ids(client, "Condition?onset-age=7") == {child}
    assert _ids(client, f"Condition?onset-age=7|{UCUM}|a") == {child}
    assert _ids(client, "Condition?onset-age=7||a") == {child}
    assert _ids(client, "Condition?onset-age=7||mo") == set()  # another unit: no match
    assert _ids(client, "Condition?onset-age=gt40") == {adult}
    assert _ids(client, "Condition?onset-age=lt10") == {child}
    # on a Range: gt/lt look for an overlap, sa/eb for all of it
    assert _ids(client, "Condition?onset-age=gt15") == {adult, teen}
    assert _ids(client, "Condition?onset-age=sa15") == {adult}
    assert _ids(client, "Condition?onset-age=eb20") == {child, teen}
    assert _ids(client, "Condition?onset-age=ge19") == {adult, teen}
    assert _ids(client, "Condition?onset-age=ap44") == {adult}
    assert _ids(client, "Condition?onset-age=ne7") == {adult, teen}
    assert _ids(client, "Condition?onset-age=7,45") == {child, adult}
    assert len(_ids(client, "Condition?onset-age:missing=true")) == 1
    assert _ids(client, "Condition?onset-age:missing=false") == {child, adult, teen}
    # through a chain and a reverse chain
    e1 = _create(client, _encounter(pid, 20))
    e2 = _create(client, _encounter(pid, 90))
    c1 = _create(client, {**condition(pid), "encounter": {"reference": f"Encounter/{e1}"}})
    assert _ids(client, "Encounter?length=gt60") == {e2}
    assert _ids(client, "Condition?encounter.length=lt30") == {c1}
    assert _ids(client, "Encounter?_has:Condition:encounter:onset-date=2024-02-01") == {e1}
    for bad in ("onset-age=abc", "onset-age=gt", "onset-age:exact=7", "onset-age:above=7"):
        r = client.get(f"/fhir/Condition?{bad}")
        assert r.status_code == 400, (bad, r.text)
        assert "onset-age" in r.text


def test_numbers_money_and_unit_conversion(client) -> None:  # type: ignore[no-untyped-def]
    pid = _create(client, patient())

    def risk(p: float) -> dict[str, Any]:
        return {
            "resourceType": "RiskAssessment",
            "status": "final",
            "subject": {"reference": f"Patient/{pid}"},
            "prediction": [{"probabilityDecimal": p}],
        }

    low, high = _create(client, risk(0.02)), _create(client, risk(0.4))
    assert _ids(client, "RiskAssessment?probability=gt0.1") == {high}
    assert _ids(client, "RiskAssessment?probability=0.02") == {low}
    assert _ids(client, "RiskAssessment?probability=le0.4") == {low, high}
    r = client.get(f"/fhir/RiskAssessment?probability=0.4|{UCUM}|%25")
    assert r.status_code == 400 and "probability" in r.text  # a number has no unit

    def invoice(amount: float, currency: str) -> dict[str, Any]:
        return {
            "resourceType": "Invoice",
            "status": "issued",
            "subject": {"reference": f"Patient/{pid}"},
            "totalGross": {"value": amount, "currency": currency},
        }

    nok, eur = _create(client, invoice(1200, "NOK")), _create(client, invoice(1200, "EUR"))
    assert _ids(client, "Invoice?totalgross=1200") == {nok, eur}
    assert _ids(client, "Invoice?totalgross=1200|urn:iso:std:iso:4217|NOK") == {nok}
    assert _ids(client, "Invoice?totalgross=1200||EUR") == {eur}

    substance = _create(
        client,
        {
            "resourceType": "Substance",
            "code": {"text": "virkestoff"},
            "instance": [{"quantity": {"value": 2, "unit": "kg", "system": UCUM, "code": "kg"}}],
        },
    )
    # 2000 g is 2 kg (mappings/units.yaml): found in the unit stored
    assert _ids(client, f"Substance?quantity=2000|{UCUM}|g") == {substance}
    assert _ids(client, f"Substance?quantity=gt2500|{UCUM}|g") == set()


def test_capability_statement_claims_the_quantities_it_searches(client) -> None:  # type: ignore[no-untyped-def]
    cs = client.get("/fhir/metadata").json()
    types = {r["type"]: r for r in cs["rest"][0]["resource"]}
    cond = {p["name"]: p["type"] for p in types["Condition"]["searchParam"]}
    assert cond["onset-age"] == "quantity"
    risk = {p["name"]: p["type"] for p in types["RiskAssessment"]["searchParam"]}
    assert risk["probability"] == "number"
    # the generic types' composites are searched (their components' rows), so claimed
    group = {p["name"]: p["type"] for p in types["Group"]["searchParam"]}
    assert group["characteristic-value"] == "composite"


def test_an_update_and_a_delete_move_the_quantity_rows(client) -> None:  # type: ignore[no-untyped-def]
    pid = _create(client, patient())
    cid = _create(client, _aged(pid, {"value": 7, "system": UCUM, "code": "a"}))
    body = {**_aged(pid, {"value": 50, "system": UCUM, "code": "a"}), "id": cid}
    assert client.put(f"/fhir/Condition/{cid}", json=body).status_code == 200
    assert _ids(client, "Condition?onset-age=7") == set()
    assert _ids(client, "Condition?onset-age=50") == {cid}
    assert client.delete(f"/fhir/Condition/{cid}").status_code == 200
    assert _ids(client, "Condition?onset-age=50") == set()


def test_0021_backfills_the_quantities_stored_before_it(settings: Any, services: Any) -> None:
    def client() -> TestClient:
        return TestClient(create_app(settings, services=services), headers=ADMIN_HEADERS)

    with client() as c:
        pid = _create(c, patient())
        cid = _create(c, _aged(pid, {"value": 7, "system": UCUM, "code": "a"}))
    engine = services.engine
    cfg = alembic_config(engine)
    try:
        with engine.begin() as conn:
            cfg.attributes["connection"] = conn
            command.downgrade(cfg, "0019")  # the store as it was before the quantity rows
    finally:
        upgrade(engine)
    with client() as c:
        assert _ids(c, "Condition?onset-age=7") == {cid}


def test_many_in_one_transaction(client) -> None:  # type: ignore[no-untyped-def]
    """Enough rows for the bulk write (COPY on PostgreSQL) to carry the quantity rows."""
    pid = _create(client, patient())
    entries = [
        {"resource": _encounter(pid, m), "request": {"method": "POST", "url": "Encounter"}}
        for m in range(1, 201)
    ]
    r = client.post(
        "/fhir", json={"resourceType": "Bundle", "type": "transaction", "entry": entries}
    )
    assert r.status_code == 200, r.text[:500]
    r = client.get("/fhir/Encounter?length=gt150&_summary=count")
    assert r.json()["total"] == 50
    r = client.get("/fhir/Encounter?length=le10||min&_summary=count")
    assert r.json()["total"] == 10
