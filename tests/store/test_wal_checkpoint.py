"""SQLite's write-ahead log is copied back into the database file by a thread of the process,
not inside a request's COMMIT — and nothing committed is lost on the way."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from sqlalchemy import Engine

from interop.config import get_settings
from interop.store.db import create_db_engine
from interop.store.wal_checkpoint import BACKSTOP_PAGES


def _engine(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, seconds: str) -> Engine:
    monkeypatch.setenv("INTEROP_SQLITE_CHECKPOINT_SECONDS", seconds)
    get_settings.cache_clear()
    try:
        return create_db_engine(f"sqlite:///{tmp_path / 'd.db'}")
    finally:
        get_settings.cache_clear()


def _write_pages(engine: Engine, rows: int = 200) -> None:
    """A few hundred pages of log (well under SQLite's own 1,000-page checkpoint)."""
    with engine.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE t (id INTEGER PRIMARY KEY, body BLOB)")
    for start in range(0, rows, 20):
        with engine.begin() as conn:
            for i in range(start, start + 20):
                conn.exec_driver_sql("INSERT INTO t VALUES (?, ?)", (i, b"x" * 4000))


def _database_bytes(tmp_path: Path) -> int:
    return (tmp_path / "d.db").stat().st_size


def test_the_log_reaches_the_database_file_without_a_commit_doing_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine = _engine(tmp_path, monkeypatch, "0.05")
    try:
        with engine.connect() as conn:
            pages = conn.exec_driver_sql("PRAGMA wal_autocheckpoint").scalar_one()
        assert pages == BACKSTOP_PAGES
        _write_pages(engine)
        deadline = time.monotonic() + 10
        while _database_bytes(tmp_path) < 200 * 4000 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert _database_bytes(tmp_path) >= 200 * 4000
        with engine.connect() as conn:
            assert conn.exec_driver_sql("SELECT count(*) FROM t").scalar_one() == 200
    finally:
        engine.dispose()


def test_without_the_thread_sqlite_checkpoints_as_it_always_did(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine = _engine(tmp_path, monkeypatch, "0")
    try:
        with engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA wal_autocheckpoint").scalar_one() == 1000
        _write_pages(engine)
        time.sleep(0.3)
        # under 1,000 pages of log, nothing has been copied back yet: the data is in the log
        assert _database_bytes(tmp_path) < 200 * 4000
        with engine.connect() as conn:
            assert conn.exec_driver_sql("SELECT count(*) FROM t").scalar_one() == 200
    finally:
        engine.dispose()
