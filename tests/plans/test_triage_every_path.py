"""Triage on every path: an Observation a client writes through ``/fhir`` (create, update,
transaction and batch Bundles) is judged in the same transaction as an ingested one, stored as
the client sent it, and the zone lives beside it (search ``zone``, Tasks, Flags, routing)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import select

from interop.fhir.dates import format_instant
from interop.store.schema import outbox_table
from tests.address_book import patient_with_gp

FNR = "13031353453"
VENDOR = "841672119"
LOINC = "http://loinc.org"
ZONE = "https://dho-interop.no/fhir/CodeSystem/zone"


def _recent(minutes: int = 5) -> str:
    return format_instant(datetime.now(UTC) - timedelta(minutes=minutes))


def spo2(pid: str, value: float, *, when: str | None = None, **extra: Any) -> dict[str, Any]:
    return {
        "resourceType": "Observation",
        "status": "final",
        "category": [
            {
                "coding": [
                    {
                        "system": "http://terminology.hl7.org/CodeSystem/observation-category",
                        "code": "vital-signs",
                    }
                ]
            }
        ],
        "code": {"coding": [{"system": LOINC, "code": "2708-6"}]},
        "subject": {"reference": f"Patient/{pid}"},
        "effectiveDateTime": when or _recent(),
        "valueQuantity": {
            "value": value,
            "unit": "%",
            "system": "http://unitsofmeasure.org",
            "code": "%",
        },
        **extra,
    }


def _matches(client: Any, path: str, **params: str) -> list[dict[str, Any]]:
    r = client.get(path, params=params)
    assert r.status_code == 200, r.text
    return [e["resource"] for e in r.json().get("entry", []) if e["search"]["mode"] == "match"]


def _without_meta(resource: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in resource.items() if k not in ("id", "meta")}


def _vendor(client: Any, orgnr: str) -> dict[str, str]:
    r = client.post("/api/v1/actors", json={"role": "vendor", "organization": {"orgnr": orgnr}})
    assert r.status_code == 201, r.text
    return {"Authorization": f"Bearer {r.json()['key']}"}


def _link(client: Any, vendor: str, user: str, fnr: str) -> None:
    r = client.post(
        "/api/v1/patient-links", json={"source": vendor, "userId": user, "nationalId": fnr}
    )
    assert r.status_code in (200, 201), r.text


def _world(client: Any) -> tuple[str, dict[str, str]]:
    pid = patient_with_gp(client, FNR)
    _link(client, VENDOR, "anna", FNR)
    return pid, _vendor(client, VENDOR)


def test_a_vendor_posting_a_red_spo2_raises_task_and_flag(client, services) -> None:  # type: ignore[no-untyped-def]
    pid, vendor = _world(client)
    sent = spo2(pid, 85)
    r = client.post("/fhir/Observation", json=sent, headers=vendor)
    assert r.status_code == 201, r.text
    oid = r.json()["id"]
    # stored as sent: no interpretation or referenceRange added
    back = client.get(f"/fhir/Observation/{oid}").json()
    assert _without_meta(back) == sent
    [task] = _matches(client, "/fhir/Task", patient=pid)
    assert task["focus"]["reference"] == f"Observation/{oid}"
    assert task["status"] == "requested"
    [flag] = _matches(client, "/fhir/Flag", patient=pid, status="active")
    assert flag["code"]["coding"][0] == {"system": ZONE, "code": "red"}
    # the zone lives beside the Observation
    assert [o["id"] for o in _matches(client, "/fhir/Observation", zone="red")] == [oid]
    assert _matches(client, "/fhir/Observation", zone=f"{ZONE}|green") == []
    # the GP hears of it, in the same transaction
    with services.engine.connect() as conn:
        events = conn.execute(
            select(outbox_table.c.event).where(outbox_table.c.patient_id == pid)
        ).scalars()
        assert "triage.red" in list(events)


def test_the_clients_own_interpretation_is_kept_and_never_trusted(client) -> None:  # type: ignore[no-untyped-def]
    pid, vendor = _world(client)
    says_normal = [{"coding": [{"system": ZONE, "code": "green"}], "text": "normal"}]
    sent = spo2(pid, 84, interpretation=says_normal)
    r = client.post("/fhir/Observation", json=sent, headers=vendor)
    assert r.status_code == 201, r.text
    assert _without_meta(client.get(f"/fhir/Observation/{r.json()['id']}").json()) == sent
    assert len(_matches(client, "/fhir/Observation", zone="red")) == 1
    assert _matches(client, "/fhir/Observation", zone="green") == []
    assert len(_matches(client, "/fhir/Task", patient=pid)) == 1


def test_put_is_triaged_too(client) -> None:  # type: ignore[no-untyped-def]
    pid = patient_with_gp(client, FNR)
    r = client.put("/fhir/Observation/spo2-1", json={**spo2(pid, 85), "id": "spo2-1"})
    assert r.status_code == 201, r.text
    assert [o["id"] for o in _matches(client, "/fhir/Observation", zone="red")] == ["spo2-1"]
    assert len(_matches(client, "/fhir/Task", patient=pid)) == 1


def _bundle(kind: str, *resources: dict[str, Any]) -> dict[str, Any]:
    return {
        "resourceType": "Bundle",
        "type": kind,
        "entry": [
            {
                "fullUrl": f"urn:uuid:00000000-0000-4000-8000-00000000000{i}",
                "resource": res,
                "request": {"method": "POST", "url": "Observation"},
            }
            for i, res in enumerate(resources)
        ],
    }


def test_a_transaction_bundle_is_triaged(client) -> None:  # type: ignore[no-untyped-def]
    pid = patient_with_gp(client, FNR)
    green, red = spo2(pid, 97, when=_recent(20)), spo2(pid, 85, when=_recent(10))
    r = client.post("/fhir", json=_bundle("transaction", green, red))
    assert r.status_code == 200, r.text
    ids = [e["response"]["location"].split("/")[1] for e in r.json()["entry"]]
    [task] = _matches(client, "/fhir/Task", patient=pid)
    assert task["focus"]["reference"] == f"Observation/{ids[1]}"
    assert len(_matches(client, "/fhir/Flag", patient=pid, status="active")) == 1
    assert [o["id"] for o in _matches(client, "/fhir/Observation", zone="green")] == [ids[0]]
    assert _without_meta(client.get(f"/fhir/Observation/{ids[1]}").json()) == red


def test_a_batch_bundle_is_triaged(client) -> None:  # type: ignore[no-untyped-def]
    pid = patient_with_gp(client, FNR)
    r = client.post("/fhir", json=_bundle("batch", spo2(pid, 90)))
    assert r.status_code == 200, r.text
    assert r.json()["entry"][0]["response"]["status"].startswith("201")
    [task] = _matches(client, "/fhir/Task", patient=pid)
    assert len(_matches(client, "/fhir/Observation", zone="red")) == 1


def test_the_zone_parameter_is_in_the_capability_statement(client) -> None:  # type: ignore[no-untyped-def]
    cs = client.get("/fhir/metadata").json()
    [obs] = [r for r in cs["rest"][0]["resource"] if r["type"] == "Observation"]
    [zone] = [p for p in obs["searchParam"] if p["name"] == "zone"]
    assert zone["type"] == "token" and "Observation?zone=red" in zone["documentation"]
