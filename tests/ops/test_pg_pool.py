"""PostgreSQL connection pool: a connection idle for a while is tested before it is handed
out and replaced when the server has closed it; one in use a moment ago is handed out
without a round trip.

Runs whenever PostgreSQL is configured (``INTEROP_TEST_PG_URL``; ``make test`` always sets it).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import Engine, text

PG_URL = os.environ.get("INTEROP_TEST_PG_URL")
pytestmark = pytest.mark.skipif(not PG_URL, reason="needs PostgreSQL (INTEROP_TEST_PG_URL)")


@pytest.fixture
def engine() -> Iterator[Engine]:
    from interop.store.db import create_db_engine

    assert PG_URL is not None
    e = create_db_engine(PG_URL)
    try:
        yield e
    finally:
        e.dispose()


def _pings(engine: Engine, monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    calls: list[Any] = []
    real = engine.dialect.do_ping

    def counted(dbapi_conn: Any) -> bool:
        calls.append(dbapi_conn)
        return real(dbapi_conn)

    monkeypatch.setattr(engine.dialect, "do_ping", counted)
    return calls


def _backends(engine: Engine) -> set[int]:
    """The backends of two connections checked out together (the pool's two)."""
    with engine.connect() as a, engine.connect() as b:
        return {int(c.execute(text("SELECT pg_backend_pid()")).scalar_one()) for c in (a, b)}


def test_a_connection_closed_by_the_server_is_replaced(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    import psycopg

    import interop.store.db as db

    pooled = _backends(engine)
    dead = min(pooled)
    assert PG_URL is not None
    with psycopg.connect(PG_URL, autocommit=True) as admin:
        admin.execute("SELECT pg_terminate_backend(%s)", (dead,))
    monkeypatch.setattr(db, "PING_AFTER_IDLE_SECONDS", 0.0)
    pings = _pings(engine, monkeypatch)
    now = _backends(engine)  # no error: the dead one is found and replaced
    assert len(pings) == 2
    assert dead not in now and len(now & pooled) == 1


def test_a_connection_in_use_a_moment_ago_is_not_tested(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    _backends(engine)
    pings = _pings(engine, monkeypatch)
    for _ in range(5):
        _backends(engine)
    assert pings == []
