"""Synthetic bulk data for benchmarks: patients and home measurements, loaded in bulk."""

from __future__ import annotations

import random
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import func, select

from interop.fhir.dates import format_instant
from interop.store.context import WriteContext
from interop.store.repository import FhirStore
from interop.store.schema import resource_table

FNR = "urn:oid:2.16.578.1.12.4.1.4.1"
LOINC = "http://loinc.org"
UCUM = "http://unitsofmeasure.org"
VS = {
    "coding": [
        {
            "system": "http://terminology.hl7.org/CodeSystem/observation-category",
            "code": "vital-signs",
        }
    ]
}
KINDS: list[tuple[str, str, str, float, float]] = [
    ("8867-4", "Heart rate", "/min", 72, 8),
    ("2708-6", "Oxygen saturation in Arterial blood", "%", 95, 2),
    ("29463-7", "Body weight", "kg", 82, 3),
    ("8310-5", "Body temperature", "Cel", 36.8, 0.3),
    ("14743-9", "Glucose [Moles/volume] in Capillary blood by Glucometer", "mmol/L", 7, 1.5),
]
END = datetime(2026, 11, 1, tzinfo=UTC)


def fnr_for(i: int) -> str:
    """A valid synthetic fødselsnummer (month + 80, the Skatteetaten synthetic range)."""
    from interop.identifiers import generate_fnr

    rng = random.Random(i)
    birth = datetime(1930 + i % 60, 1 + i % 12, 1 + i % 28).date()
    return generate_fnr(birth, rng=rng, synthetic=True)


def patient_id(i: int) -> str:
    return f"bench-patient-{i}"


def patient(i: int) -> dict[str, Any]:
    return {
        "resourceType": "Patient",
        "identifier": [{"system": FNR, "value": fnr_for(i)}],
        "name": [{"family": f"Testesen{i}", "given": ["Bench"]}],
    }


def observation(rng: random.Random, pid: str, when: datetime, seq: int) -> dict[str, Any]:
    k = rng.randrange(len(KINDS) + 1)
    base: dict[str, Any] = {
        "resourceType": "Observation",
        "identifier": [{"system": "urn:dho-interop:bench", "value": f"{pid}-{seq}"}],
        "status": "final",
        "category": [VS],
        "subject": {"reference": f"Patient/{pid}"},
        "effectiveDateTime": format_instant(when),
    }
    if k == len(KINDS):
        base["code"] = {
            "coding": [{"system": LOINC, "code": "85354-9", "display": "Blood pressure panel"}]
        }
        base["component"] = [
            {
                "code": {"coding": [{"system": LOINC, "code": code}]},
                "valueQuantity": {
                    "value": round(rng.gauss(mean, 12), 0),
                    "unit": "mmHg",
                    "system": UCUM,
                    "code": "mm[Hg]",
                },
            }
            for code, mean in (("8480-6", 135), ("8462-4", 82))
        ]
        return base
    code, display, unit, mean, sd = KINDS[k]
    base["code"] = {"coding": [{"system": LOINC, "code": code, "display": display}]}
    value = rng.gauss(mean, sd)
    if unit == "%":
        value = min(value, 100.0)  # a saturation above 100 % is refused as implausible
    base["valueQuantity"] = {
        "value": round(value, 1),
        "unit": unit,
        "system": UCUM,
        "code": unit,
    }
    return base


def observations(count: int, patients: int, *, seed: int = 7) -> Iterator[dict[str, Any]]:
    """``count`` Observations spread evenly over ``patients``, newest at :data:`END`."""
    rng = random.Random(seed)
    per_patient = max(1, count // patients)
    for i in range(count):
        p = i % patients
        seq = i // patients
        when = END - timedelta(hours=4 * (per_patient - seq)) + timedelta(minutes=rng.randrange(60))
        yield observation(rng, patient_id(p), when, seq)


def count_observations(store: FhirStore) -> int:
    with store.reader() as conn:
        return int(
            conn.execute(
                select(func.count()).where(resource_table.c.res_type == "Observation")
            ).scalar_one()
        )


def load(store: FhirStore, count: int, patients: int, *, batch: int = 2000) -> float:
    """Bulk-load patients and ``count`` Observations; returns observations/s."""
    with store.write(WriteContext.service()) as tx:
        have = {
            r[0]
            for r in tx.conn.execute(
                select(resource_table.c.res_id).where(resource_table.c.res_type == "Patient")
            )
        }
        todo: list[tuple[dict[str, Any], str | None]] = [
            (patient(i), patient_id(i)) for i in range(patients) if patient_id(i) not in have
        ]
        if todo:
            tx.create_many(todo, validate=False)
    t0 = time.perf_counter()
    buf: list[tuple[dict[str, Any], str | None]] = []
    for obs in observations(count, patients):
        buf.append((obs, None))
        if len(buf) >= batch:
            with store.write(WriteContext.service()) as tx:
                tx.create_many(buf, validate=False)
            buf = []
    if buf:
        with store.write(WriteContext.service()) as tx:
            tx.create_many(buf, validate=False)
    return count / (time.perf_counter() - t0)
