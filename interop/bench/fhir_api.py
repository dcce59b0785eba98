"""FHIR API figures: read, create, transaction ingest, search, $lastn/$stats, peak RSS."""

from __future__ import annotations

import random
import time
import uuid
from typing import Any

import httpx
import orjson
from sqlalchemy import select

from interop.access.helseid.local_issuer import DpopClient, Issuer, serve_issuer
from interop.bench import actors, data, generic_types, helseid
from interop.bench.http_load import LoadResult, RequestFactory, run_load
from interop.bench.report import Report
from interop.bench.server import BENCH_KEY, RunningServer, api_server
from interop.store.repository import FhirStore
from interop.store.schema import resource_table

HEADERS = {"Authorization": f"Bearer {BENCH_KEY}", "Content-Type": "application/fhir+json"}


def _ms(x: float) -> str:
    return f"{x * 1000:.1f}"


def _sample_ids(store: FhirStore, n: int, patients: list[str] | None = None) -> list[str]:
    """Up to ``n`` Observation ids (of ``patients`` only, when given)."""
    stmt = select(resource_table.c.res_id).where(resource_table.c.res_type == "Observation")
    if patients is not None:
        stmt = stmt.where(resource_table.c.patient_id.in_(patients))
    with store.reader() as conn:
        rows = conn.execute(stmt.limit(n)).all()
    return [r[0] for r in rows]


SEARCH_CODES = ("8867-4", "2708-6", "29463-7", "85354-9")
"""The codes the searches ask for (heart rate, SpO2, weight, blood pressure)."""


def _read_row(
    report: Report,
    row: tuple[str, int, str],
    base: str,
    make: RequestFactory,
    *,
    warm: int,
    total: int,
    headers: dict[str, str] | None = None,
    server: RunningServer | None = None,
) -> None:
    """Reads by id, warmed up first (requests ``0..warm-1``), then ``total`` timed over 16
    connections (requests ``warm..``), as a row against the read bar; with the server's CPU
    time per request (what one API worker can serve per core, whatever else the machine
    runs meanwhile)."""
    run_load(base, make, total=warm, connections=4, headers=headers)
    cpu = server.cpu_seconds() if server is not None else float("nan")
    r = run_load(base, lambda i: make(warm + i), total=total, connections=16, headers=headers)
    per_request = (server.cpu_seconds() - cpu) / r.requests if server is not None else 0.0
    backend, size, what = row
    report.row(
        "fhir",
        backend,
        size,
        what,
        f"{r.rate:,.0f} req/s",
        f"p95 {_ms(r.percentile(95))} ms"
        + (
            f"; server CPU {per_request * 1e6:,.0f} µs/request ({1 / per_request:,.0f}/s per core)"
            if per_request > 0
            else ""
        ),
        target="≥ 3,000 req/s",
        ok=r.rate >= 3000 and r.statuses.get(200) == r.requests,
    )


def _latency(base: str, paths: list[str]) -> LoadResult:
    return run_load(
        base,
        lambda i: ("GET", paths[i % len(paths)], b""),
        total=len(paths),
        connections=1,
        headers=HEADERS,
    )


def ensure_data(report: Report, backend: str, store: FhirStore, *, size: int, patients: int) -> int:
    """Load the data set up to its nominal size (a row in the report when it loads); returns
    how many Observations it holds."""
    have = data.count_observations(store)
    if have >= size:
        return have
    t0 = time.perf_counter()
    rate = data.load(store, size - have, patients)
    if store.is_postgres:
        # what autovacuum does soon after a bulk load (visibility map, statistics), done
        # now rather than in the middle of the measurements that follow
        with store.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.exec_driver_sql("VACUUM ANALYZE")
    report.row(
        "fhir",
        backend,
        size,
        "bulk load (create_many, no HTTP)",
        f"{rate:,.0f} obs/s",
        f"{time.perf_counter() - t0:.0f} s",
    )
    return size


def run(
    report: Report,
    backend: str,
    store: FhirStore,
    url: str,
    *,
    size: int,
    patients: int,
    writes: bool = True,
) -> None:
    """The FHIR API measurements on a data set :func:`ensure_data` has loaded; without
    ``writes`` (section ``reads``) only the reads and searches, so that the data set does not
    grow (the 1M search rows)."""
    if store.is_postgres:
        # statistics for the planner, as autovacuum would gather them soon after a bulk load
        with store.engine.begin() as conn:
            conn.exec_driver_sql("ANALYZE")
    ids = _sample_ids(store, 2000)
    actors.ensure_care_relations(store, patients)
    gp_patients = [data.patient_id(i) for i in range(patients) if actors.gp_patient(i)]
    gp_ids = _sample_ids(store, 2000, gp_patients[:200])
    rng = random.Random(1)
    with serve_issuer() as issuer, api_server(url, helseid.server_env(issuer)) as server:
        base = server.base
        _read_row(
            report,
            (backend, size, "read by id"),
            base,
            lambda i: ("GET", f"/fhir/Observation/{ids[i % len(ids)]}", b""),
            warm=500,
            total=20000,
            headers=HEADERS,
            server=server,
        )

        if writes:
            _write_rows(report, (backend, size), server, rng, patients)

        def searches(n: int) -> list[str]:
            return [
                f"/fhir/Observation?patient=Patient/{data.patient_id(rng.randrange(patients))}"
                f"&code=http://loinc.org|{rng.choice(SEARCH_CODES)}&date=ge2026-09-01&_count=50"
                for _ in range(n)
            ]

        _latency(base, searches(100))  # warm-up, on other (random) patients
        r = _latency(base, searches(400))
        report.row(
            "fhir",
            backend,
            size,
            "search patient+code+date",
            f"p50 {_ms(r.percentile(50))} ms",
            f"p95 {_ms(r.percentile(95))} ms",
            target="p95 ≤ 25 ms",
            ok=r.percentile(95) <= 0.025 and r.statuses.get(200) == r.requests,
        )

        probe = httpx.get(
            f"{base}/fhir/Observation/$lastn?patient=Patient/{data.patient_id(0)}", headers=HEADERS
        )
        if probe.status_code == 200:
            paths = [
                f"/fhir/Observation/$lastn?patient=Patient/{data.patient_id(rng.randrange(patients))}&max=3"
                for _ in range(400)
            ]
            r = _latency(base, paths)
            report.row(
                "fhir",
                backend,
                size,
                "$lastn (max=3, all codes)",
                f"p50 {_ms(r.percentile(50))} ms",
                f"p95 {_ms(r.percentile(95))} ms",
                target="p95 ≤ 25 ms",
                ok=r.percentile(95) <= 0.025,
            )
            paths = [
                f"/fhir/Observation/$stats?subject=Patient/{data.patient_id(rng.randrange(patients))}"
                f"&code={rng.choice(SEARCH_CODES)}&system=http://loinc.org&duration=2160&statistic=average,min,max,count,median"
                for _ in range(400)
            ]
            r = _latency(base, paths)
            report.row(
                "fhir",
                backend,
                size,
                "$stats (90 days, 5 statistics)",
                f"p50 {_ms(r.percentile(50))} ms",
                f"p95 {_ms(r.percentile(95))} ms",
                ok=r.statuses.get(200) == r.requests,
            )
        else:
            report.note(f"$lastn not available on this build ({probe.status_code}); skipped")
        generic_types.run(report, backend, size, base, HEADERS, rng, patients)
        users = _as_users(report, backend, size, server, rng, gp_ids, gp_patients)
        if writes:
            _vendor_create_row(report, (backend, size), server, rng, patients, users.vendor)
        _with_helseid(report, backend, size, server, issuer, gp_ids, gp_patients, rng)
        report.row(
            "fhir", backend, size, "API worker peak RSS", f"{server.peak_rss_mb():.0f} MB", ""
        )


def _with_helseid(
    report: Report,
    backend: str,
    size: int,
    server: RunningServer,
    issuer: Issuer,
    gp_ids: list[str],
    gp_patients: list[str],
    rng: random.Random,
) -> None:
    """The GP's reads and searches again, from the GP's EPJ with a HelseID user token bound to
    the EPJ's DPoP key: a fresh proof per request (signed before the clock starts), so the
    figures add what validating the token and the proof (signature, claims, replay) costs."""
    base = server.base
    client = DpopClient()
    token = helseid.gp_token(issuer, client)

    def reads(n: int) -> list[tuple[str, str, bytes, dict[str, str]]]:
        out = []
        for i in range(n):
            path = f"/fhir/Observation/{gp_ids[i % len(gp_ids)]}"
            proof = client.proof("GET", f"{base}{path}", token)
            out.append(("GET", path, b"", {"Authorization": f"DPoP {token}", "DPoP": proof}))
        return out

    # every proof is signed before the clock starts (the warm-up's 300 first)
    proofs = reads(3300)
    _read_row(
        report,
        (backend, size, "read by id as GP with HelseID + DPoP (policy + audit)"),
        base,
        lambda i: proofs[i],
        warm=300,
        total=3000,
        server=server,
    )
    searches = []
    for _ in range(300):
        query = (
            f"patient=Patient/{rng.choice(gp_patients)}"
            f"&code=http://loinc.org|{rng.choice(SEARCH_CODES)}&date=ge2026-09-01&_count=50"
        )
        proof = client.proof("GET", f"{base}/fhir/Observation", token)
        searches.append(
            (
                "GET",
                f"/fhir/Observation?{query}",
                b"",
                {"Authorization": f"DPoP {token}", "DPoP": proof},
            )
        )
    r = run_load(base, lambda i: searches[i], total=len(searches), connections=1)
    report.row(
        "fhir",
        backend,
        size,
        "search patient+code+date as GP with HelseID + DPoP",
        f"p50 {_ms(r.percentile(50))} ms",
        f"p95 {_ms(r.percentile(95))} ms",
        target="p95 ≤ 25 ms",
        ok=r.percentile(95) <= 0.025 and r.statuses.get(200) == r.requests,
    )


def _as_users(
    report: Report,
    backend: str,
    size: int,
    server: RunningServer,
    rng: random.Random,
    gp_ids: list[str],
    gp_patients: list[str],
) -> actors.Users:
    """The same requests as the real users make them: through the access policy (their care
    relation, Consent, view codes) and the audit log (every read is an AuditEvent)."""
    base = server.base
    users = actors.keys(base, HEADERS)
    for who, headers in (("GP", users.gp), ("follow-up nurse", users.followup)):
        _read_row(
            report,
            (backend, size, f"read by id as {who} (policy + audit)"),
            base,
            lambda i: ("GET", f"/fhir/Observation/{gp_ids[i % len(gp_ids)]}", b""),
            warm=500,
            total=5000,
            headers=headers,
            server=server,
        )
    paths = [
        f"/fhir/Observation?patient=Patient/{rng.choice(gp_patients)}"
        f"&code=http://loinc.org|{rng.choice(SEARCH_CODES)}&date=ge2026-09-01&_count=50"
        for _ in range(300)
    ]
    run_load(base, lambda i: ("GET", paths[i % 50], b""), total=50, connections=1, headers=users.gp)
    r = run_load(
        base, lambda i: ("GET", paths[i], b""), total=len(paths), connections=1, headers=users.gp
    )
    report.row(
        "fhir",
        backend,
        size,
        "search patient+code+date as GP (policy + audit)",
        f"p50 {_ms(r.percentile(50))} ms",
        f"p95 {_ms(r.percentile(95))} ms",
        target="p95 ≤ 25 ms",
        ok=r.percentile(95) <= 0.025 and r.statuses.get(200) == r.requests,
    )
    return users


def _cpu_note(server: RunningServer, since: float, requests: int, per: str = "request") -> str:
    """The API server's CPU time per request since ``since`` (SQLite's work included; on
    PostgreSQL the database server's is not)."""
    used = server.cpu_seconds() - since
    return f"; server CPU {used / requests * 1e6:,.0f} µs/{per}" if requests and used > 0 else ""


def _create_row(
    report: Report,
    row: tuple[str, int, str],
    server: RunningServer,
    make: RequestFactory,
    *,
    warm: int,
    total: int,
    headers: dict[str, str],
) -> None:
    """Single creates over 8 connections, warmed up first, against the create bar."""
    # steady state: the pool's connections, prepared statements and the pages the
    # inserts touch are warm before the clock starts (as for the reads above)
    run_load(server.base, make, total=warm, connections=8, headers=headers)
    cpu = server.cpu_seconds()
    r = run_load(server.base, lambda i: make(warm + i), total=total, connections=8, headers=headers)
    backend, size, what = row
    report.row(
        "fhir",
        backend,
        size,
        what,
        f"{r.rate:,.0f} req/s",
        f"p95 {_ms(r.percentile(95))} ms" + _cpu_note(server, cpu, r.requests),
        target="≥ 600 req/s",
        ok=r.rate >= 600 and r.statuses.get(201) == r.requests,
    )


def _write_rows(
    report: Report,
    at: tuple[str, int],
    server: RunningServer,
    rng: random.Random,
    patients: int,
) -> None:
    """The admin's single creates and transaction Bundles of 100 Observations."""

    def create(i: int) -> tuple[str, str, bytes]:
        obs = data.observation(rng, data.patient_id(i % patients), data.END, 0)
        obs["identifier"] = [{"system": "urn:dho-interop:bench-create", "value": str(uuid.uuid4())}]
        return "POST", "/fhir/Observation", orjson.dumps(obs)

    _create_row(
        report, (*at, "create Observation"), server, create, warm=400, total=4000, headers=HEADERS
    )

    def bundle(i: int) -> tuple[str, str, bytes]:
        entries: list[dict[str, Any]] = []
        for j in range(100):
            obs = data.observation(rng, data.patient_id((i * 100 + j) % patients), data.END, 0)
            obs["identifier"] = [{"system": "urn:dho-interop:bench-tx", "value": str(uuid.uuid4())}]
            entries.append(
                {
                    "fullUrl": f"urn:uuid:{uuid.uuid4()}",
                    "resource": obs,
                    "request": {"method": "POST", "url": "Observation"},
                }
            )
        return (
            "POST",
            "/fhir",
            orjson.dumps({"resourceType": "Bundle", "type": "transaction", "entry": entries}),
        )

    run_load(server.base, bundle, total=6, connections=2, headers=HEADERS)  # warm-up
    cpu = server.cpu_seconds()
    r = run_load(server.base, bundle, total=60, connections=2, headers=HEADERS)
    backend, size = at
    report.row(
        "fhir",
        backend,
        size,
        "transaction Bundle of 100 Observations",
        f"{r.rate * 100:,.0f} obs/s",
        f"p95 {_ms(r.percentile(95))} ms per Bundle"
        + _cpu_note(server, cpu, r.requests * 100, "Observation"),
        target="≥ 2,000 obs/s",
        ok=r.rate * 100 >= 2000 and r.statuses.get(200) == r.requests,
    )


def _vendor_create_row(
    report: Report,
    at: tuple[str, int],
    server: RunningServer,
    rng: random.Random,
    patients: int,
    headers: dict[str, str],
) -> None:
    def create(i: int) -> tuple[str, str, bytes]:
        obs = data.observation(rng, data.patient_id(i % patients), data.END, 0)
        obs["identifier"] = [{"system": "urn:dho-interop:bench-vendor", "value": str(uuid.uuid4())}]
        return "POST", "/fhir/Observation", orjson.dumps(obs)

    _create_row(
        report,
        (*at, "create Observation as vendor (policy + audit)"),
        server,
        create,
        warm=200,
        total=2000,
        headers=headers,
    )


def run_writes(
    report: Report, backend: str, store: FhirStore, url: str, *, size: int, patients: int
) -> None:
    """Only the write rows of :func:`run` (section ``writes``): admin and vendor creates, the
    transaction Bundle."""
    actors.ensure_care_relations(store, patients)
    rng = random.Random(1)
    with api_server(url) as server:
        _write_rows(report, (backend, size), server, rng, patients)
        users = actors.keys(server.base, HEADERS)
        _vendor_create_row(report, (backend, size), server, rng, patients, users.vendor)
