"""Every file under ../shared/conformance/vendor: ingested into Observations (or quarantined
for a patient not yet linked), or rejected with a diagnostic naming the reason — and ingesting
it a second time changes nothing."""

from __future__ import annotations

from pathlib import Path

import pytest

from adapters.base import FNR_OID, IngestMeta, PatientRef
from interop.ingest.pipeline import IngestPipeline, IngestRejected
from tests.conftest import CONFORMANCE

VENDOR = CONFORMANCE / "vendor"
FNR = "13031353453"

# file → (adapter, options, expected (created, quarantined), rejected > 0?)
# A whole-file refusal is written as None.
CORPUS: dict[str, tuple[str, dict[str, str], tuple[int, int] | None, bool]] = {
    "accu-chek-csv/ProperDiary.csv": ("mapped-csv", {"profile": "accu-chek-csv"}, (6, 0), False),
    "accu-chek-csv/ProperDiaryWithNewColumnHeader.csv": (
        "mapped-csv",
        {"profile": "accu-chek-csv"},
        (2, 0),
        False,
    ),
    "apple-healthkit/export-apple-health-parser.xml": ("apple-health", {}, (2, 0), True),
    "continua-ipf/HL7_CDA_PHMR_Rich_Rodgers.xml": ("cda-phmr", {}, (0, 37), False),
    "continua-ipf/invalid-glucose-continua-wan.hl7v2": ("hl7v2", {}, (0, 1), True),
    "continua-ipf/valid-bp-continua-wan.hl7v2": ("hl7v2", {}, (0, 1), False),
    "continua-ipf/valid-glucose-continua-wan.hl7v2": ("hl7v2", {}, (0, 1), False),
    "continua-ipf/valid-oximeter-continua-wan.hl7v2": ("hl7v2", {}, (0, 1), False),
    "continua-ipf/valid-pcd01-MaximumRequest2.hl7": ("hl7v2", {}, (0, 1), True),
    "continua-ipf/valid-pcd01-request.hl7v2": ("hl7v2", {}, (0, 1), False),
    "continua-ipf/valid-pcd01-request2.hl7v2": ("hl7v2", {}, (0, 1), True),
    "continua-ipf/valid-pcd01-response2.hl7v2": ("hl7v2", {}, None, True),
    "continua-ipf/valid-scale-continua-wan.hl7v2": ("hl7v2", {}, (0, 1), True),
    "continua-ipf/valid-thermometer-continua-wan.hl7v2": ("hl7v2", {}, (0, 1), False),
    "fhir-converter/LAB-ORU-1.hl7": ("hl7v2", {}, (0, 0), True),
    "fhir-converter/ORU-R01-RMGEAD.hl7": ("hl7v2", {}, (0, 0), True),
    "fhir-converter/ObservationBundle-expected.hl7": ("hl7v2", {}, (0, 0), True),
    "openmhealth/blood-glucose-4.0_with-everything.json": ("openmhealth", {}, (0, 0), False),
    "openmhealth/blood-pressure-4.0_shouldFail_invalid-unit.json": (
        "openmhealth",
        {},
        (0, 0),
        True,
    ),
    "openmhealth/blood-pressure-4.0_with-posture-location-relation.json": (
        "openmhealth",
        {},
        (1, 0),
        False,
    ),
    "openmhealth/body-temperature-4.0_valid-temperature.json": ("openmhealth", {}, (1, 0), False),
    "openmhealth/body-weight-3.0_body-weight-only.json": ("openmhealth", {}, (1, 0), False),
    "openmhealth/data-point-1.0_valid-data-point.json": ("openmhealth", {}, (0, 0), False),
    "openmhealth/heart-rate-2.0_with-temporal-relationship-to-sleep.json": (
        "openmhealth",
        {},
        (1, 0),
        False,
    ),
    "openmhealth/oxygen-saturation-2.0_with-oxygen.json": ("openmhealth", {}, (1, 0), False),
    "openmhealth/schema_blood-glucose-4.0.json": ("openmhealth", {}, (0, 0), False),
    "openmhealth/schema_blood-pressure-4.0.json": ("openmhealth", {}, (0, 0), False),
    "openmhealth/schema_header-1.2.json": ("openmhealth", {}, (0, 0), False),
    "opentele/KIH-DB_version_1.0.1_eksempel1.xml": ("opentele", {}, (0, 0), True),
    "opentele/KIH_testeksempel_1_version_1.0.xml": ("opentele", {}, (0, 8), True),
    "opentele/RM_overfoersel_af_blodsukkermaalinger_v2.json": ("opentele", {}, (0, 0), False),
    "opentele/Test_bt_m_alarm.json": ("opentele", {}, (0, 0), False),
    "opentele/US_copd_standard.json": ("opentele", {}, (0, 0), False),
    "shimmer/fitbit-body-log-weight.json": (
        "mapped-json",
        {"profile": "fitbit-body-log-weight"},
        (4, 0),
        False,
    ),
    "shimmer/googlefit-merge-weight.json": (
        "mapped-json",
        {"profile": "googlefit-weight"},
        (3, 0),
        False,
    ),
    "shimmer/ihealth-bp.json": ("mapped-json", {"profile": "ihealth-bp"}, (4, 0), False),
    "shimmer/ihealth-glucose.json": ("mapped-json", {"profile": "ihealth-glucose"}, (2, 0), False),
    "shimmer/ihealth-spo2.json": ("mapped-json", {"profile": "ihealth-spo2"}, (4, 0), False),
    "shimmer/withings-body-measures-only-goal.json": (
        "mapped-json",
        {"profile": "withings-body-measures"},
        (0, 0),
        False,
    ),
    "shimmer/withings-body-measures.json": (
        "mapped-json",
        {"profile": "withings-body-measures"},
        (7, 0),
        True,
    ),
    "vkp/vkp-alert-code-v090.codesystem.xml": ("fhir", {}, None, True),
    "vkp/vkp-severity-level-v090.codesystem.xml": ("fhir", {}, None, True),
}


def test_corpus_is_complete() -> None:
    files = {
        p.relative_to(VENDOR).as_posix()
        for p in VENDOR.rglob("*")
        if p.is_file() and p.name != "PROVENANCE.md"
    }
    assert files == set(CORPUS)


@pytest.mark.parametrize("rel", sorted(CORPUS))
def test_vendor_file(client, services, rel: str) -> None:  # type: ignore[no-untyped-def]
    client.post(
        "/fhir/Patient",
        json={"resourceType": "Patient", "identifier": [{"system": FNR_OID, "value": FNR}]},
    )
    adapter, options, expected, rejects = CORPUS[rel]
    pipe = IngestPipeline(services)
    meta = IngestMeta(
        source="corpus", patient=PatientRef(FNR_OID, FNR), options=options, filename=Path(rel).name
    )
    data = (VENDOR / rel).read_bytes()
    if expected is None:
        with pytest.raises(IngestRejected) as info:
            pipe.ingest(adapter, data, meta)
        assert info.value.report.diagnostics[0]["message"]
        return
    first = pipe.ingest(adapter, data, meta)
    assert (first.created, first.quarantined) == expected, first.diagnostics
    assert (first.rejected > 0) == rejects, first.diagnostics
    for d in first.diagnostics:
        assert d["message"] and d["code"]
    if first.created + first.quarantined == 0 and not rejects:
        assert first.diagnostics, "nothing stored must be explained"
    second = pipe.ingest(adapter, data, meta)
    assert second.created == 0 and second.updated == 0 and second.quarantined == 0
