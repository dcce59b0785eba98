"""A generic type through the FHIR API: Condition (official R4 search parameters, generic
index tables, the Patient compartment from the CompartmentDefinition) created, read by id
and searched, against the Observation bars."""

from __future__ import annotations

import random
import uuid
from collections.abc import Callable
from typing import Any

import orjson

from interop.bench import data
from interop.bench.http_load import run_load
from interop.bench.report import Report

SNOMED = "http://snomed.info/sct"
CODES = ("38341003", "44054006", "195967001", "13645005", "84114007")
"""Hypertension, diabetes type 2, asthma, COPD, heart failure."""


TAGS = "urn:dho-interop:bench-cohort"
COHORTS = ("a", "b", "c")
"""Every bench Condition carries one of three tags, as a Synthea export carries its one
(``meta.tag``: searched by ``_tag``, listed by ``$meta``)."""


def condition(rng: random.Random, pid: str) -> dict[str, Any]:
    return {
        "resourceType": "Condition",
        "meta": {"tag": [{"system": TAGS, "code": rng.choice(COHORTS)}]},
        "identifier": [{"system": "urn:dho-interop:bench-condition", "value": str(uuid.uuid4())}],
        "clinicalStatus": {
            "coding": [
                {
                    "system": "http://terminology.hl7.org/CodeSystem/condition-clinical",
                    "code": rng.choice(("active", "resolved")),
                }
            ]
        },
        "code": {"coding": [{"system": SNOMED, "code": rng.choice(CODES)}]},
        "subject": {"reference": f"Patient/{pid}"},
        "onsetDateTime": f"20{rng.randrange(10, 26)}-0{rng.randrange(1, 10)}-1{rng.randrange(0, 9)}",
    }


def run(
    report: Report,
    backend: str,
    size: int,
    base: str,
    headers: dict[str, str],
    rng: random.Random,
    patients: int,
) -> None:
    created: list[str] = []

    def create(i: int) -> tuple[str, str, bytes]:
        return (
            "POST",
            "/fhir/Condition",
            orjson.dumps(condition(rng, data.patient_id(i % patients))),
        )

    run_load(base, create, total=400, connections=8, headers=headers)
    r = run_load(base, create, total=4000, connections=8, headers=headers)
    report.row(
        "fhir",
        backend,
        size,
        "create Condition (generic type)",
        f"{r.rate:,.0f} req/s",
        f"p95 {r.percentile(95) * 1000:.1f} ms",
        target="≥ 600 req/s",
        ok=r.rate >= 600 and r.statuses.get(201) == r.requests,
    )
    import httpx

    page = httpx.get(f"{base}/fhir/Condition?_count=1000", headers=headers).json()
    created = [e["resource"]["id"] for e in page.get("entry", []) if e["search"]["mode"] == "match"]
    run_load(
        base,
        lambda i: ("GET", f"/fhir/Condition/{created[i % len(created)]}", b""),
        total=500,
        connections=4,
        headers=headers,
    )
    r = run_load(
        base,
        lambda i: ("GET", f"/fhir/Condition/{created[i % len(created)]}", b""),
        total=20000,
        connections=16,
        headers=headers,
    )
    report.row(
        "fhir",
        backend,
        size,
        "read Condition by id (generic type)",
        f"{r.rate:,.0f} req/s",
        f"p95 {r.percentile(95) * 1000:.1f} ms",
        target="≥ 3,000 req/s",
        ok=r.rate >= 3000 and r.statuses.get(200) == r.requests,
    )
    paths = [
        f"/fhir/Condition?patient=Patient/{data.patient_id(rng.randrange(patients))}"
        f"&clinical-status=active&code={SNOMED}|{rng.choice(CODES)}"
        for _ in range(500)
    ]
    run_load(
        base, lambda i: ("GET", paths[i % 100], b""), total=100, connections=1, headers=headers
    )
    r = run_load(
        base, lambda i: ("GET", paths[100 + i], b""), total=400, connections=1, headers=headers
    )
    report.row(
        "fhir",
        backend,
        size,
        "search Condition patient+status+code (generic type)",
        f"p50 {r.percentile(50) * 1000:.1f} ms",
        f"p95 {r.percentile(95) * 1000:.1f} ms",
        target="p95 ≤ 25 ms",
        ok=r.percentile(95) <= 0.025 and r.statuses.get(200) == r.requests,
    )
    # ``_tag`` with a patient (the narrow case), ``_tag`` alone (a third of the Conditions
    # match; the first page is served) and the type's ``$meta`` (from the index)
    queries = {
        "search Condition patient+_tag (generic type)": [
            f"/fhir/Condition?patient=Patient/{data.patient_id(rng.randrange(patients))}"
            f"&_tag={TAGS}|{rng.choice(COHORTS)}"
            for _ in range(500)
        ],
        "search Condition _tag alone, first page of 50": [
            f"/fhir/Condition?_tag={TAGS}|{rng.choice(COHORTS)}&_count=50" for _ in range(500)
        ],
        "$meta of Condition (type level, admin)": ["/fhir/Condition/$meta"] * 500,
    }
    for label, paths in queries.items():
        total = 100 if label.startswith("$meta") else 400
        warm, measured = paths[:50], paths[50:]
        run_load(base, _getter(warm), total=20, connections=1, headers=headers)
        r = run_load(base, _getter(measured), total=total, connections=1, headers=headers)
        report.row(
            "fhir",
            backend,
            size,
            label,
            f"p50 {r.percentile(50) * 1000:.1f} ms",
            f"p95 {r.percentile(95) * 1000:.1f} ms",
            target="p95 ≤ 25 ms",
            ok=r.percentile(95) <= 0.025 and r.statuses.get(200) == r.requests,
        )


def _getter(paths: list[str]) -> Callable[[int], tuple[str, str, bytes]]:
    return lambda i: ("GET", paths[i % len(paths)], b"")
