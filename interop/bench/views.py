"""Summary figures: one patient with two years of data at six measurements a day, every view,
in JSON, FHIR and HTML."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import select

from interop.bench import data
from interop.bench.http_load import run_load
from interop.bench.report import Report
from interop.bench.server import BENCH_KEY, api_server
from interop.fhir.dates import format_instant
from interop.store.context import WriteContext
from interop.store.repository import FhirStore
from interop.store.schema import resource_table
from interop.views.summary import available_views

FNR = "13031353453"
HEADERS = {"Authorization": f"Bearer {BENCH_KEY}"}


def _patient(store: FhirStore) -> str:
    with store.write(WriteContext.service()) as tx:
        existing = tx.conn.execute(
            select(resource_table.c.res_id).where(
                resource_table.c.res_type == "Patient",
                resource_table.c.res_id == "bench-summary-patient",
            )
        ).scalar()
        if existing:
            return str(existing)
        tx.create_many(
            [
                (
                    {"resourceType": "Patient", "identifier": [{"system": data.FNR, "value": FNR}]},
                    "bench-summary-patient",
                )
            ],
            validate=False,
        )
        rng = random.Random(3)
        end = datetime.now(UTC)
        items: list[tuple[dict[str, Any], str | None]] = []
        zones = ["green"] * 8 + ["yellow", "red"]
        for i in range(2 * 365 * 6):
            when = end - timedelta(hours=4 * i)
            obs = data.observation(rng, "bench-summary-patient", when, i)
            obs["effectiveDateTime"] = format_instant(when)
            obs["interpretation"] = [
                {
                    "coding": [
                        {
                            "system": "https://dho-interop.no/fhir/CodeSystem/zone",
                            "code": rng.choice(zones),
                        }
                    ]
                }
            ]
            items.append((obs, None))
        for k in range(0, len(items), 2000):
            tx.create_many(items[k : k + 2000], validate=False)
        return "bench-summary-patient"


def run(report: Report, backend: str, store: FhirStore, url: str, size: int) -> None:
    pid = _patient(store)
    with api_server(url) as server:
        for view in available_views():
            for fmt, path, accept in (
                ("JSON", f"/api/v1/patients/{FNR}/summary?view={view}", "application/json"),
                ("HTML", f"/api/v1/patients/{FNR}/summary?view={view}", "text/html"),
                ("FHIR", f"/fhir/Patient/{pid}/$summary?view={view}", "application/fhir+json"),
            ):
                headers = {**HEADERS, "Accept": accept}

                def get(_i: int, path: str = path) -> tuple[str, str, bytes]:
                    return "GET", path, b""

                run_load(
                    server.base,
                    get,
                    total=5,
                    connections=1,
                    headers=headers,
                )
                r = run_load(
                    server.base,
                    get,
                    total=60,
                    connections=1,
                    headers=headers,
                )
                target = "p95 ≤ 60 ms" if fmt == "HTML" else "p95 ≤ 30 ms"
                ok = (
                    r.percentile(95) <= (0.06 if fmt == "HTML" else 0.03)
                    and r.statuses.get(200) == r.requests
                )
                report.row(
                    "views",
                    backend,
                    size,
                    f"summary view={view} {fmt} (2 years × 6/day)",
                    f"p50 {r.percentile(50) * 1000:.1f} ms",
                    f"p95 {r.percentile(95) * 1000:.1f} ms",
                    target=target,
                    ok=ok,
                )
