"""Where a plan's life-cycle state and its drafted content live on the CarePlan (read by the
life cycle, the request to the GP and the GP's page alike)."""

from __future__ import annotations

from typing import Any, Literal

import orjson

from interop.care.plans import PLAN_STATE_URL

STATE_URL = PLAN_STATE_URL
CONTENT_URL = "https://dho-interop.no/fhir/StructureDefinition/plan-content"
"""The plan's content as drafted (goals, per-zone signs, actions, medication, contact)."""
State = Literal["draft", "proposed", "active", "revoked", "completed"]


def state_of(cp: dict[str, Any]) -> State:
    for ext in cp.get("extension", []):
        if ext.get("url") == STATE_URL:
            return ext["valueCode"]
    status = cp.get("status")
    return "draft" if status == "draft" else status  # type: ignore[return-value]


def content_of(cp: dict[str, Any]) -> dict[str, Any]:
    for ext in cp.get("extension", []):
        if ext.get("url") == CONTENT_URL:
            return dict(orjson.loads(ext["valueString"]))
    return {}
