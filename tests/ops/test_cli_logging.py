"""The CLI logs as configured (INTEROP_LOG_JSON), and a start on an up-to-date database is
quiet: no Alembic set-up chatter, only the upgrades that really run."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from tests.live_server import free_port


def _migrate(db: Path, log_json: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    env.update({"INTEROP_DATABASE_URL": f"sqlite:///{db}", "INTEROP_LOG_JSON": log_json})
    return subprocess.run(
        [sys.executable, "-m", "interop.cli", "migrate"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )


def test_json_logs_and_quiet_restart(tmp_path: Path) -> None:
    db = tmp_path / "log.db"
    first = _migrate(db, "true")
    lines = [line for line in first.stderr.splitlines() if line.strip()]
    records = [json.loads(line) for line in lines if line.startswith("{")]
    upgrades = [r for r in records if r["msg"].startswith("Running upgrade")]
    assert upgrades and all(r["logger"] == "alembic.runtime.migration" for r in upgrades)
    assert not [r for r in records if "Context impl" in r["msg"] or "plugin" in r["msg"]]
    assert "at revision" in first.stdout + first.stderr
    # every log line is JSON; the command's own report is the only other output
    assert all(line.startswith("{") for line in lines if "alembic" in line)

    again = _migrate(db, "false")
    assert "alembic" not in again.stderr and "INFO" not in again.stderr
    assert "at revision" in again.stdout + again.stderr


def test_serve_logs_json_lines_from_uvicorn_too(tmp_path: Path) -> None:
    port = free_port()
    env = dict(os.environ)
    env.update(
        {
            "INTEROP_DATABASE_URL": f"sqlite:///{tmp_path / 'serve.db'}",
            "INTEROP_LOG_JSON": "true",
            "INTEROP_ADMIN_KEY": "k",
            "INTEROP_GC_GEN0_THRESHOLD": "10000",
        }
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "interop.cli", "serve", "--port", str(port)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert proc.poll() is None and time.monotonic() < deadline, "server did not start"
            time.sleep(0.1)
    finally:
        proc.send_signal(signal.SIGINT)
        _out, err = proc.communicate(timeout=30)
    records = [json.loads(line) for line in err.splitlines() if line.startswith("{")]
    started = [r for r in records if r["logger"].startswith("uvicorn")]
    assert started, err
    assert all(r["ts"].endswith("Z") for r in records)
    assert not [line for line in err.splitlines() if line.startswith("INFO:")], err
    # the service process tuned its garbage collector once start-up was done
    assert [r for r in records if r["logger"] == "interop.runtime"], err
