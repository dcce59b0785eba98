"""The ingest pipeline: idempotency, corrections, quarantine and release, provenance, reports."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from zoneinfo import ZoneInfo

from adapters.base import (
    FNR_OID,
    LOINC,
    AdapterResult,
    Code,
    IngestMeta,
    Measurement,
    PatientRef,
    vendor_user_system,
)
from interop.ingest.pipeline import IngestPipeline, release_quarantine
from interop.patients import link_patient
from interop.store.context import WriteContext

FNR = "13031353453"
T = datetime(2026, 3, 2, 7, 45, tzinfo=ZoneInfo("Europe/Oslo"))


def _patient(client) -> str:  # type: ignore[no-untyped-def]
    return client.post(
        "/fhir/Patient",
        json={"resourceType": "Patient", "identifier": [{"system": FNR_OID, "value": FNR}]},
    ).json()["id"]


def _hr(
    value: str,
    ref: PatientRef,
    minute: int = 0,
    source_id: str | None = None,
    status: str = "final",
) -> Measurement:
    return Measurement(
        Code(LOINC, "8867-4"),
        Decimal(value),
        "bpm",
        T.replace(minute=minute),
        ref,
        f"item {minute}",
        source_id=("urn:vendor:x", source_id) if source_id else None,
        status=status,  # type: ignore[arg-type]
    )


def test_idempotent_ingest_and_corrections(client, services) -> None:  # type: ignore[no-untyped-def]
    pid = _patient(client)
    pipe = IngestPipeline(services)
    ref = PatientRef(FNR_OID, FNR)
    batch = AdapterResult(
        measurements=[_hr("70", ref, 0), _hr("72", ref, 1, "s-1")], message_id="MSG-1"
    )
    meta = IngestMeta(source="acme")
    first = pipe.ingest_result("test", batch, meta)
    assert (first.created, first.duplicate, first.rejected) == (2, 0, 0)
    assert first.provenance and first.provenance.startswith("Provenance/")
    again = pipe.ingest_result("test", batch, meta)
    assert again.duplicate_message and again.created == 0
    # same items in a new message: duplicates by their keys
    resent = pipe.ingest_result(
        "test", AdapterResult(measurements=[_hr("70", ref, 0), _hr("72", ref, 1, "s-1")]), meta
    )
    assert (resent.created, resent.duplicate) == (0, 2)
    # a correction from the source makes a new version
    fix = pipe.ingest_result(
        "test", AdapterResult(measurements=[_hr("75", ref, 1, "s-1", status="corrected")]), meta
    )
    assert fix.updated == 1
    found = client.get(
        "/fhir/Observation",
        params={"patient": pid, "code": "http://loinc.org|8867-4", "_sort": "date"},
    ).json()
    values = [e["resource"]["valueQuantity"]["value"] for e in found["entry"]]
    assert values == [70, 75]
    corrected = found["entry"][1]["resource"]
    assert corrected["status"] == "corrected" and corrected["meta"]["versionId"] == "2"
    # a withdrawal
    wd = pipe.ingest_result(
        "test",
        AdapterResult(measurements=[_hr("75", ref, 1, "s-1", status="entered-in-error")]),
        meta,
    )
    assert wd.updated == 1
    prov = client.get(first.provenance and f"/fhir/{first.provenance}").json()
    assert len(prov["target"]) == 2 and "mappings version" in str(prov["entity"])


def test_rejections_are_reported_and_nothing_else_is_lost(client, services) -> None:  # type: ignore[no-untyped-def]
    _patient(client)
    ref = PatientRef(FNR_OID, FNR)
    bad = Measurement(Code(LOINC, "8867-4"), Decimal("72"), "parsecs", T, ref, "row 7")
    report = IngestPipeline(services).ingest_result(
        "test", AdapterResult(measurements=[bad, _hr("71", ref, 3)]), IngestMeta(source="acme")
    )
    assert (report.created, report.rejected) == (1, 1)
    [d] = [d for d in report.diagnostics if d["severity"] == "error"]
    assert d["code"] == "unknown-unit" and d["location"] == "row 7"
    outcome = report.operation_outcome()
    assert outcome["resourceType"] == "OperationOutcome" and len(outcome["issue"]) >= 2


def test_unknown_vendor_user_is_quarantined_then_released(client, services) -> None:  # type: ignore[no-untyped-def]
    pid = _patient(client)
    vendor = PatientRef(vendor_user_system("acme"), "user-42")
    pipe = IngestPipeline(services)
    report = pipe.ingest_result(
        "test",
        AdapterResult(measurements=[_hr("66", vendor, 5), _hr("67", vendor, 6)]),
        IngestMeta(source="acme"),
    )
    assert (report.quarantined, report.created) == (2, 0)
    assert (
        pipe.ingest_result(
            "test", AdapterResult(measurements=[_hr("66", vendor, 5)]), IngestMeta(source="acme")
        ).duplicate
        == 1
    )
    assert client.get("/api/v1/quarantine").json()[0]["reasonCode"] == "unknown-patient"
    with services.store.write(WriteContext.service()) as tx:
        assert link_patient(tx.conn, vendor.system, vendor.value, FNR) == pid
    assert release_quarantine(services, pipe.mappings)["released"] == 2
    found = client.get("/fhir/Observation", params={"patient": pid, "_summary": "count"}).json()
    assert found["total"] == 2
    # after the link, new data goes straight in
    assert (
        pipe.ingest_result(
            "test", AdapterResult(measurements=[_hr("68", vendor, 7)]), IngestMeta(source="acme")
        ).created
        == 1
    )


def test_patient_link_api(client) -> None:  # type: ignore[no-untyped-def]
    _patient(client)
    r = client.post(
        "/api/v1/patient-links", json={"source": "acme", "userId": "u1", "nationalId": FNR}
    )
    assert r.status_code == 201, r.text
    assert (
        client.post(
            "/api/v1/patient-links",
            json={"source": "acme", "userId": "u1", "nationalId": "12345678901"},
        ).status_code
        == 422
    )
    assert client.get("/api/v1/patient-links").json()[0]["userId"] == "u1"
