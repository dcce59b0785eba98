"""Shared test fixtures.

Samples and official schemas are read from ``INTEROP_SHARED_DIR`` (default: ``../shared`` beside
the checkout). The product itself never reads that folder; tests pass paths in via settings.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import socket
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SHARED = Path(os.environ.get("INTEROP_SHARED_DIR", REPO.parent / "shared")).resolve()
CONFORMANCE = SHARED / "conformance"
STANDARDS = SHARED / "standards"
KITH_SCHEMAS = STANDARDS / "kith"

# The test process builds and drops many apps and stores; the service's start-up tuning of the
# garbage collector (interop.runtime.tune_gc, run by the API lifespan) would freeze their
# reference cycles for the rest of the run. Tests that start a service process set it again.
os.environ.setdefault("INTEROP_GC_GEN0_THRESHOLD", "0")
# Throw-away databases need no flush to disk at every commit (the service's default, FULL, is
# checked by tests/store/test_sqlite_durability.py).
os.environ.setdefault("INTEROP_SQLITE_SYNCHRONOUS", "NORMAL")


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    if not SHARED.is_dir():
        pytest.fail(f"shared folder not found at {SHARED}; set INTEROP_SHARED_DIR")
    return SHARED


@pytest.fixture(scope="session")
def conformance_dir(shared_dir: Path) -> Path:
    return shared_dir / "conformance"


@pytest.fixture(scope="session")
def kith_schema_dir(shared_dir: Path) -> Path:
    return shared_dir / "standards" / "kith"


# ---- database backends -----------------------------------------------------------------
# Every test that uses the `services`/`client` fixtures runs on SQLite AND on PostgreSQL.
# PostgreSQL comes from INTEROP_TEST_PG_URL (`make test` starts a server and sets it). A run
# without it fails loudly rather than skipping, unless INTEROP_TEST_BACKENDS=sqlite is set
# explicitly (`make test-sqlite`).

BACKENDS = [
    b.strip()
    for b in os.environ.get("INTEROP_TEST_BACKENDS", "sqlite,postgresql").split(",")
    if b.strip()
]


# Each pytest process (the session, or each xdist worker) gets a PostgreSQL database of its
# own, named after this host, the xdist worker and the process id, so that concurrent pytest
# sessions against one server never drop each other's database. It is dropped when the
# session ends; databases left by a session that was killed (its process is gone) are dropped
# by the next session on the same host.
_PG_DB_PREFIX = f"interop_test_{hashlib.sha1(socket.gethostname().encode()).hexdigest()[:8]}_"


def _pg_db_name() -> str:
    return f"{_PG_DB_PREFIX}{os.environ.get('PYTEST_XDIST_WORKER', 'main')}_{os.getpid()}"


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _drop_stale_pg_databases(conn) -> None:  # type: ignore[no-untyped-def]
    """Drop this host's test databases whose pytest process is gone (a killed session)."""
    from sqlalchemy import text
    from sqlalchemy.exc import DBAPIError

    pattern = _PG_DB_PREFIX.replace("_", r"\_") + "%"
    names = conn.execute(
        text("SELECT datname FROM pg_database WHERE datname LIKE :p"), {"p": pattern}
    ).scalars()
    for name in list(names):
        pid = name.rsplit("_", 1)[-1]
        if not pid.isdigit() or int(pid) == os.getpid() or _process_alive(int(pid)):
            continue
        with contextlib.suppress(DBAPIError):  # no FORCE: refused while anyone is connected
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}"'))


@pytest.fixture(scope="session")
def _engines(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    from sqlalchemy import make_url, text

    from interop.store.db import create_db_engine, normalise_url
    from interop.store.migrate import upgrade

    made: dict[str, object] = {}
    pg_databases: list[tuple[str, str]] = []
    """(admin URL, database name) of the PostgreSQL databases this process created."""

    def get(backend: str):  # type: ignore[no-untyped-def]
        if backend in made:
            return made[backend]
        if backend == "sqlite":
            path = tmp_path_factory.mktemp("db") / "interop.db"
            url = f"sqlite:///{path}"
        else:
            base = os.environ.get("INTEROP_TEST_PG_URL")
            if not base:
                pytest.fail(
                    "PostgreSQL tests need INTEROP_TEST_PG_URL (run `make test`, which starts "
                    "a server) or INTEROP_TEST_BACKENDS=sqlite to run SQLite only"
                )
            admin = create_db_engine(base)
            dbname = _pg_db_name()
            with admin.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
                _drop_stale_pg_databases(conn)
                conn.execute(text(f'DROP DATABASE IF EXISTS "{dbname}" WITH (FORCE)'))
                conn.execute(text(f'CREATE DATABASE "{dbname}"'))
            admin.dispose()
            pg_databases.append((base, dbname))
            url = (
                make_url(normalise_url(base))
                .set(database=dbname)
                .render_as_string(hide_password=False)
            )
        engine = create_db_engine(url)
        upgrade(engine)
        made[backend] = (url, engine)
        return made[backend]

    yield get
    for _url, engine in made.values():  # type: ignore[misc]
        engine.dispose()  # type: ignore[attr-defined]
    for base, dbname in pg_databases:
        admin = create_db_engine(base)
        try:
            with admin.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
                conn.execute(text(f'DROP DATABASE IF EXISTS "{dbname}" WITH (FORCE)'))
        finally:
            admin.dispose()


def _truncate(engine) -> None:  # type: ignore[no-untyped-def]
    from sqlalchemy import text

    from interop.store.schema import metadata

    names = [t.name for t in metadata.sorted_tables]
    with engine.begin() as conn:
        if engine.dialect.name == "postgresql":
            conn.execute(
                text("TRUNCATE " + ", ".join(f'"{n}"' for n in names) + " RESTART IDENTITY CASCADE")
            )
        else:
            for n in reversed(names):
                conn.execute(text(f'DELETE FROM "{n}"'))


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def settings(backend: str, _engines, tmp_path: Path):  # type: ignore[no-untyped-def]
    from interop.config import Settings

    url, _engine = _engines(backend)
    return Settings(
        database_url=url,
        admin_key="test-admin-key",
        kith_schema_dir=KITH_SCHEMAS,
        file_drop_settle_seconds=0,  # tests write whole files; the settle test sets its own
    )


@pytest.fixture
def services(settings, _engines, backend):  # type: ignore[no-untyped-def]
    from interop.services import Services
    from interop.store.repository import FhirStore
    from interop.store.search import SearchEngine
    from interop.store.transaction import BundleProcessor

    _url, engine = _engines(backend)
    _truncate(engine)
    store = FhirStore(engine, zone=settings.timezone, base_url=settings.base_url or "")
    from interop.services import wire_store

    wire_store(store, settings)
    search = SearchEngine(
        store,
        default_count=settings.search_default_count,
        max_count=settings.search_max_count,
        total_limit=settings.total_limit,
    )
    return Services(settings, engine, store, search, BundleProcessor(store, search))


ADMIN_HEADERS = {"Authorization": "Bearer test-admin-key", "Content-Type": "application/fhir+json"}


@pytest.fixture
def client(settings, services):  # type: ignore[no-untyped-def]
    from fastapi.testclient import TestClient

    from interop.api.app import create_app

    app = create_app(settings, services=services)
    with TestClient(app, headers=ADMIN_HEADERS) as c:
        yield c
