"""The HTML summary in a real browser: headless Chromium renders the page; the test reads the
rendered DOM (chart present, events listed) and keeps a screenshot in var/test-output/."""

from __future__ import annotations

import shutil
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path

from interop.api.app import create_app
from tests.conftest import REPO
from tests.live_server import live_server
from tests.plans.test_triage import FNR, PLAN, _bp, _ingest, _setup


def _chromium() -> str:
    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    assert exe, "headless Chromium is needed (Debian package chromium; `make test` installs it)"
    return exe


FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def test_summary_page_renders_in_chromium(client, settings, services, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    _setup(client)
    client.put(f"/api/v1/patients/{FNR}/plan", json=PLAN)
    now = datetime.now(UTC)
    _ingest(
        services,
        *[_bp(str(120 + 30 * (i % 3)), "80", now + timedelta(seconds=5 + i)) for i in range(9)],
    )
    app = create_app(settings, services=services)
    with live_server(app) as base:
        url = f"{base}/api/v1/patients/{FNR}/summary?view=gp&access_token=test-admin-key"
        common = [_chromium(), *FLAGS, f"--user-data-dir={tmp_path / 'profile'}"]
        # Chromium asks for text/html like any browser
        dom = subprocess.run(
            [*common, "--dump-dom", url], capture_output=True, text=True, timeout=90
        )
        assert dom.returncode == 0, dom.stderr[-2000:]
        html = dom.stdout
        assert "<svg" in html and "band-green" in html and "<polyline" in html
        assert 'id="events"' in html and "– rød" in html and "(red)" not in html
        out = REPO / "var" / "test-output"
        out.mkdir(parents=True, exist_ok=True)
        shot = out / "gp-summary.png"
        subprocess.run(
            [*common, f"--screenshot={shot}", "--window-size=1280,900", url],
            capture_output=True,
            timeout=90,
        )
        assert shot.is_file() and shot.stat().st_size > 5000
