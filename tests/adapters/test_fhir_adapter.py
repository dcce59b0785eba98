"""The fhir adapter on every Observation-bearing example in ../shared/conformance/fhir."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest

from adapters.base import FHIR_REFERENCE, FNR_OID, AdapterError, IngestMeta
from adapters.fhir import FhirAdapter
from interop.mapping import MappingSet
from tests.conftest import CONFORMANCE

A = FhirAdapter()
MS = MappingSet.load()
META = IngestMeta(source="test")

# file → [(source code, value, unit, components, outcome of mapping)], diagnostics codes
EXPECTED: dict[str, tuple[list[tuple[str, str | None, str | None, int, str]], list[str]]] = {
    "fr-telesurveillance/Observation-TLSVObservationExample02.json": ([], ["unsupported"]),
    "fr-telesurveillance/Observation-TLSVObservationExample04.json": (
        [("29463-7", "62", "[kg]", 0, "unknown-unit")],
        [],
    ),
    "no-vkp-pmd/Bundle-pmd-Bundle-Request-example.json": ([("8310-5", "37", "Cel", 0, "ok")], []),
    "no-vkp-pmd/Observation-vkp-glucose-create.json": ([("15074-8", "6.3", "mmol/l", 0, "ok")], []),
    "no-vkp-pmd/Observation-vkp-oxygen-saturation-create.json": (
        [("2708-6", "99", "%", 0, "ok")],
        [],
    ),
    "no-vkp-pmd/Observation-vkp-blood-pressure-profile-create.json": (
        [("85354-9", None, None, 4, "ok")],
        [],
    ),
    "no-vkp-pmd/Observation-vkp-cfs-create.json": (
        [("763264000", "2", None, 0, "unknown-code")],
        [],
    ),
    "phd/bundle-example-1.json": ([], ["unsupported", "missing-patient", "missing-patient"]),
    "phd/compound-numeric-blood-pressure.json": ([("85354-9", None, None, 3, "ok")], []),
    "phd/glucose-observation.json": ([("160368", "99", "mg/dL", 0, "ok")], []),
    "phd/numeric-spo2-alarm.json": ([("2708-6", "79.0", "%", 0, "ok")], ["unsupported"]),
    "phd/temperature-observation.json": ([("8310-5", "36.5", "Cel", 0, "ok")], []),
    "r4-core/observation-example-bloodpressure-dar.json": (
        [("85354-9", None, None, 1, "ok")],
        ["missing-value"],
    ),
    "r4-core/observation-example-bloodpressure.json": ([("85354-9", None, None, 2, "ok")], []),
    "r4-core/observation-example-body-temperature.json": (
        [("8310-5", "36.5", "Cel", 0, "ancient-timestamp")],
        [],
    ),
    "r4-core/observation-example-f001-glucose.json": ([("15074-8", "6.3", "mmol/L", 0, "ok")], []),
    "r4-core/observation-example-heart-rate.json": (
        [("8867-4", "44", "/min", 0, "ancient-timestamp")],
        [],
    ),
    "r4-core/observation-example-respiratory-rate.json": (
        [("9279-1", "26", "/min", 0, "ancient-timestamp")],
        [],
    ),
    "r4-core/observation-example-satO2.json": ([("2708-6", "95", "%", 0, "ok")], []),
    "r4-core/observation-example-spirometry.json": (
        [("152584", "820", "cL/s", 0, "unknown-unit")],
        [],
    ),
    "r4-core/observation-example-vitals-panel.json": ([], ["not-a-measurement"]),
    "r4-core/observation-example.json": ([("29463-7", "185", "[lb_av]", 0, "ok")], []),
}


@pytest.mark.parametrize("rel", sorted(EXPECTED))
def test_example(rel: str) -> None:
    result = A.parse((CONFORMANCE / "fhir" / rel).read_bytes(), META)
    want, diags = EXPECTED[rel]
    got = []
    for m in result.measurements:
        out = MS.map(m, now=datetime(2026, 11, 1, tzinfo=UTC))
        got.append(
            (
                m.code.code,
                None if m.value is None else str(m.value),
                m.unit,
                len(m.components),
                "ok" if out.mapped else out.diagnostics[0].code,
            )
        )
    assert got == want
    assert [d.code for d in result.diagnostics] == diags


def test_subjects_and_identifiers() -> None:
    r = A.parse(
        (CONFORMANCE / "fhir/no-vkp-pmd/Observation-vkp-glucose-create.json").read_bytes(), META
    )
    [m] = r.measurements
    assert (
        m.patient.system == FNR_OID and m.patient.value == "1000239"
    )  # rejected later: bad checksum
    assert m.source_id == ("http://dips.no/fhir/namingsystem/externalId", "testGlucoseexternalId5")
    r = A.parse((CONFORMANCE / "fhir/r4-core/observation-example-satO2.json").read_bytes(), META)
    assert r.measurements[0].patient.system == FHIR_REFERENCE
    assert r.measurements[0].value == Decimal(95)


def test_not_fhir_is_refused() -> None:
    with pytest.raises(AdapterError):
        A.parse(b"{not json", META)
    with pytest.raises(AdapterError):
        A.parse(b'{"hello": 1}', META)


def _glucose(quantity: dict[str, object]) -> bytes:
    import orjson

    return orjson.dumps(
        {
            "resourceType": "Observation",
            "status": "final",
            "code": {"coding": [{"system": "http://loinc.org", "code": "15074-8"}]},
            "subject": {"identifier": {"system": FNR_OID, "value": "13031353453"}},
            "effectiveDateTime": "2026-03-01T08:00:00+01:00",
            "valueQuantity": quantity,
        }
    )


def test_a_bound_is_its_value_and_comparator_not_the_meters_limit() -> None:
    q = {"value": 11, "comparator": ">", "unit": "mmol/L", "system": "http://unitsofmeasure.org"}
    (m,) = A.parse(_glucose({**q, "code": "mmol/L"}), META).measurements
    assert (m.value, m.comparator, m.out_of_range) == (Decimal(11), ">", None)
    mapped = MS.map(m, now=datetime.now(UTC)).mapped
    assert mapped is not None and mapped.value == Decimal(11)
    bad = A.parse(_glucose({**q, "comparator": "~"}), META)
    assert not bad.measurements
    assert [d.code for d in bad.diagnostics] == ["invalid"]
    assert "comparator" in bad.diagnostics[0].message
