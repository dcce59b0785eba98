"""Layer rules (DESIGN.md §6): the import-linter contracts in pyproject.toml hold (the care
core imports no routing, messaging, views, API or wiring; views import no messaging; adapters
import nothing of interop), and the modules of the former import circle hide no imports
inside functions."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
NO_HIDDEN_IMPORTS = [
    "interop/care",
    "interop/routing/rules.py",
    "interop/messaging/compose.py",
    "interop/views/summary.py",
    "interop/services.py",
]
STILL_TO_UNTANGLE = {"interop/care/plan_lifecycle.py", "interop/care/plan_request.py"}
"""Known exceptions (see the ignore_imports of the contract in pyproject.toml)."""


def test_the_import_contracts_hold() -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    lint = Path(sys.executable).with_name("lint-imports")
    if not lint.exists():
        pytest.fail("lint-imports is not installed (dev dependency import-linter)")
    run = subprocess.run(
        [str(lint), "--no-cache"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300
    )
    assert run.returncode == 0, run.stdout + run.stderr
    assert "0 broken" in run.stdout


def _files() -> list[Path]:
    out: list[Path] = []
    for name in NO_HIDDEN_IMPORTS:
        path = ROOT / name
        out.extend(sorted(path.rglob("*.py")) if path.is_dir() else [path])
    return [p for p in out if str(p.relative_to(ROOT)) not in STILL_TO_UNTANGLE]


@pytest.mark.parametrize("path", _files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_no_import_is_hidden_inside_a_function(path: Path) -> None:
    tree = ast.parse(path.read_text("utf-8"))
    hidden = [
        f"{path.relative_to(ROOT)}:{node.lineno}"
        for fn in ast.walk(tree)
        if isinstance(fn, ast.FunctionDef | ast.AsyncFunctionDef)
        for node in ast.walk(fn)
        if isinstance(node, ast.Import | ast.ImportFrom)
    ]
    assert hidden == []
