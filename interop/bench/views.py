"""Summary figures: one patient with two years of data at six measurements a day, every view,
in JSON, FHIR and HTML — each view asked for by the user it is made for (the GP's view by the
patient's GP, the hospital's by a clinic with an active episode, the EPJ's by the municipal
record system, the follow-up view by the follow-up centre), through the access policy and the
audit log, and once more with the admin key for comparison."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from sqlalchemy import select

from interop.bench import actors, data
from interop.bench.http_load import run_load
from interop.bench.report import Report
from interop.bench.server import BENCH_KEY, api_server
from interop.fhir.dates import format_instant
from interop.store.context import WriteContext
from interop.store.generation import bump
from interop.store.repository import FhirStore
from interop.store.schema import resource_table
from interop.views.summary import available_views, view_definition

FNR = "13031353453"
HEADERS = {"Authorization": f"Bearer {BENCH_KEY}"}
FHIR_JSON = "application/fhir+json"


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


HOSPITAL_ID = "bench-hospital"
HOSPITAL_ORGNR = "883974832"
EPISODE_ID = "bench-summary-episode"


def _care_relations(store: FhirStore, pid: str, patients: int) -> None:
    """The summary patient's GP and follow-up centre (the benchmark's), and a hospital clinic
    with an active episode of care, so that each view's own user may read it."""
    actors.ensure_care_relations(store, patients)
    with store.write(WriteContext.service()) as tx:
        if tx.get("EpisodeOfCare", EPISODE_ID) is not None:
            return
        bump(tx.conn)
        tx.update(
            "Organization",
            HOSPITAL_ID,
            {
                "resourceType": "Organization",
                "id": HOSPITAL_ID,
                "identifier": [{"system": actors.ORGNR, "value": HOSPITAL_ORGNR}],
                "name": "Lungepoliklinikken (bench)",
            },
        )
        current = tx.get("Patient", pid)
        assert current is not None
        patient = current.json()
        patient.pop("meta", None)
        patient["managingOrganization"] = {"reference": f"Organization/{actors.CENTRE_ID}"}
        patient["generalPractitioner"] = [{"reference": f"Practitioner/{actors.GP_ID}"}]
        tx.update("Patient", pid, patient)
        tx.update(
            "EpisodeOfCare",
            EPISODE_ID,
            {
                "resourceType": "EpisodeOfCare",
                "id": EPISODE_ID,
                "status": "active",
                "patient": {"reference": f"Patient/{pid}"},
                "managingOrganization": {"reference": f"Organization/{HOSPITAL_ID}"},
            },
        )


def _view_users(base: str) -> dict[str, dict[str, str]]:
    """An API key per view, for the user the view is made for, made as an operator would."""

    def key(body: dict[str, object]) -> dict[str, str]:
        r = httpx.post(f"{base}/api/v1/actors", json=body, headers=HEADERS, timeout=30)
        r.raise_for_status()
        return {"Authorization": f"Bearer {r.json()['key']}"}

    return {
        "gp": key({"role": "gp", "hpr": actors.GP_HPR, "name": "Bench Lege"}),
        "hospital": key(
            {"role": "hospital", "organization": {"orgnr": HOSPITAL_ORGNR}, "name": "Bench Lunge"}
        ),
        "epj": key(
            {"role": "epj", "organization": {"orgnr": actors.CENTRE_ORGNR}, "name": "Bench EPJ"}
        ),
        "followup": key(
            {
                "role": "followup",
                "organization": {"orgnr": actors.CENTRE_ORGNR},
                "name": "Bench Sykepleier",
            }
        ),
    }


def run(report: Report, backend: str, store: FhirStore, url: str, size: int, patients: int) -> None:
    pid = _patient(store)
    _care_relations(store, pid, patients)
    with api_server(url) as server:
        users = _view_users(server.base)
        for view in available_views():
            role = view_definition(view).role
            for who, user in ((role, users[role]), ("admin", HEADERS)):
                formats = (
                    (
                        ("JSON", f"/api/v1/patients/{FNR}/summary?view={view}", "application/json"),
                        ("HTML", f"/api/v1/patients/{FNR}/summary?view={view}", "text/html"),
                        ("FHIR", f"/fhir/Patient/{pid}/$summary?view={view}", FHIR_JSON),
                    )
                    if who != "admin"
                    else (
                        ("JSON", f"/api/v1/patients/{FNR}/summary?view={view}", "application/json"),
                    )
                )
                for fmt, path, accept in formats:
                    _measure(
                        report,
                        backend,
                        size,
                        server.base,
                        view,
                        who,
                        fmt,
                        path,
                        {**user, "Accept": accept},
                    )


def _measure(
    report: Report,
    backend: str,
    size: int,
    base: str,
    view: str,
    who: str,
    fmt: str,
    path: str,
    headers: dict[str, str],
) -> None:
    def get(_i: int) -> tuple[str, str, bytes]:
        return "GET", path, b""

    run_load(base, get, total=5, connections=1, headers=headers)
    r = run_load(base, get, total=60, connections=1, headers=headers)
    limit = 0.06 if fmt == "HTML" else 0.03
    report.row(
        "views",
        backend,
        size,
        f"summary view={view} {fmt} as {who} (2 years × 6/day)",
        f"p50 {r.percentile(50) * 1000:.1f} ms",
        f"p95 {r.percentile(95) * 1000:.1f} ms",
        target=f"p95 ≤ {limit * 1000:.0f} ms",
        ok=r.percentile(95) <= limit and r.statuses.get(200) == r.requests,
    )
