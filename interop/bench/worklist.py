"""The follow-up centre's worklist: an organisation of 500 patients with two years of home
measurements, the Tasks two years of deviations leave behind (most completed, some open), a
few quiet patients and failed GP messages, read by the centre's own nurse (through the access
policy and the audit log) as JSON and as the HTML page.

Brings its own database (``var/bench/bench-worklist.db``, ``interop_bench_worklist``), built
once and kept between runs."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import func, select

from interop.bench import data
from interop.bench.http_load import run_load
from interop.bench.report import Report
from interop.bench.server import BENCH_KEY, api_server
from interop.care.triage import TASK_CODE_SYSTEM
from interop.fhir.dates import format_instant
from interop.routing.outbox import enqueue, mark_dead
from interop.store.context import WriteContext
from interop.store.db import create_db_engine
from interop.store.migrate import upgrade
from interop.store.repository import FhirStore
from interop.store.schema import resource_table

ORGNR = "urn:oid:2.16.578.1.12.4.1.4.101"
CENTRE_ORGNR = "974760673"
CENTRE_ID = "bench-worklist-centre"
ZONE = "https://dho-interop.no/fhir/CodeSystem/zone"
DAYS = 730
QUIET_EVERY = 20
"""Every 20th patient has measured nothing for ten days (inactive)."""
ELSEWHERE_ID = "bench-worklist-elsewhere"
ELSEWHERE_ORGNR = "974589095"
ELSEWHERE_PATIENTS = 4500
"""Patients of the region's other follow-up centres in the same database, each with an open
Task: what the centre's worklist must not read."""


def bench_url(backend: str, pg_url: str | None) -> str:
    if backend == "sqlite":
        path = Path("var/bench").absolute() / "bench-worklist.db"
        path.parent.mkdir(parents=True, exist_ok=True)
        return f"sqlite:///{path}"
    assert pg_url
    return pg_url.rsplit("/", 1)[0] + "/interop_bench_worklist"


def _pid(i: int) -> str:
    return f"bench-worklist-patient-{i}"


def _task(
    i: int, n: int, status: str, priority: str, kind: str, when: datetime
) -> tuple[dict[str, Any], str]:
    return (
        {
            "resourceType": "Task",
            "status": status,
            "intent": "order",
            "priority": priority,
            "code": {"coding": [{"system": TASK_CODE_SYSTEM, "code": kind}]},
            "description": f"Vurder avvik ({kind})",
            "for": {"reference": f"Patient/{_pid(i)}"},
            "authoredOn": format_instant(when),
            "lastModified": format_instant(when + timedelta(hours=3)),
            "input": [{"type": {"text": "measurement code"}, "valueCode": "2708-6"}],
        },
        f"bench-worklist-task-{i}-{n}",
    )


def ensure_data(store: FhirStore, patients: int, per_day: int) -> int:
    """Build the organisation once; returns the Observations it holds."""
    with store.reader() as conn:
        held = conn.execute(
            select(func.count()).where(resource_table.c.res_type == "Observation")
        ).scalar_one()
    if held:
        return int(held)
    end = datetime.now(UTC)
    rng = random.Random(11)
    with store.write(WriteContext.service()) as tx:
        tx.update(
            "Organization",
            CENTRE_ID,
            {
                "resourceType": "Organization",
                "id": CENTRE_ID,
                "identifier": [{"system": ORGNR, "value": CENTRE_ORGNR}],
                "name": "Oppfølgingstjenesten (bench)",
            },
        )
        people: list[tuple[dict[str, Any], str | None]] = []
        for i in range(patients):
            p = data.patient(i)
            p["name"] = [{"use": "official", "family": f"Testesen{i}", "given": ["Bench"]}]
            p["managingOrganization"] = {"reference": f"Organization/{CENTRE_ID}"}
            people.append((p, _pid(i)))
        tx.create_many(people, validate=False)
    zones = ["green"] * 17 + ["yellow"] * 2 + ["red"]
    total = 0
    for i in range(patients):
        items: list[tuple[dict[str, Any], str | None]] = []
        quiet = i % QUIET_EVERY == 0
        for seq in range(DAYS * per_day):
            when = end - timedelta(hours=24 / per_day * seq, minutes=rng.randrange(60))
            if quiet and when > end - timedelta(days=10):
                continue
            obs = data.observation(rng, _pid(i), when, seq)
            obs["interpretation"] = [{"coding": [{"system": ZONE, "code": rng.choice(zones)}]}]
            items.append((obs, None))
        tasks = [
            _task(
                i,
                n,
                "completed",
                "asap" if n % 3 == 0 else "urgent",
                "assess-deviation",
                end - timedelta(days=30 * n + 2),
            )
            for n in range(1, 25)
        ]
        if i % 10 == 1:
            tasks.append(
                _task(i, 0, "requested", "asap", "assess-deviation", end - timedelta(hours=2))
            )
        elif i % 10 == 2:
            tasks.append(
                _task(i, 0, "accepted", "urgent", "assess-deviation", end - timedelta(hours=20))
            )
        elif i % 10 == 3:
            tasks.append(
                _task(i, 0, "requested", "routine", "missing-measurement", end - timedelta(days=1))
            )
        elif i % 25 == 4:
            tasks.append(
                _task(i, 0, "requested", "routine", "thresholds-missing", end - timedelta(days=3))
            )
        with store.write(WriteContext.service()) as tx:
            for k in range(0, len(items), 2000):
                tx.create_many(items[k : k + 2000], validate=False)
            tx.create_many([(t, tid) for t, tid in tasks], validate=False)
            if i % 50 == 5:
                row = enqueue(
                    tx.conn,
                    event="triage.red",
                    kind="dialog-helsefaglig",
                    destination="Endpoint/bench-gp",
                    transport="file-drop",
                    address="/nowhere",
                    content_type="application/xml",
                    payload=b"<MsgHead/>",
                    patient_id=_pid(i),
                )
                mark_dead(tx.conn, row, "bench: no such folder")
        total += len(items)
    return total


def ensure_elsewhere(store: FhirStore, first: int, count: int) -> None:
    """Another organisation's patients, each with an open Task, in the same database (built
    once, beside the centre's)."""
    if store.get("Organization", ELSEWHERE_ID) is not None:
        return
    end = datetime.now(UTC)
    with store.write(WriteContext.service()) as tx:
        tx.update(
            "Organization",
            ELSEWHERE_ID,
            {
                "resourceType": "Organization",
                "id": ELSEWHERE_ID,
                "identifier": [{"system": ORGNR, "value": ELSEWHERE_ORGNR}],
                "name": "Nabokommunens oppfølgingstjeneste (bench)",
            },
        )
        people: list[tuple[dict[str, Any], str | None]] = []
        tasks: list[tuple[dict[str, Any], str | None]] = []
        for j in range(count):
            p = data.patient(first + j)
            pid = f"{ELSEWHERE_ID}-patient-{j}"
            p["managingOrganization"] = {"reference": f"Organization/{ELSEWHERE_ID}"}
            people.append((p, pid))
            task, _tid = _task(0, j, "requested", "urgent", "assess-deviation", end)
            task["for"] = {"reference": f"Patient/{pid}"}
            tasks.append((task, f"{ELSEWHERE_ID}-task-{j}"))
        tx.create_many(people, validate=False)
        tx.create_many(tasks, validate=False)


def run(report: Report, backend: str, url: str, *, patients: int = 500, per_day: int = 3) -> None:
    engine = create_db_engine(url)
    upgrade(engine)
    store = FhirStore(engine)
    held = ensure_data(store, patients, per_day)
    ensure_elsewhere(store, patients, ELSEWHERE_PATIENTS)
    if store.is_postgres:
        # statistics for the planner, as autovacuum would gather them soon after a bulk load
        with engine.begin() as conn:
            conn.exec_driver_sql("ANALYZE")
    engine.dispose()
    report.note(
        f"worklist/{backend}: {patients} patients, {held:,} Observations over {DAYS} days, "
        "24 completed Tasks per patient and one open for 4 in 10; in the same database "
        f"{ELSEWHERE_PATIENTS:,} patients of another organisation with an open Task each"
    )
    admin = {"Authorization": f"Bearer {BENCH_KEY}"}
    with api_server(url) as server:
        r = httpx.post(
            f"{server.base}/api/v1/actors",
            json={
                "role": "followup",
                "organization": {"orgnr": CENTRE_ORGNR},
                "name": "Bench Sykepleier",
            },
            headers=admin,
            timeout=30,
        )
        r.raise_for_status()
        nurse = {"Authorization": f"Bearer {r.json()['key']}"}
        path = f"/api/v1/worklist?organization={CENTRE_ORGNR}"
        for fmt, accept, bar in (
            ("JSON", "application/json", 0.100),
            ("HTML", "text/html", 0.200),
        ):
            headers = {**nurse, "Accept": accept}

            def get(_i: int) -> tuple[str, str, bytes]:
                return "GET", path, b""

            run_load(server.base, get, total=5, connections=1, headers=headers)
            cpu = server.cpu_seconds()
            res = run_load(server.base, get, total=60, connections=1, headers=headers)
            # the server's CPU time per request: the work a request costs, which the other
            # work on a shared machine hardly moves (its wall time it does)
            per_request = (server.cpu_seconds() - cpu) / res.requests
            report.row(
                "worklist",
                backend,
                held,
                f"worklist {fmt} ({patients} patients × 2 years)",
                f"p50 {res.percentile(50) * 1000:.1f} ms",
                f"p95 {res.percentile(95) * 1000:.1f} ms"
                + (f"; server CPU {per_request * 1000:.1f} ms/request" if per_request > 0 else ""),
                target=f"p95 ≤ {bar * 1000:.0f} ms",
                ok=res.percentile(95) <= bar and res.statuses.get(200) == res.requests,
            )
