"""Late data: a yellow or red reading that arrives long after it was taken raises a routine
Task marked *etterregistrert*, no Flag and no urgent GP message; a reading in the future is
refused (through ``/fhir`` a 422, through ingest a per-item diagnostic)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

from sqlalchemy import select

from adapters.base import FNR_OID, LOINC, AdapterResult, Code, IngestMeta, Measurement, PatientRef
from interop.care.triage import LATE_MARK, ZONE_SYSTEM
from interop.ingest.pipeline import IngestPipeline
from interop.store.schema import outbox_table
from tests.address_book import patient_with_gp
from tests.plans.test_triage_every_path import FNR, _matches, _recent, spo2


def _outbox_events(services, pid: str) -> list[str]:  # type: ignore[no-untyped-def]
    with services.engine.connect() as conn:
        rows = conn.execute(select(outbox_table.c.event).where(outbox_table.c.patient_id == pid))
        return [r[0] for r in rows]


def test_a_late_red_reading_raises_a_routine_late_task_only(client, services) -> None:  # type: ignore[no-untyped-def]
    pid = patient_with_gp(client, FNR)
    r = client.post("/fhir/Observation", json=spo2(pid, 85, when=_recent(60 * 30)))
    assert r.status_code == 201, r.text
    [task] = _matches(client, "/fhir/Task", patient=pid)
    assert task["priority"] == "routine"
    assert task["businessStatus"]["text"] == LATE_MARK
    assert task["description"].startswith(f"{LATE_MARK}: Rød måling: Oksygenmetning (SpO2) 85 %")
    assert _matches(client, "/fhir/Task", **{"business-status": "late"})
    assert _matches(client, "/fhir/Flag", patient=pid) == []
    assert "triage.red" not in _outbox_events(services, pid)
    # the zone is still kept beside it
    assert len(_matches(client, "/fhir/Observation", zone="red")) == 1
    # a current red reading then makes it a current deviation, and the GP hears of it
    client.post("/fhir/Observation", json=spo2(pid, 86, when=_recent(5)))
    [task] = _matches(client, "/fhir/Task", patient=pid)
    assert task["priority"] == "asap" and "businessStatus" not in task
    assert _matches(client, "/fhir/Flag", code=f"{ZONE_SYSTEM}|red")
    assert "triage.red" in _outbox_events(services, pid)


def test_the_late_window_is_a_setting(client, services) -> None:  # type: ignore[no-untyped-def]
    pid = patient_with_gp(client, FNR)
    # 20 hours ago is within the default 24 hours: a current deviation
    client.post("/fhir/Observation", json=spo2(pid, 85, when=_recent(60 * 20)))
    [task] = _matches(client, "/fhir/Task", patient=pid)
    assert task["priority"] == "asap"


def test_a_late_reading_beside_a_current_deviation_only_adds_a_note(client) -> None:  # type: ignore[no-untyped-def]
    pid = patient_with_gp(client, FNR)
    client.post("/fhir/Observation", json=spo2(pid, 93, when=_recent(5)))  # yellow, current
    client.post("/fhir/Observation", json=spo2(pid, 80, when=_recent(60 * 48)))  # red, late
    [task] = _matches(client, "/fhir/Task", patient=pid)
    assert task["priority"] == "urgent" and task["description"].startswith("Gul")
    assert task["note"][-1]["text"].startswith(LATE_MARK)
    [flag] = _matches(client, "/fhir/Flag", patient=pid)
    assert flag["code"]["coding"][0]["code"] == "yellow"


def test_ingest_judges_late_readings_the_same_way(client, services) -> None:  # type: ignore[no-untyped-def]
    pid = patient_with_gp(client, FNR)
    old = Measurement(
        Code(LOINC, "2708-6"),
        Decimal("84"),
        "%",
        datetime.now(UTC) - timedelta(days=3),
        PatientRef(FNR_OID, FNR),
        "late-1",
    )
    future = Measurement(
        Code(LOINC, "2708-6"),
        Decimal("97"),
        "%",
        datetime.now(UTC) + timedelta(hours=3),
        PatientRef(FNR_OID, FNR),
        "future-1",
    )
    report = IngestPipeline(services).ingest_result(
        "test", AdapterResult(measurements=[old, future]), IngestMeta(source="t")
    )
    assert report.created == 1 and report.rejected == 1
    assert any("future" in str(d) for d in report.diagnostics)
    [task] = _matches(client, "/fhir/Task", patient=pid)
    assert task["priority"] == "routine" and task["businessStatus"]["text"] == LATE_MARK
    assert "triage.red" not in _outbox_events(services, pid)
