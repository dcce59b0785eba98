"""An acknowledged write on the embedded SQLite database survives a power loss by default."""

from __future__ import annotations

from pathlib import Path

import pytest

from interop.config import get_settings
from interop.store.db import create_db_engine

SYNCHRONOUS = {0: "OFF", 1: "NORMAL", 2: "FULL", 3: "EXTRA"}


def _synchronous(tmp_path: Path) -> str:
    get_settings.cache_clear()
    engine = create_db_engine(f"sqlite:///{tmp_path / 'd.db'}")
    try:
        with engine.connect() as conn:
            return SYNCHRONOUS[int(conn.exec_driver_sql("PRAGMA synchronous").scalar_one())]
    finally:
        engine.dispose()
        get_settings.cache_clear()


def test_every_commit_is_flushed_to_disk_by_default(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("INTEROP_SQLITE_SYNCHRONOUS", raising=False)
    assert _synchronous(tmp_path) == "FULL"


def test_normal_is_a_setting(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("INTEROP_SQLITE_SYNCHRONOUS", "NORMAL")
    assert _synchronous(tmp_path) == "NORMAL"


def test_a_wrong_value_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("INTEROP_SQLITE_SYNCHRONOUS", "OFF")
    get_settings.cache_clear()
    try:
        with pytest.raises(ValueError, match="(?i)sqlite_synchronous"):
            create_db_engine(f"sqlite:///{tmp_path / 'd.db'}")
    finally:
        get_settings.cache_clear()
