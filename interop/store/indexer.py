"""Derive index rows from a resource's JSON (generic search tables + the observation index)."""

from __future__ import annotations

import hashlib
from functools import lru_cache
from typing import Any

from interop.fhir.dates import fhir_range
from interop.fhir.searchparams import IndexEntries, extract, index_value

ZONE_SYSTEM = "https://dho-interop.no/fhir/CodeSystem/zone"


OPEN_END = 2**62
"""``effective_end`` of a period without an end (as the generic date index writes it)."""


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
        if p_start is not None and p_end is None:
            return p_start, OPEN_END  # ongoing: an open interval (found by ge, never by eb)
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


Codings = tuple[tuple[str, str], ...]
"""An ordered list of (system, code): the codings of one Observation.code or component code."""


@lru_cache(maxsize=4096)
def code_set_id(codings: Codings) -> int:
    """The id of a list of codings: 63 bits of a BLAKE2b digest of its text (system|code
    lines, in order), the same in every process and database, so that a writer needs no
    look-up to use it. The observation index stores one row per code with this id; the
    ``code_set`` table lists each id's codings."""
    text = "\n".join(f"{system}|{code}" for system, code in codings)
    digest = hashlib.blake2b(text.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") >> 1


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
    "code_set",
    "is_primary",
    "is_component",
    "value",
    "unit",
)
"""The columns of :func:`observation_rows`' tuples, in order."""


def _codings(concept: Any) -> Codings:
    codings = concept.get("coding") if isinstance(concept, dict) else None
    return tuple(
        (index_value(c.get("system", "") or ""), index_value(str(c["code"])))
        for c in codings or []
        if isinstance(c, dict) and c.get("code")
    )


def observation_rows(
    obs: dict[str, Any],
    res_id: str,
    patient_id: str | None,
    zone_name: str,
    sets: dict[int, Codings],
) -> list[tuple[Any, ...]]:
    """The observation index rows of one Observation (``OBSERVATION_COLUMNS`` order): one for
    its code (the primary row) and one per component, each with its first coding and the id
    of all its codings; every code set used is added to ``sets``."""
    start, end = _effective(obs, zone_name)
    status = obs.get("status", "final")
    category = _category(obs)
    base = (res_id, patient_id, start, end, status, category)
    value, unit = _quantity(obs)
    codings = _codings(obs.get("code"))
    set_id = code_set_id(codings)
    sets[set_id] = codings
    system, code = codings[0] if codings else ("", "")
    rows: list[tuple[Any, ...]] = [
        (*base, _zone(obs), system, code, set_id, True, False, value, unit)
    ]
    for comp in obs.get("component") or []:
        if not isinstance(comp, dict):
            continue
        codings = _codings(comp.get("code"))
        if not codings:
            continue
        set_id = code_set_id(codings)
        sets[set_id] = codings
        cvalue, cunit = _quantity(comp)
        # a component has its own zone (BP: systolic and diastolic apart)
        rows.append((*base, _zone(comp), *codings[0], set_id, False, True, cvalue, cunit))
    return rows


def index_entries(resource: dict[str, Any], zone_name: str) -> IndexEntries:
    return extract(resource, zone_name)
