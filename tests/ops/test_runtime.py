"""The service processes' garbage-collector tuning (interop.runtime)."""

from __future__ import annotations

import json
import subprocess
import sys

_PROBE = """
import gc, json
from interop.config import Settings
from interop.runtime import tune_gc
before = gc.get_threshold()
changed = tune_gc(Settings(database_url="sqlite://"))
print(json.dumps({"changed": changed, "before": before, "after": gc.get_threshold(),
                  "frozen": gc.get_freeze_count(), "enabled": gc.isenabled()}))
"""


def _probe(threshold: str) -> dict[str, object]:
    # in a fresh interpreter: freezing is for a whole process, not for the test run's
    env = {"INTEROP_GC_GEN0_THRESHOLD": threshold, "PATH": "/usr/bin:/bin"}
    out = subprocess.run(
        [sys.executable, "-c", _PROBE], env=env, capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def test_service_process_freezes_start_up_objects_and_raises_the_young_threshold() -> None:
    got = _probe("10000")
    assert got["changed"] is True
    assert got["before"] == [700, 10, 10]
    assert got["after"] == [10000, 10, 10]
    assert isinstance(got["frozen"], int) and got["frozen"] > 1000  # modules, models, mappings
    assert got["enabled"] is True  # cycles are still collected


def test_threshold_zero_keeps_pythons_own_collector_settings() -> None:
    got = _probe("0")
    assert got == {
        "changed": False,
        "before": [700, 10, 10],
        "after": [700, 10, 10],
        "frozen": 0,
        "enabled": True,
    }
