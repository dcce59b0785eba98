"""Every file in ../shared/corpus/ingest (third-party device and vendor files nobody on the team
wrote; see its PROVENANCE.md) either lands correctly — the right value, unit, code and patient —
or is refused item by item with a reason. No file causes a fault, and no item is dropped
without an outcome: the items an adapter saw are all stored, quarantined, refused or skipped
with a diagnostic.

The expectations are about what the data says, read from the files by hand; the product is
never told which file it is reading.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from adapters.base import FNR_OID, IngestMeta, PatientRef
from interop.ingest.pipeline import IngestPipeline, IngestRejected, IngestReport
from interop.patients import link_patient
from interop.store.context import Door, WriteContext
from tests.conftest import SHARED

CORPUS = SHARED / "corpus" / "ingest"
FNR = "13031353453"
ADMIN = {"Authorization": "Bearer test-admin-key"}
SKIP_CODES = frozenset({"not-a-measurement", "unsupported", "missing-value"})
"""Diagnostic codes of an item that is not a measurement and is skipped with that reason."""

Obs = dict[str, Any]
Check = Callable[[IngestReport, list[Obs]], None]


@dataclass(frozen=True)
class Case:
    adapter: str
    created: int | None
    """Observations created (None: the whole file is refused)."""
    refuses: bool = False
    """Some items are refused with an error diagnostic."""
    options: dict[str, str] = field(default_factory=dict)
    link: tuple[str, str] | None = None
    """A vendor's user id (system, value) the file names its patient by, linked first."""
    patient_id: str | None = None
    """A literal Patient id the file refers to, created first."""
    check: Check | None = None
    codes: frozenset[str] = frozenset()
    """Diagnostic codes that must be among the report's diagnostics."""
    quarantined: int = 0


def loinc(obs: Obs) -> str:
    return next(c["code"] for c in obs["code"]["coding"] if c["system"] == "http://loinc.org")


def by_loinc(observations: list[Obs], code: str) -> list[Obs]:
    return [o for o in observations if loinc(o) == code]


def qty(obs: Obs) -> tuple[Decimal, str]:
    q = obs["valueQuantity"]
    return Decimal(str(q["value"])), q["code"]


def comps(obs: Obs) -> dict[str, Decimal]:
    return {
        c["code"]["coding"][0]["code"]: Decimal(str(c["valueQuantity"]["value"]))
        for c in obs["component"]
    }


def diag_codes(report: IngestReport) -> list[str]:
    return [d["code"] for d in report.diagnostics]


# ---- what each file says ---------------------------------------------------------------


def _bp_140_60(rep: IngestReport, obs: list[Obs]) -> None:
    (bp,) = obs
    assert loinc(bp) == "85354-9" and comps(bp) == {"8480-6": 140, "8462-4": 60}
    assert bp["effectiveDateTime"].startswith("2016-02-05T") or "-08:00" in str(bp)


def _glucose_95_mgdl(rep: IngestReport, obs: list[Obs]) -> None:
    (g,) = obs
    assert loinc(g) == "15074-8" and qty(g) == (Decimal("5.3"), "mmol/L")


def _temp_96_5_f(rep: IngestReport, obs: list[Obs]) -> None:
    (t,) = obs
    assert loinc(t) == "8310-5" and qty(t) == (Decimal("35.8"), "Cel")


def _weight_over_interval(rep: IngestReport, obs: list[Obs]) -> None:
    (w,) = obs
    assert loinc(w) == "29463-7" and qty(w) == (Decimal(50), "kg")
    assert w["effectivePeriod"]["start"] < w["effectivePeriod"]["end"]


def _hr(value: int) -> Check:
    def check(rep: IngestReport, obs: list[Obs]) -> None:
        (hr,) = by_loinc(obs, "8867-4")
        assert qty(hr) == (Decimal(value), "/min")

    return check


def _spo2(value: int) -> Check:
    def check(rep: IngestReport, obs: list[Obs]) -> None:
        (s,) = by_loinc(obs, "2708-6")
        assert qty(s) == (Decimal(value), "%")

    return check


def _ihealth_bp(rep: IngestReport, obs: list[Obs]) -> None:
    (bp,) = obs
    assert comps(bp) == {"8480-6": 130, "8462-4": 95}
    # a heart rate of 0 is iHealth's "not measured": skipped with a reason, never a value
    assert not by_loinc(obs, "8867-4")


def _csv_rows(values: list[str]) -> Check:
    def check(rep: IngestReport, obs: list[Obs]) -> None:
        assert sorted(str(qty(o)[0]) for o in obs) == sorted(values)
        assert {qty(o)[1] for o in obs} == {"mmol/L"}
        assert {loinc(o) for o in obs} == {"14743-9"}

    return check


def _healthkit(rep: IngestReport, obs: list[Obs]) -> None:
    (hr,) = obs
    assert loinc(hr) == "8867-4" and qty(hr) == (Decimal(72), "/min")
    assert hr["effectiveDateTime"] == "2018-09-10T02:28:55-07:00"


def _apple_export(rep: IngestReport, obs: list[Obs]) -> None:
    # mmol<180.1558800000541>/L: HealthKit's mmol/L of glucose, its molar mass annotated
    glucose = by_loinc(obs, "15074-8")
    assert sorted(qty(g) for g in glucose) == [
        (Decimal("4.59"), "mmol/L"),
        (Decimal("5.23"), "mmol/L"),
    ]
    # the blood-pressure correlation is one panel, not a lone systolic and a lone diastolic
    (bp,) = by_loinc(obs, "85354-9")
    assert comps(bp) == {"8480-6": 136, "8462-4": 69}
    assert not by_loinc(obs, "8480-6") and not by_loinc(obs, "8462-4")
    assert bp["effectiveDateTime"] == "2024-01-10T11:30:00+01:00"
    # 15-minute step counts are not "steps in 24 hours": their own code and their interval
    assert not by_loinc(obs, "41950-7")
    steps = sorted(by_loinc(obs, "55423-8"), key=lambda o: o["effectivePeriod"]["start"])
    assert [(qty(s), s["effectivePeriod"]) for s in steps] == [
        (
            (Decimal(234), "{steps}"),
            {"start": "2023-11-20T14:00:00+01:00", "end": "2023-11-20T14:15:00+01:00"},
        ),
        (
            (Decimal(456), "{steps}"),
            {"start": "2023-11-20T14:15:00+01:00", "end": "2023-11-20T14:30:00+01:00"},
        ),
    ]
    assert sorted(qty(h)[0] for h in by_loinc(obs, "8867-4")) == [56, 96, 150]
    assert sorted(qty(w)[0] for w in by_loinc(obs, "29463-7")) == [Decimal("68.5"), 72]
    assert [qty(s) for s in by_loinc(obs, "2708-6")] == [(Decimal(98), "%")]
    assert len(obs) == 11
    # workouts and activity summaries are counted and skipped with their reason
    skipped_here = {d["location"].split("[")[0] for d in rep.diagnostics if d["code"] in SKIP_CODES}
    assert {"Workout", "ActivitySummary"} <= skipped_here


def _medcom(rep: IngestReport, obs: list[Obs]) -> None:
    # "Glukose;B" 11 with operator greater_than: at least 11, never exactly 11
    (g,) = by_loinc(obs, "15074-8")
    assert g["valueQuantity"]["comparator"] == ">" and qty(g) == (Decimal(11), "mmol/L")
    # the Danish home-BP codes (DNK… and MedCom's MCS88019/MCS88020), mm/HG read as mm[Hg]
    assert sorted(qty(o) for o in by_loinc(obs, "8480-6")) == [
        (Decimal(100), "mm[Hg]"),
        (Decimal(135), "mm[Hg]"),
    ]
    assert sorted(qty(o) for o in by_loinc(obs, "8462-4")) == [
        (Decimal(90), "mm[Hg]"),
        (Decimal(95), "mm[Hg]"),
    ]
    assert qty(by_loinc(obs, "8867-4")[0]) == (Decimal(66), "/min")
    assert all("comparator" not in o.get("valueQuantity", {}) for o in obs if o is not g)


def _phmr_12ab78(rep: IngestReport, obs: list[Obs]) -> None:
    # the pulse sent as a ratio (RTO_PQ_PQ: 67 per 1 min) is a heart rate of 67/min
    assert sorted(qty(o)[0] for o in by_loinc(obs, "8867-4")) == [67, 67, 67, 67, 80]
    # temperatures of 41-45 "[degF]" (Celsius numbers), a mean pressure of 0 and a glucose
    # of 373 mmol/L are refused, each with its reason, never stored
    assert not by_loinc(obs, "8310-5") and not by_loinc(obs, "8478-0")
    assert not by_loinc(obs, "15074-8")
    implausible = [d for d in rep.diagnostics if d["code"] == "implausible-value"]
    assert len(implausible) == 5 + 5 + 3
    assert sorted(qty(o)[0] for o in by_loinc(obs, "8480-6")) == [114, 114, 114, 114, 120]


def _phd_glucose(rep: IngestReport, obs: list[Obs]) -> None:
    # a private compound code whose one quantity is a capillary glucose (MDC 160184)
    (g,) = obs
    assert loinc(g) == "14743-9" and qty(g) == (Decimal("6.3"), "mmol/L")
    assert "component" not in g


def _resp_12(rep: IngestReport, obs: list[Obs]) -> None:
    (r,) = obs
    assert loinc(r) == "9279-1" and qty(r) == (Decimal(12), "/min")
    assert r["effectiveDateTime"] == "2020-02-05T07:25:00-08:00"


def _omh_steps(rep: IngestReport, obs: list[Obs]) -> None:
    # 6000 steps in one hour (schema 2.0's bare number): not "steps in 24 hours"
    (st,) = obs
    assert loinc(st) == "55423-8" and qty(st) == (Decimal(6000), "{steps}")
    assert st["effectivePeriod"] == {
        "start": "2016-02-05T06:25:00+00:00",
        "end": "2016-02-05T07:25:00+00:00",
    }


def _phmr_generated(rep: IngestReport, obs: list[Obs]) -> None:
    glucose = [o for o in obs if qty(o)[1] == "mmol/L"]
    weights = by_loinc(obs, "29463-7")
    assert (len(glucose), len(weights)) == (282, 4)
    # mg/dL converted: every value a plausible mmol/L
    assert all(Decimal(1) <= qty(g)[0] <= Decimal(40) for g in glucose)


def _phd_bp(rep: IngestReport, obs: list[Obs]) -> None:
    (bp,) = obs
    assert comps(bp) == {"8480-6": 116, "8462-4": 71}  # the NaN mean is left out
    assert bp["effectiveDateTime"].endswith("-05:00")


def _nonin(rep: IngestReport, obs: list[Obs]) -> None:
    assert {loinc(o) for o in obs} <= {"2708-6", "8867-4"}
    assert all(Decimal(50) <= qty(o)[0] <= Decimal(100) for o in by_loinc(obs, "2708-6"))


CASES: dict[str, Case] = {
    # ---- HL7 v2 ----------------------------------------------------------------------
    "hl7v2/ipf-valid-fitness-continua-wan.hl7v2": Case("hl7v2", 0, refuses=True),
    "hl7v2/ipf-valid-fitness-and-activity-continua-wan.hl7v2": Case("hl7v2", 0, refuses=True),
    "hl7v2/ipf-valid-pcd01-response.hl7v2": Case("hl7v2", None),
    "hl7v2/ipf-invalid-wan-response.hl7v2": Case("hl7v2", None),
    "hl7v2/ipf-msg-07-glucose-sn.hl7": Case("hl7v2", 0, refuses=True),
    "hl7v2/ipf-dsl-msg-04-repeating-nm.hl7": Case("hl7v2", 0, refuses=True),
    "hl7v2/lfh-ORU-multiline-short-mixed.hl7": Case("hl7v2", 0, codes=frozenset({"unsupported"})),
    "hl7v2/mfc-ORU-R01-01.hl7": Case("hl7v2", 0, codes=frozenset({"unsupported"})),
    "hl7v2/mfc-LAB-ORU-2.hl7": Case("hl7v2", 0, refuses=True),
    # ---- FHIR ------------------------------------------------------------------------
    "fhir/r4-observation-example-f202-temperature.json": Case("fhir", 0, refuses=True),
    "fhir/r4-observation-example-bloodpressure-cancel.json": Case(
        "fhir", 0, codes=frozenset({"missing-value"})
    ),
    "fhir/r4-observation-example-mbp.json": Case("fhir", 0, refuses=True),
    "fhir/phd-bundle-continuousnonin.json": Case(
        "fhir", 24, refuses=True, patient_id="patientExample-1", check=_nonin
    ),
    "fhir/phd-compound-numeric-blood-pressure-no-mean.json": Case(
        "fhir", 1, patient_id="patientExample-1", check=_phd_bp
    ),
    "fhir/phd-numeric-observation-not-a-number.json": Case(
        "fhir", 0, codes=frozenset({"missing-value"})
    ),
    "fhir/phd-compound-observation-glucose.json": Case(
        "fhir", 1, patient_id="patientExample-1", check=_phd_glucose
    ),
    "fhir/phd-numeric-spotnumeric.json": Case(
        "fhir", 1, patient_id="patientExample-1", check=_hr(48)
    ),
    "fhir/phd-rtsa-example.json": Case("fhir", 0, codes=frozenset({"unsupported"})),
    "fhir/vkp-Observation-vkp-body-weight-create.json": Case(
        "fhir", 0, refuses=True, codes=frozenset({"invalid-identifier"})
    ),
    "fhir/vkp-Observation-vkp-heartrate-create.json": Case(
        "fhir", 0, refuses=True, codes=frozenset({"invalid-identifier"})
    ),
    # ---- Open mHealth ----------------------------------------------------------------
    "openmhealth/blood-pressure-1.0_pass_with-everything.json": Case(
        "openmhealth", 0, codes=frozenset({"not-a-measurement"})
    ),
    "openmhealth/blood-pressure-3.0_pass_with-posture-and-location.json": Case(
        "openmhealth", 1, check=_bp_140_60
    ),
    "openmhealth/body-weight-3.0_fail_invalid-unit.json": Case("openmhealth", 0, refuses=True),
    "openmhealth/blood-pressure-4.0_fail_invalid-timeframe-format.json": Case(
        "openmhealth", 0, refuses=True
    ),
    "openmhealth/blood-glucose-4.0_pass_with-temporal-relationship-to-meal.json": Case(
        "openmhealth", 1, check=_glucose_95_mgdl
    ),
    "openmhealth/blood-glucose-3.0_fail_missing-time-frame.json": Case(
        "openmhealth", 0, refuses=True, codes=frozenset({"missing-timestamp"})
    ),
    "openmhealth/body-temperature-4.0_pass_basal-temperature.json": Case(
        "openmhealth", 1, check=_temp_96_5_f
    ),
    "openmhealth/body-temperature-4.0_fail_invalid-unit.json": Case("openmhealth", 0, refuses=True),
    "openmhealth/body-temperature-4.0_pass_valid-temperature-with-statistic.json": Case(
        "openmhealth", 0, codes=frozenset({"not-a-measurement"})
    ),
    "openmhealth/body-weight-1.0_pass_time-interval-time-frame.json": Case(
        "openmhealth", 1, check=_weight_over_interval
    ),
    "openmhealth/body-weight-3.0_fail_missing-body-weight-unit.json": Case(
        "openmhealth", 0, refuses=True
    ),
    "openmhealth/heart-rate-1.0_pass_with-everything.json": Case("openmhealth", 1, check=_hr(50)),
    "openmhealth/heart-rate-2.0_fail_incorrect-unit.json": Case("openmhealth", 0, refuses=True),
    "openmhealth/oxygen-saturation-2.0_pass_saturation-only.json": Case(
        "openmhealth", 1, check=_spo2(95)
    ),
    "openmhealth/oxygen-saturation-1.0_fail_invalid-unit.json": Case(
        "openmhealth", 0, refuses=True
    ),
    "openmhealth/step-count-2.0_pass_valid-step-count.json": Case(
        "openmhealth", 1, check=_omh_steps
    ),
    "openmhealth/respiratory-rate-2.0_pass_respiratory-rate-only.json": Case(
        "openmhealth", 1, check=_resp_12
    ),
    "openmhealth/data-point-1.0_pass_empty-body.json": Case(
        "openmhealth", 0, codes=frozenset({"unsupported"})
    ),
    # ---- vendor JSON through a mapping profile --------------------------------------------
    "mapped-json/shimmer-ihealth-bp-no-heart-rate.json": Case(
        "mapped-json",
        1,
        options={"profile": "ihealth-bp"},
        check=_ihealth_bp,
        codes=frozenset({"missing-value"}),
    ),
    "mapped-json/shimmer-ihealth-spo2-no-heart-rate.json": Case(
        "mapped-json",
        1,
        options={"profile": "ihealth-spo2"},
        check=_spo2(99),
        codes=frozenset({"missing-value"}),
    ),
    "mapped-json/shimmer-ihealth-spo2-no-oxygen-saturation.json": Case(
        "mapped-json", 0, options={"profile": "ihealth-spo2"}, codes=frozenset({"missing-value"})
    ),
    "mapped-json/shimmer-ihealth-glucose-empty.json": Case(
        "mapped-json", 0, options={"profile": "ihealth-glucose"}
    ),
    "mapped-json/shimmer-ihealth-bp-empty.json": Case(
        "mapped-json", 0, options={"profile": "ihealth-bp"}
    ),
    "mapped-json/shimmer-googlefit-merge-heart-rate.json": Case(
        "mapped-json",
        0,
        refuses=True,
        options={"profile": "googlefit-weight"},
        codes=frozenset({"wrong-data-type"}),
    ),
    "mapped-json/shimmer-googlefit-merge-height.json": Case(
        "mapped-json",
        0,
        refuses=True,
        options={"profile": "googlefit-weight"},
        codes=frozenset({"wrong-data-type"}),
    ),
    "mapped-json/pywithings-measurement_list.json": Case(
        "mapped-json", None, options={"profile": "withings-body-measures"}
    ),
    "mapped-json/pywithings-measurement_list_2.json": Case(
        "mapped-json", None, options={"profile": "withings-body-measures"}
    ),
    # ---- Apple Health ------------------------------------------------------------------
    "apple-health/healthkit-to-sqlite-export.xml": Case(
        "apple-health", 1, refuses=True, check=_healthkit, codes=frozenset({"not-a-measurement"})
    ),
    "apple-health/apple-health-mcp-export.xml": Case(
        "apple-health", 11, refuses=True, check=_apple_export
    ),
    # ---- CDA PHMR (Continua) -------------------------------------------------------------
    "cda-phmr/ipf-generatedPHM.xml": Case(
        "cda-phmr",
        286,
        link=(
            "urn:dho-interop:vendor-user:corpus:2.16.840.1.113883.19.5",
            "30d318c3-a22b-471b-9ef8-f96bbb68be12",
        ),
        check=_phmr_generated,
    ),
    "cda-phmr/ipf-12AB78.xml": Case(
        "cda-phmr",
        28,
        refuses=True,
        link=("urn:dho-interop:vendor-user:corpus:1.3.6.1.4.1.21367.2009.1.2.300", "IBM-0"),
        check=_phmr_12ab78,
    ),
    "cda-phmr/ipf-ProvideAndRegisterDocumentSet-xdr.xml": Case("cda-phmr", None),
    # ---- OpenTele / MedCom -------------------------------------------------------------
    "opentele/MedComKD_testeksempel_1_version_1.0.xml": Case(
        "opentele",
        8,
        refuses=True,
        link=("urn:oid:1.2.208.176.1.2", "2512484916"),
        check=_medcom,
    ),
    "opentele/RH_blodtryk_puls.json": Case("opentele", 0, codes=frozenset({"not-a-measurement"})),
    # ---- CSV diaries through a mapping profile -------------------------------------------
    "mapped-csv/accuchek-DiaryWithWrongUnits.csv": Case(
        "mapped-csv",
        3,
        refuses=True,
        options={"profile": "accu-chek-csv"},
        codes=frozenset({"unknown-unit", "not-a-measurement"}),
    ),
    "mapped-csv/accuchek-DiaryWithTooFewColumns.csv": Case(
        "mapped-csv",
        1,
        refuses=True,
        options={"profile": "accu-chek-csv"},
        check=_csv_rows(["5.2"]),
        codes=frozenset({"invalid"}),
    ),
    "mapped-csv/accuchek-DiaryWithTooManyColumns.csv": Case(
        "mapped-csv",
        1,
        refuses=True,
        options={"profile": "accu-chek-csv"},
        check=_csv_rows(["5.2"]),
        codes=frozenset({"invalid"}),
    ),
    "mapped-csv/accuchek-DiaryWithWrongSecondHeadline.csv": Case(
        "mapped-csv", None, options={"profile": "accu-chek-csv"}
    ),
    "mapped-csv/accuchek-DiaryWithTooFewLines.csv": Case(
        "mapped-csv", None, options={"profile": "accu-chek-csv"}
    ),
}


def test_every_corpus_file_has_a_case(shared_dir: Path) -> None:
    files = {
        p.relative_to(CORPUS).as_posix()
        for p in CORPUS.rglob("*")
        if p.is_file() and p.name != "PROVENANCE.md"
    }
    assert files == set(CASES)


def _observations(client: Any, report: IngestReport, limit: int | None = None) -> list[Obs]:
    out = []
    for ref in report.resources[:limit]:
        if ref.startswith("Observation/"):
            r = client.get(f"/fhir/{ref}", headers=ADMIN)
            assert r.status_code == 200, r.text
            out.append(r.json())
    return out


def skipped(report: IngestReport) -> int:
    """Items not taken, each with a reason (one per item location)."""
    return len(
        {
            d.get("location")
            for d in report.diagnostics
            if d["code"] in SKIP_CODES
            and d["severity"] in ("information", "warning")
            and ".component[" not in (d.get("location") or "")
        }
    )


def ingest_case(client: Any, services: Any, rel: str) -> tuple[IngestReport | None, list[Obs]]:
    case = CASES[rel]
    r = client.post(
        "/fhir/Patient",
        json={"resourceType": "Patient", "identifier": [{"system": FNR_OID, "value": FNR}]},
        headers=ADMIN,
    )
    assert r.status_code == 201, r.text
    pid = r.json()["id"]
    if case.patient_id:
        r = client.put(
            f"/fhir/Patient/{case.patient_id}",
            json={"resourceType": "Patient", "id": case.patient_id},
            headers=ADMIN,
        )
        assert r.status_code in (200, 201), r.text
    if case.link:
        with services.store.write(WriteContext(None, Door.LINK)) as tx:
            link_patient(tx.conn, case.link[0], case.link[1], FNR, created_by="test")
    meta = IngestMeta(
        source="corpus",
        patient=PatientRef(FNR_OID, FNR),
        options=case.options,
        filename=Path(rel).name,
    )
    data = (CORPUS / rel).read_bytes()
    pipe = IngestPipeline(services)
    if case.created is None:
        with pytest.raises(IngestRejected) as info:
            pipe.ingest(case.adapter, data, meta)
        (d,) = info.value.report.diagnostics
        assert d["message"] and d["severity"] == "fatal"
        return None, []
    report = pipe.ingest(case.adapter, data, meta)
    observations = _observations(client, report)
    patients = {o["subject"]["reference"] for o in observations}
    wanted = {f"Patient/{case.patient_id}"} if case.patient_id else {f"Patient/{pid}"}
    assert patients <= wanted, "every Observation is about the patient the file names"
    return report, observations


@pytest.mark.parametrize("rel", sorted(CASES))
def test_corpus_file(client, services, rel: str) -> None:  # type: ignore[no-untyped-def]
    case = CASES[rel]
    report, observations = ingest_case(client, services, rel)
    if report is None:
        return
    diagnostics = report.diagnostics
    assert all(d["message"] and d["code"] for d in diagnostics)
    assert (report.created, report.quarantined) == (case.created, case.quarantined), diagnostics
    assert (report.rejected > 0) == case.refuses, diagnostics
    assert case.codes <= set(diag_codes(report)), diagnostics
    accounted = (
        report.created
        + report.updated
        + report.duplicate
        + report.quarantined
        + report.rejected
        + skipped(report)
    )
    assert accounted >= report.items_seen, f"items without an outcome: {diagnostics}"
    if report.items_seen == 0 or report.created + report.quarantined == 0:
        assert diagnostics, "a file that stores nothing says why"
    if case.check is not None:
        case.check(report, observations)


@pytest.mark.parametrize(
    "rel",
    [
        "mapped-json/pywithings-measurement_list.json",
        "mapped-json/pywithings-measurement_list_2.json",
    ],
)
def test_withings_lists_land_wrapped_as_the_api_returns_them(  # type: ignore[no-untyped-def]
    client, services, rel: str
) -> None:
    """The bare list is refused (above); wrapped in the Measure API's envelope it lands:
    every group stored, refused or skipped with its reason."""
    import orjson

    ingest_case(client, services, "mapped-json/shimmer-ihealth-bp-empty.json")  # the patient
    body = orjson.loads((CORPUS / rel).read_bytes())
    wrapped = orjson.dumps({"status": 0, "body": {"measuregrps": body, "more": 0, "offset": 0}})
    meta = IngestMeta(
        source="corpus",
        patient=PatientRef(FNR_OID, FNR),
        options={"profile": "withings-body-measures"},
    )
    report = IngestPipeline(services).ingest("mapped-json", wrapped, meta)
    assert report.items_seen == len(body)
    assert report.created > 0
    for d in report.diagnostics:
        assert d["message"] and d["code"]
    observations = _observations(client, report, limit=300)
    assert {loinc(o) for o in observations} <= {"29463-7", "85354-9", "8867-4", "8310-5", "2708-6"}
    # a group whose systolic equals its diastolic (the account has several) is refused
    assert any("is not above diastolic" in d["message"] for d in report.diagnostics) == (
        rel.endswith("measurement_list.json")
    )
