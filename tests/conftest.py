"""Shared test fixtures.

Samples and official schemas are read from ``INTEROP_SHARED_DIR`` (default: ``../shared`` beside
the checkout). The product itself never reads that folder; tests pass paths in via settings.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SHARED = Path(os.environ.get("INTEROP_SHARED_DIR", REPO.parent / "shared")).resolve()
CONFORMANCE = SHARED / "conformance"
STANDARDS = SHARED / "standards"
KITH_SCHEMAS = STANDARDS / "kith"


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
