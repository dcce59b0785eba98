"""SQLite's write-ahead log is copied back into the database by a background thread, not by
the commit that happens to cross SQLite's automatic-checkpoint mark."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

import pytest
from sqlalchemy import text

from interop.config import reset_settings_cache
from interop.store import checkpoint
from interop.store.db import create_db_engine


@pytest.fixture
def fast_checkpoints(monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    monkeypatch.setenv("INTEROP_SQLITE_CHECKPOINT_SECONDS", "0.05")
    reset_settings_cache()
    yield
    reset_settings_cache()


def _write(engine, rows: int) -> None:  # type: ignore[no-untyped-def]
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE IF NOT EXISTS t (id INTEGER PRIMARY KEY, b BLOB)"))
        conn.execute(
            text("INSERT INTO t (b) VALUES (:b)"), [{"b": b"x" * 4000} for _ in range(rows)]
        )


def test_background_thread_checkpoints_and_commits_do_not(tmp_path: Path, fast_checkpoints) -> None:  # type: ignore[no-untyped-def]
    db = tmp_path / "c.db"
    engine = create_db_engine(f"sqlite:///{db}")
    try:
        with engine.connect() as conn:
            auto = conn.exec_driver_sql("PRAGMA wal_autocheckpoint").scalar()
        assert auto == checkpoint.AUTOCHECKPOINT_PAGES
        runner = checkpoint.ensure_checkpointer(str(db), 0.05)
        before = runner.checkpoints
        # 2,000 pages in one commit: past SQLite's default mark of 1,000, below ours
        _write(engine, 2000)
        deadline = time.monotonic() + 10
        while runner.checkpoints == before and time.monotonic() < deadline:
            time.sleep(0.02)
        assert runner.checkpoints > before
        # everything the commit wrote reached the database file
        conn = sqlite3.connect(db, isolation_level=None)
        busy, frames, copied = conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
        conn.close()
        assert (busy, frames - copied) == (0, 0)
        assert db.stat().st_size > 2000 * 4000
        # an idle log is left alone (after at most one look at what this test's check touched)
        time.sleep(0.2)
        idle = runner.checkpoints
        time.sleep(0.3)
        assert runner.checkpoints == idle
    finally:
        engine.dispose()
        checkpoint.stop_all()


def test_zero_interval_leaves_checkpoints_to_sqlite(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("INTEROP_SQLITE_CHECKPOINT_SECONDS", "0")
    reset_settings_cache()
    db = tmp_path / "d.db"
    try:
        engine = create_db_engine(f"sqlite:///{db}")
        with engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA wal_autocheckpoint").scalar() == 1000
        assert str(db.resolve()) not in checkpoint._running
        engine.dispose()
    finally:
        reset_settings_cache()
