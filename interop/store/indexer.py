"""Derive index rows from a resource's JSON (generic search tables + the observation index)."""

from __future__ import annotations

from typing import Any

from interop.fhir.dates import fhir_range
from interop.fhir.searchparams import IndexEntries, extract

ZONE_SYSTEM = "https://dho-interop.no/fhir/CodeSystem/zone"


def _effective(obs: dict[str, Any], zone: str) -> tuple[int | None, int | None]:
    for key in ("effectiveDateTime", "effectiveInstant"):
        v = obs.get(key)
        if isinstance(v, str):
            try:
                return fhir_range(v, zone)
            except ValueError:
                return None, None
    period = obs.get("effectivePeriod")
    if isinstance(period, dict):
        try:
            p_start = fhir_range(period["start"], zone)[0] if "start" in period else None
            p_end = fhir_range(period["end"], zone)[1] if "end" in period else None
        except ValueError:
            return None, None
        return (p_start if p_start is not None else p_end), (
            p_end if p_end is not None else p_start
        )
    timing = obs.get("effectiveTiming")
    if isinstance(timing, dict):
        events = timing.get("event") or []
        if events and isinstance(events[0], str):
            try:
                return fhir_range(events[0], zone)
            except ValueError:
                return None, None
    return None, None


def _quantity(node: dict[str, Any]) -> tuple[float | None, str | None]:
    q = node.get("valueQuantity")
    if isinstance(q, dict) and isinstance(q.get("value"), int | float):
        return float(q["value"]), q.get("code") or q.get("unit")
    for key in ("valueInteger",):
        v = node.get(key)
        if isinstance(v, int) and not isinstance(v, bool):
            return float(v), None
    return None, None


def _zone(obs: dict[str, Any]) -> str | None:
    for interp in obs.get("interpretation") or []:
        for coding in interp.get("coding", []) if isinstance(interp, dict) else []:
            if isinstance(coding, dict) and coding.get("system") == ZONE_SYSTEM:
                code = coding.get("code")
                return code if isinstance(code, str) else None
    return None


def _category(obs: dict[str, Any]) -> str | None:
    for cat in obs.get("category") or []:
        for coding in cat.get("coding", []) if isinstance(cat, dict) else []:
            if isinstance(coding, dict) and coding.get("code"):
                return str(coding["code"])
    return None


OBSERVATION_COLUMNS = (
    "res_id",
    "patient_id",
    "effective",
    "effective_end",
    "status",
    "category",
    "zone",
    "system",
    "code",
    "is_primary",
    "is_component",
    "value",
    "unit",
)
"""The columns of :func:`observation_rows`' tuples, in order."""


def observation_rows(
    obs: dict[str, Any], res_id: str, patient_id: str | None, zone_name: str
) -> list[tuple[Any, ...]]:
    """The observation index rows of one Observation (``OBSERVATION_COLUMNS`` order): one per
    coding of its code (the first is the primary row), one per coding of each component."""
    start, end = _effective(obs, zone_name)
    status = obs.get("status", "final")
    category = _category(obs)
    zone = _zone(obs)
    base = (res_id, patient_id, start, end, status, category)
    rows: list[tuple[Any, ...]] = []
    value, unit = _quantity(obs)
    first = True
    for coding in (obs.get("code") or {}).get("coding", []):
        if not isinstance(coding, dict) or not coding.get("code"):
            continue
        rows.append(
            (*base, zone, coding.get("system", "") or "", str(coding["code"]), first, False)
            + (value, unit)
        )
        first = False
    if first:  # no coded code: still one primary row so the Observation is findable
        rows.append((*base, zone, "", "", True, False, value, unit))
    for comp in obs.get("component") or []:
        if not isinstance(comp, dict):
            continue
        cvalue, cunit = _quantity(comp)
        czone = _zone(comp)  # a component has its own zone (BP: systolic and diastolic apart)
        for coding in (comp.get("code") or {}).get("coding", []):
            if isinstance(coding, dict) and coding.get("code"):
                rows.append(
                    (*base, czone, coding.get("system", "") or "", str(coding["code"]), False)
                    + (True, cvalue, cunit)
                )
    return rows


def index_entries(resource: dict[str, Any], zone_name: str) -> IndexEntries:
    return extract(resource, zone_name)
