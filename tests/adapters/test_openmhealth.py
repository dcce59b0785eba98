"""Open mHealth adapter on every sample, mapped through the real tables."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from adapters.base import FNR_OID, AdapterError, IngestMeta, PatientRef
from adapters.openmhealth import OpenMHealthAdapter
from interop.mapping import MappingSet, build_observation, observation_identifier
from tests.conftest import CONFORMANCE

A = OpenMHealthAdapter()
MS = MappingSet.load()
META = IngestMeta(source="app", patient=PatientRef(FNR_OID, "13031353453"))
NOW = datetime(2026, 11, 1, tzinfo=UTC)

# file → (LOINC code of the Observation, value, UCUM unit) or (None, diagnostic code)
EXPECTED = {
    "blood-pressure-4.0_with-posture-location-relation.json": ("85354-9", [125, 60], "mm[Hg]"),
    "body-weight-3.0_body-weight-only.json": ("29463-7", 50, "kg"),
    "body-temperature-4.0_valid-temperature.json": ("8310-5", 36.1, "Cel"),
    "heart-rate-2.0_with-temporal-relationship-to-sleep.json": ("8867-4", 67.5, "/min"),
    "oxygen-saturation-2.0_with-oxygen.json": ("2708-6", 95, "%"),
    "blood-pressure-4.0_shouldFail_invalid-unit.json": (None, "unknown-unit"),
    "blood-glucose-4.0_with-everything.json": (None, "not-a-measurement"),
    "data-point-1.0_valid-data-point.json": (None, "unsupported"),
}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_sample(name: str) -> None:
    r = A.parse((CONFORMANCE / "vendor/openmhealth" / name).read_bytes(), META)
    want = EXPECTED[name]
    if want[0] is None:
        assert r.measurements == []
        assert [d.code for d in r.diagnostics] == [want[1]]
        return
    [m] = r.measurements
    out = MS.map(m, now=NOW)
    assert out.mapped is not None, out.diagnostics
    obs = build_observation(
        out.mapped, patient_reference="Patient/p", identifier=observation_identifier(m), issued=NOW
    )
    assert obs["code"]["coding"][0]["code"] == want[0]
    if "component" in obs:
        assert [c["valueQuantity"]["value"] for c in obs["component"]] == want[1]
    else:
        assert obs["valueQuantity"]["value"] == want[1] and obs["valueQuantity"]["code"] == want[2]


def test_schemas_are_not_data_and_patient_is_required() -> None:
    r = A.parse(
        (CONFORMANCE / "vendor/openmhealth/schema_blood-pressure-4.0.json").read_bytes(), META
    )
    assert r.measurements == [] and r.diagnostics[0].code == "unsupported"
    r = A.parse(
        (CONFORMANCE / "vendor/openmhealth/body-weight-3.0_body-weight-only.json").read_bytes(),
        IngestMeta(source="app"),
    )
    assert r.diagnostics[0].code == "missing-patient"
    with pytest.raises(AdapterError):
        A.parse(b"[1,", META)
