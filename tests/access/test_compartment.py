"""The access policy's quick compartment look-up finds the same patient as the indexer, on
every FHIR resource in the shared conformance samples and the third-party corpus."""

from __future__ import annotations

import json
from typing import Any

from interop.fhir.searchparams import extract, patient_compartment
from interop.fhir.validation import SUPPORTED_TYPES
from tests.conftest import SHARED


def _resources() -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for folder in (SHARED / "conformance", SHARED / "corpus" / "fhir"):
        for path in sorted(folder.rglob("*.json")):
            try:
                data = json.loads(path.read_text(encoding="utf-8"))
            except (ValueError, UnicodeDecodeError):
                continue
            if not isinstance(data, dict):
                continue
            out.append(data)
            out += [
                e["resource"]
                for e in data.get("entry") or []
                if isinstance(e, dict) and isinstance(e.get("resource"), dict)
            ]
    return [r for r in out if r.get("resourceType") in SUPPORTED_TYPES]


def test_the_compartment_is_the_indexers() -> None:
    checked = 0
    for resource in _resources():
        try:
            expected = extract(resource).patient_id
        except (KeyError, TypeError, ValueError, AttributeError):
            continue  # not valid enough to be stored; the validator refuses it first
        assert patient_compartment(resource) == expected, resource.get("id")
        checked += 1
    assert checked > 100
