"""The mapping step: codes, units, conversions, plausibility, HI/LO, time checks, Observation shape."""

from __future__ import annotations

import shutil
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from importlib.resources import files
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from fhir.resources.R4B.observation import Observation
from hypothesis import given
from hypothesis import strategies as st

from adapters.base import FNR_OID, LOINC, MDC, Code, Component, Measurement, PatientRef
from interop.mapping import MappingError, MappingSet, build_observation, observation_identifier

NOW = datetime(2026, 6, 1, 12, tzinfo=UTC)
T = datetime(2026, 5, 30, 8, 30, tzinfo=ZoneInfo("Europe/Oslo"))
P = PatientRef(FNR_OID, "13031353453")
MS = MappingSet.load()


def m(code: Code, value: str | None, unit: str | None, **kw) -> Measurement:  # type: ignore[no-untyped-def]
    return Measurement(
        code,
        Decimal(value) if value is not None else None,
        unit,
        kw.pop("effective", T),
        P,
        "item 1",
        **kw,
    )


def obs_of(meas: Measurement) -> dict:  # type: ignore[type-arg]
    out = MS.map(meas, now=NOW)
    assert out.mapped is not None, out.diagnostics
    obs = build_observation(
        out.mapped,
        patient_reference="Patient/p1",
        identifier=observation_identifier(meas),
        issued=NOW,
    )
    Observation.model_validate(obs)
    return obs


@pytest.mark.parametrize(
    ("code", "expected"),
    [
        (Code(MDC, "149546"), "8867-4"),
        (Code(MDC, "149530"), "8867-4"),
        (Code(LOINC, "59408-5"), "2708-6"),
        (Code("urn:oid:2.16.578.1.12.4.1.1.7280", "NPU02187"), "15074-8"),
        (Code("urn:dho-interop:code:withings", "1"), "29463-7"),
    ],
)
def test_concept_lookup_from_every_system(code: Code, expected: str) -> None:
    concept = MS.concept_for(code)
    assert concept is not None and concept.loinc.code == expected


def test_conversions_and_loinc_switch() -> None:
    bp = obs_of(
        m(
            Code(MDC, "150020"),
            None,
            None,
            components=(
                Component(Code(MDC, "150021"), Decimal("16"), "kPa"),
                Component(Code(MDC, "150022"), Decimal("10.5"), "kPa"),
            ),
        )
    )
    assert [c["valueQuantity"]["value"] for c in bp["component"]] == [120, 79]
    assert bp["code"]["coding"][0]["code"] == "85354-9" and "valueQuantity" not in bp
    glu = obs_of(m(Code(LOINC, "41653-7"), "180", "mg/dl"))
    assert glu["code"]["coding"][0]["code"] == "14743-9"
    assert all(c["code"] != "41653-7" for c in glu["code"]["coding"])
    assert glu["valueQuantity"] == {
        "value": 10.0,
        "unit": "mmol/L",
        "system": "http://unitsofmeasure.org",
        "code": "mmol/L",
    }
    assert obs_of(m(Code(LOINC, "8310-5"), "98.6", "[degF]"))["valueQuantity"]["value"] == 37.0
    assert obs_of(m(Code(LOINC, "29463-7"), "154", "lb"))["valueQuantity"]["value"] == 69.9
    assert obs_of(m(Code(LOINC, "2708-6"), "0.97", "1"))["valueQuantity"]["value"] == 97


def test_rejections_name_their_reason() -> None:
    def reason(meas: Measurement) -> str:
        out = MS.map(meas, now=NOW)
        assert out.mapped is None
        return out.diagnostics[0].code

    assert reason(m(Code(LOINC, "8867-4"), "72", "furlongs")) == "unknown-unit"
    assert (
        reason(m(Code(LOINC, "8867-4"), "72", "mg/dL")) == "unknown-unit"
    )  # no conversion for pulse
    assert reason(m(Code(LOINC, "8867-4"), "400", "/min")) == "implausible-value"
    assert reason(m(Code(LOINC, "1234-5"), "1", "/min")) == "unknown-code"
    assert (
        reason(m(Code(LOINC, "8867-4"), "70", "/min", effective=NOW + timedelta(hours=1)))
        == "future-timestamp"
    )
    assert (
        reason(m(Code(LOINC, "8867-4"), "70", "/min", effective=datetime(1999, 1, 1, tzinfo=UTC)))
        == "ancient-timestamp"
    )
    bp = m(
        Code(MDC, "150020"),
        None,
        None,
        components=(
            Component(Code(MDC, "150021"), Decimal("80"), "mm[Hg]"),
            Component(Code(MDC, "150022"), Decimal("90"), "mm[Hg]"),
        ),
    )
    assert reason(bp) == "implausible-value"


def test_meter_hi_lo_is_never_a_number() -> None:
    hi = obs_of(
        m(
            Code("urn:dho-interop:code:accu-chek", "blood-glucose"),
            None,
            "mmol/L",
            out_of_range="HI",
        )
    )
    assert hi["valueQuantity"]["comparator"] == ">" and hi["valueQuantity"]["value"] == 33.3
    assert hi["interpretation"][0]["coding"][0]["code"] == ">"
    lo = obs_of(
        m(
            Code("urn:dho-interop:code:accu-chek", "blood-glucose"),
            None,
            "mmol/L",
            out_of_range="LO",
        )
    )
    assert lo["valueQuantity"]["comparator"] == "<"


def test_assumed_zone_is_recorded_and_identifier_is_stable() -> None:
    meas = m(Code(LOINC, "8867-4"), "70", "/min", timezone_assumed=True)
    obs = obs_of(meas)
    assert obs["_effectiveDateTime"]["extension"][0]["valueBoolean"] is True
    assert observation_identifier(meas) == observation_identifier(
        m(Code(LOINC, "8867-4"), "70", "/min", timezone_assumed=True)
    )
    later = m(Code(LOINC, "8867-4"), "70", "/min", effective=T + timedelta(minutes=1))
    assert observation_identifier(later) != observation_identifier(meas)


def test_bad_mapping_file_is_a_clear_error(tmp_path: Path) -> None:
    src = Path(str(files("mappings")))
    for name in ("concepts.yaml", "codes.yaml", "units.yaml", "plausibility.yaml"):
        shutil.copy(src / name, tmp_path / name)
    (tmp_path / "codes.yaml").write_text(
        "version: x\ncodes:\n  - {system: s, code: c, concept: no-such}\n"
    )
    with pytest.raises(MappingError, match="codes.yaml: codes.0: unknown concept"):
        MappingSet.load(tmp_path)
    (tmp_path / "codes.yaml").write_text("version: [\n")
    with pytest.raises(MappingError, match="codes.yaml: not valid YAML"):
        MappingSet.load(tmp_path)


@given(st.decimals(min_value=Decimal("2.5"), max_value=Decimal("330"), places=1))
def test_pound_conversion_round_trips(kg: Decimal) -> None:
    lb = (kg / Decimal("0.45359237")).quantize(Decimal("0.01"))
    out = MS.map(m(Code(LOINC, "29463-7"), str(lb), "[lb_av]"), now=NOW)
    assert out.mapped is not None and abs(out.mapped.value - kg) <= Decimal("0.1")  # type: ignore[operator]


@pytest.mark.parametrize(
    ("unit", "ucum"),
    [
        ("mmol<180.1558800000541>/L", "mmol/L"),  # HealthKit: molar mass annotated
        ("mmol{glucose}/L", "mmol/L"),
        ("{beat}/min", "/min"),
        ("beat/min", "/min"),
        ("{steps}", "{steps}"),
        ("mmol<glucose>/L", None),  # only a molar mass is an angle-bracket annotation
        ("{beat}", None),  # an annotation alone is no unit
        ("{beat}/min}", None),
    ],
)
def test_unit_annotations_are_not_units(unit: str, ucum: str | None) -> None:
    assert MS.ucum(unit) == ucum


def test_interval_counts_keep_their_interval_and_a_code_that_matches_it() -> None:
    steps = Code("urn:dho-interop:code:apple-health", "HKQuantityTypeIdentifierStepCount")
    quarter = obs_of(m(steps, "234", "{steps}", effective_end=T + timedelta(minutes=15)))
    assert quarter["code"]["coding"][0]["code"] == "55423-8"
    assert quarter["valueQuantity"]["code"] == "{steps}"
    assert quarter["effectivePeriod"]["end"] > quarter["effectivePeriod"]["start"]
    assert "effectiveDateTime" not in quarter
    day = obs_of(m(steps, "8000", "{steps}", effective_end=T + timedelta(hours=24)))
    assert day["code"]["coding"][0]["code"] == "41950-7"
    assert day["valueQuantity"]["code"] == "1/(24.h)"
    # a day with a daylight-saving change is still a day
    assert (
        obs_of(m(steps, "8000", "{steps}", effective_end=T + timedelta(hours=23)))["code"][
            "coding"
        ][0]["code"]
        == "41950-7"
    )


def test_an_interval_code_without_an_alternative_refuses_another_interval(
    tmp_path: Path,
) -> None:
    src = Path(str(files("mappings")))
    for f in src.glob("*.yaml"):
        shutil.copy(f, tmp_path / f.name)
    concepts = (tmp_path / "concepts.yaml").read_text()
    (tmp_path / "concepts.yaml").write_text(
        concepts.replace("    other_period: steps-period\n", "")
    )
    ms = MappingSet.load(tmp_path)
    out = ms.map(
        m(Code(LOINC, "41950-7"), "234", "{steps}", effective_end=T + timedelta(minutes=15)),
        now=NOW,
    )
    assert out.mapped is None
    (d,) = out.diagnostics
    assert d.code == "invalid" and "24 h" in d.message and "0.25 h" in d.message


def test_a_bound_keeps_its_comparator() -> None:
    obs = obs_of(m(Code(LOINC, "15074-8"), "11", "mmol/L", comparator=">"))
    assert obs["valueQuantity"] == {
        "value": 11,
        "comparator": ">",
        "unit": "mmol/L",
        "system": "http://unitsofmeasure.org",
        "code": "mmol/L",
    }
