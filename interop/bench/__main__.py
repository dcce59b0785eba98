"""``python -m interop.bench`` (``make bench``): throughput and latency on SQLite and PostgreSQL.

Data sets are kept between runs under ``var/bench/`` (SQLite) and in the ``interop_bench``
PostgreSQL database, so a second run measures without reloading.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from sqlalchemy import Engine, text

from interop.bench import data, fhir_api, ingest, messaging, national, outbox, views, worklist
from interop.bench.report import Report
from interop.bench.warm import warm_cache
from interop.store.db import create_db_engine, normalise_url
from interop.store.migrate import upgrade
from interop.store.repository import FhirStore


def _backends(sizes: list[int], pg_url: str | None) -> list[tuple[str, str, int]]:
    out = []
    for size in sizes:
        path = Path("var/bench").absolute() / f"bench-{size}.db"
        path.parent.mkdir(parents=True, exist_ok=True)
        out.append(("sqlite", f"sqlite:///{path}", size))
    if pg_url:
        for size in sizes:
            out.append(
                (
                    "postgresql",
                    normalise_url(pg_url).rsplit("/", 1)[0] + f"/interop_bench_{size}",
                    size,
                )
            )
    return out


def _ensure_pg_database(url: str) -> None:
    admin_url = url.rsplit("/", 1)[0] + "/postgres"
    name = url.rsplit("/", 1)[1]
    engine = create_db_engine(admin_url)
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        exists = conn.execute(
            text("SELECT 1 FROM pg_database WHERE datname=:n"), {"n": name}
        ).first()
        if not exists:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
    engine.dispose()


def _open_data_set(backend: str, url: str) -> tuple[Engine, FhirStore]:
    """The data set's engine and store, its database created and migrated when new."""
    if backend == "postgresql":
        _ensure_pg_database(url)
    engine = create_db_engine(url)
    upgrade(engine)
    return engine, FhirStore(engine)


def _drop_data_set(backend: str, url: str) -> None:
    """Remove a data set (it is built again at its nominal size)."""
    if backend == "sqlite":
        database = url.removeprefix("sqlite:///")
        for suffix in ("", "-wal", "-shm"):
            Path(database + suffix).unlink(missing_ok=True)
        return
    admin_url = url.rsplit("/", 1)[0] + "/postgres"
    name = url.rsplit("/", 1)[1]
    engine = create_db_engine(admin_url)
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    engine.dispose()


GROWTH_LIMIT = 2
"""A data set that has grown past this many times its nominal size (every run adds what it
writes) is built again, so that each row's size is what it says within a factor of two."""


def main() -> None:
    ap = argparse.ArgumentParser(prog="python -m interop.bench")
    ap.add_argument(
        "--sizes",
        default=os.environ.get("INTEROP_BENCH_SIZES", "10000,100000,1000000"),
        help="stored Observations, comma list",
    )
    ap.add_argument("--patients", type=int, default=2000)
    ap.add_argument(
        "--sections",
        default="fhir,ingest,views,outbox,messaging,worklist,national",
        help="comma list; 'writes' runs only the create and transaction rows of 'fhir', "
        "'reads' only its reads and searches",
    )
    ap.add_argument("--worklist-patients", type=int, default=500)
    ap.add_argument("--worklist-per-day", type=int, default=3, help="measurements a day")
    ap.add_argument("--outbox-messages", type=int, default=5000)
    ap.add_argument("--outbox-destinations", type=int, default=50)
    ap.add_argument("--backends", default="sqlite,postgresql")
    ap.add_argument("--out", default="bench-report.md")
    ap.add_argument(
        "--fresh", action="store_true", help="build every data set again at its nominal size"
    )
    args = ap.parse_args()
    sizes = [int(s) for s in args.sizes.split(",") if s]
    pg = os.environ.get("INTEROP_BENCH_PG_URL") if "postgresql" in args.backends else None
    report = Report()
    if "postgresql" in args.backends and not pg:
        report.note("PostgreSQL not measured: INTEROP_BENCH_PG_URL is not set")
    sections = set(args.sections.split(","))
    # the outbox section brings its own database; the others share the sized data sets
    sized = sections - {"outbox", "messaging", "worklist", "national"}
    for backend, url, size in _backends(sizes, pg) if sized else []:
        if backend not in args.backends:
            continue
        engine, store = _open_data_set(backend, url)
        held = data.count_observations(store)
        if args.fresh or held > GROWTH_LIMIT * size:
            engine.dispose()
            report.note(f"{backend} {size:,}: built again (it held {held:,} Observations)")
            _drop_data_set(backend, url)
            engine, store = _open_data_set(backend, url)
        held = fhir_api.ensure_data(report, backend, store, size=size, patients=args.patients)
        read, secs = warm_cache(engine)
        report.note(
            f"{backend} {size:,}: the data set holds {held:,} Observations before the run "
            f"(it is built again past {GROWTH_LIMIT}× its size); "
            f"{read / 2**20:,.0f} MiB read into the page cache first ({secs:.0f} s; "
            "see interop/bench/warm.py)"
        )
        if "fhir" in sections:
            fhir_api.run(report, backend, store, url, size=size, patients=args.patients)
        elif "reads" in sections:  # the read and search rows of "fhir" alone
            fhir_api.run(
                report, backend, store, url, size=size, patients=args.patients, writes=False
            )
        if "writes" in sections and "fhir" not in sections:  # the write rows of "fhir" alone
            fhir_api.run_writes(report, backend, store, url, size=size, patients=args.patients)
        if "ingest" in sections:
            ingest.run(report, backend, url, size)
        if "views" in sections:
            views.run(report, backend, store, url, size, args.patients)
        engine.dispose()
    if "outbox" in sections:
        for backend in ("sqlite", "postgresql"):
            if backend not in args.backends or (backend == "postgresql" and not pg):
                continue
            url = outbox.bench_url(backend, normalise_url(pg) if pg else None)
            if backend == "postgresql":
                _ensure_pg_database(url)
            outbox.run(
                report,
                backend,
                url,
                messages=args.outbox_messages,
                destinations=args.outbox_destinations,
            )
    if "messaging" in sections:
        for backend in ("sqlite", "postgresql"):
            if backend not in args.backends or (backend == "postgresql" and not pg):
                continue
            url = messaging.bench_url(backend, normalise_url(pg) if pg else None)
            if backend == "postgresql":
                _ensure_pg_database(url)
            messaging.run(report, backend, url)
    if "worklist" in sections:
        for backend in ("sqlite", "postgresql"):
            if backend not in args.backends or (backend == "postgresql" and not pg):
                continue
            url = worklist.bench_url(backend, normalise_url(pg) if pg else None)
            if backend == "postgresql":
                _ensure_pg_database(url)
            worklist.run(
                report,
                backend,
                url,
                patients=args.worklist_patients,
                per_day=args.worklist_per_day,
            )
    if "national" in sections:
        for backend in ("sqlite", "postgresql"):
            if backend not in args.backends or (backend == "postgresql" and not pg):
                continue
            url = national.bench_url(backend, normalise_url(pg) if pg else None)
            if backend == "postgresql":
                _ensure_pg_database(url)
            national.run(report, backend, url)
    report.write(Path(args.out))
    print(f"\nreport written to {args.out}")


if __name__ == "__main__":
    main()
