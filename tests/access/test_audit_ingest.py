"""What an actor ingests is audited in the ingest's own transaction: one AuditEvent per
patient and kind of change (a message may hold hundreds of measurements), naming each
resource written."""

from __future__ import annotations

from typing import Any

from tests.access.test_vendor_writes import (
    FNR_A,
    FNR_B,
    _bundle,
    _fnr,
    _ingest,
    _obs,
    _ok,
    _world,
)


def _events_by(client: Any, actor_id: str) -> list[dict[str, Any]]:
    bundle = client.get("/fhir/AuditEvent", params={"altid": actor_id, "_count": 200}).json()
    return [e["resource"] for e in bundle.get("entry", [])]


def test_an_ingest_is_audited_per_patient(client, services) -> None:  # type: ignore[no-untyped-def]
    w = _world(client)
    vendor_id = next(a["id"] for a in _ok(client.get("/api/v1/actors")) if a["role"] == "vendor")
    rep = _ok(
        _ingest(
            client,
            "fhir",
            _bundle(
                _obs(_fnr(FNR_A), 71, "m-1"),
                _obs(_fnr(FNR_A), 72, "m-2"),
                _obs(_fnr(FNR_B), 73, "m-3"),
            ),
            w["vendor_a"],
        )
    )
    assert rep["created"] == 2 and rep["rejected"] == 1  # B is not linked to vendor A
    events = [e for e in _events_by(client, vendor_id) if e["action"] == "C"]
    patients = [
        en["what"]["reference"]
        for e in events
        for en in e["entity"]
        if en.get("role", {}).get("code") == "1"
    ]
    assert patients == [f"Patient/{w['a']}"], events  # one event, for A only
    (for_a,) = [
        e
        for e in events
        if any(en["what"].get("reference") == f"Patient/{w['a']}" for en in e["entity"])
    ]
    assert for_a["entity"][0]["what"].get("display", "").count("Observation/") == 2
