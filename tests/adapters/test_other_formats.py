"""OpenTele, Apple Health export and CDA PHMR adapters on their samples."""

from __future__ import annotations

from decimal import Decimal

import pytest

from adapters.applehealth import AppleHealthAdapter
from adapters.base import FNR_OID, AdapterError, IngestMeta, PatientRef
from adapters.opentele import CPR_SYSTEM, OpenTeleAdapter
from adapters.phmr import PhmrAdapter
from tests.conftest import CONFORMANCE

V = CONFORMANCE / "vendor"
META = IngestMeta(source="t", patient=PatientRef(FNR_OID, "13031353453"))


def test_opentele_definitions_and_chronic_dataset() -> None:
    for name in (
        "US_copd_standard.json",
        "Test_bt_m_alarm.json",
        "RM_overfoersel_af_blodsukkermaalinger_v2.json",
    ):
        r = OpenTeleAdapter().parse((V / "opentele" / name).read_bytes(), META)
        assert r.measurements == [] and r.diagnostics[0].code == "not-a-measurement"
        assert "questionnaire definition" in r.diagnostics[0].message
    r = OpenTeleAdapter().parse(
        (V / "opentele/KIH_testeksempel_1_version_1.0.xml").read_bytes(), META
    )
    assert len(r.measurements) == 24
    spo2 = next(m for m in r.measurements if m.code.code == "NPU03011")
    assert spo2.value == Decimal("95.3") and spo2.patient == PatientRef(CPR_SYSTEM, "2512484916")
    r = OpenTeleAdapter().parse(
        (V / "opentele/KIH-DB_version_1.0.1_eksempel1.xml").read_bytes(), META
    )
    assert [m.code.code for m in r.measurements] == ["MCS88015", "MCS88016", "MCS88017", "MCS88023"]
    assert (
        r.measurements[0].device is not None
        and r.measurements[0].device.manufacturer == "AD Medical"
    )
    with pytest.raises(AdapterError):
        OpenTeleAdapter().parse(b'<!DOCTYPE x [<!ENTITY a "b">]><x>&a;</x>', META)


def test_apple_health_export_without_loading_its_dtd() -> None:
    r = AppleHealthAdapter().parse(
        (V / "apple-healthkit/export-apple-health-parser.xml").read_bytes(), META
    )
    assert r.items_seen == 8
    hr = [m for m in r.measurements if m.code.code.endswith("HeartRate")]
    assert [m.value for m in hr] == [Decimal(74), Decimal(75)] and hr[0].unit == "/min"
    assert hr[0].effective.isoformat() == "2024-01-01T01:01:36+02:00"
    assert sum(d.code == "not-a-measurement" for d in r.diagnostics) == 2


def test_phmr() -> None:
    r = PhmrAdapter().parse((V / "continua-ipf/HL7_CDA_PHMR_Rich_Rodgers.xml").read_bytes(), META)
    assert r.items_seen == 42 and len(r.measurements) == 42
    assert {m.code.code for m in r.measurements} == {
        "27113001",
        "434912009",
        "271649006",
        "271650006",
    }
    assert r.measurements[0].unit == "[lb_av]" and r.measurements[0].value == Decimal("181.0")
    with pytest.raises(AdapterError):
        PhmrAdapter().parse(b"<foo/>", META)


def test_apple_health_percentages_are_fractions_and_every_element_is_an_item() -> None:
    from datetime import UTC, datetime

    from interop.mapping import MappingSet

    xml = b"""<?xml version="1.0" encoding="UTF-8"?>
<HealthData locale="nb_NO">
 <ExportDate value="2026-03-02 10:00:00 +0100"/>
 <Record type="HKQuantityTypeIdentifierOxygenSaturation" unit="%" value="0.97"
  startDate="2026-03-01 08:00:00 +0100" endDate="2026-03-01 08:00:00 +0100"/>
 <Correlation type="HKCorrelationTypeIdentifierBloodPressure"
  startDate="2026-03-01 08:05:00 +0100" endDate="2026-03-01 08:05:00 +0100">
  <Record type="HKQuantityTypeIdentifierBloodPressureSystolic" unit="mmHg" value="152"
   startDate="2026-03-01 08:05:00 +0100" endDate="2026-03-01 08:05:00 +0100"/>
  <Record type="HKQuantityTypeIdentifierBloodPressureDiastolic" unit="mmHg" value="95"
   startDate="2026-03-01 08:05:00 +0100" endDate="2026-03-01 08:05:00 +0100"/>
 </Correlation>
 <Correlation type="HKCorrelationTypeIdentifierFood"
  startDate="2026-03-01 08:05:00 +0100" endDate="2026-03-01 08:05:00 +0100"/>
 <Workout workoutActivityType="HKWorkoutActivityTypeWalking" duration="30"/>
 <ActivitySummary dateComponents="2026-03-01" activeEnergyBurned="300"/>
</HealthData>"""
    r = AppleHealthAdapter().parse(xml, META)
    assert r.items_seen == 5
    spo2, bp = r.measurements
    ms = MappingSet.load()
    mapped = ms.map(spo2, now=datetime.now(UTC)).mapped
    assert mapped is not None and (mapped.value, mapped.unit) == (Decimal(97), "%")
    panel = ms.map(bp, now=datetime.now(UTC)).mapped
    assert panel is not None and panel.concept.loinc.code == "85354-9"
    assert [(c.concept.loinc.code, c.value) for c in panel.components] == [
        ("8480-6", Decimal(152)),
        ("8462-4", Decimal(95)),
    ]
    skipped = sorted(d.location or "" for d in r.diagnostics if d.code == "not-a-measurement")
    assert skipped == ["ActivitySummary[5]", "Correlation[3]", "Workout[4]"]
    with pytest.raises(AdapterError):
        AppleHealthAdapter().parse(b"<Other><Record/></Other>", META)
