"""Baseline proposal for a patient's own thresholds from the start-up period
(``GET /api/v1/patients/{id}/plan/proposal``; rules and guideline intervals in
``mappings/plans/baseline.yaml``).

Per measurement with enough readings in the start-up period (the first ``start_up_days`` from
the patient's first reading of it): the median and a robust spread (1.4826 × MAD, at least
``min_spread``) give green and yellow ranges, each bound clamped into its guideline interval.
The answer holds the readings it used and the statistics, and a ``zones`` body in the shape a
draft plan takes — for a nurse to edit and propose. Nothing is stored or applied here.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from datetime import timedelta
from functools import cache
from importlib.resources import files
from typing import Any

import yaml
from sqlalchemy import Connection, select

from interop.fhir.dates import format_instant, from_micros
from interop.store.schema import code_set_table, observation_table
from interop.text import text

MAD_TO_SD = 1.4826
"""Scales the median absolute deviation to a standard deviation for normal data."""


@dataclass(frozen=True, slots=True)
class Guideline:
    code: str
    unit: str
    decimals: int
    min_spread: float
    bounds: dict[str, tuple[float, float]]
    """green_low/green_high/yellow_low/yellow_high → allowed interval for that bound."""


@dataclass(frozen=True, slots=True)
class BaselineRules:
    start_up_days: int
    min_readings: int
    green_spread: float
    yellow_spread: float
    guidelines: dict[str, Guideline]


@cache
def baseline_rules() -> BaselineRules:
    data = yaml.safe_load((files("mappings") / "plans" / "baseline.yaml").read_text("utf-8"))
    guidelines = {}
    for code, g in data["measurements"].items():
        bounds = {
            k: (float(g[k][0]), float(g[k][1]))
            for k in ("green_low", "green_high", "yellow_low", "yellow_high")
            if k in g
        }
        guidelines[str(code)] = Guideline(
            str(code), str(g["unit"]), int(g.get("decimals", 0)), float(g["min_spread"]), bounds
        )
    return BaselineRules(
        int(data["start_up_days"]),
        int(data["min_readings"]),
        float(data["green_spread"]),
        float(data["yellow_spread"]),
        guidelines,
    )


def _clamp(value: float, interval: tuple[float, float]) -> float:
    return min(max(value, interval[0]), interval[1])


def propose_ranges(values: list[float], g: Guideline, rules: BaselineRules) -> dict[str, Any]:
    """Median/spread of ``values`` → green and yellow ranges inside the guideline intervals."""
    median = statistics.median(values)
    mad = statistics.median(abs(v - median) for v in values)
    spread = max(MAD_TO_SD * mad, g.min_spread)
    raw = {
        "green_low": median - rules.green_spread * spread,
        "green_high": median + rules.green_spread * spread,
        "yellow_low": median - rules.yellow_spread * spread,
        "yellow_high": median + rules.yellow_spread * spread,
    }
    out: dict[str, float | None] = {}
    clamped = []
    for key, value in raw.items():
        interval = g.bounds.get(key)
        if interval is None:
            out[key] = None  # no guideline for this bound (SpO2 has no upper one): open
            continue
        bound: float = round(_clamp(value, interval), g.decimals)
        if bound != round(value, g.decimals):
            clamped.append(key)
        out[key] = int(bound) if g.decimals == 0 else bound
    # yellow always contains green
    if out["yellow_low"] is not None and out["green_low"] is not None:
        out["yellow_low"] = min(out["yellow_low"], out["green_low"])
    if out["yellow_high"] is not None and out["green_high"] is not None:
        out["yellow_high"] = max(out["yellow_high"], out["green_high"])
    return {
        "code": g.code,
        "unit": g.unit,
        "green": {"low": out["green_low"], "high": out["green_high"]},
        "yellow": {"low": out["yellow_low"], "high": out["yellow_high"]},
        "statistics": {
            "n": len(values),
            "median": round(median, g.decimals + 1),
            "spread": round(spread, g.decimals + 1),
            "mad": round(mad, g.decimals + 1),
        },
        "clampedToGuideline": clamped,
    }


def baseline_proposal(conn: Connection, patient_id: str) -> dict[str, Any]:
    """The proposal for one patient (see the module text)."""
    rules = baseline_rules()
    o, cs = observation_table.c, code_set_table.c
    sets: dict[int, list[str]] = {}
    for set_id, code in conn.execute(
        select(cs.set_id, cs.code).where(
            cs.system == "http://loinc.org", cs.code.in_(list(rules.guidelines))
        )
    ):
        sets.setdefault(set_id, []).append(code)
    readings: dict[str, list[tuple[int, float, str, str | None]]] = {}
    if sets:
        rows = conn.execute(
            select(o.res_id, o.code_set, o.value, o.unit, o.effective)
            .where(
                o.patient_id == patient_id,
                o.code_set.in_(list(sets)),
                o.status.not_in(("entered-in-error", "cancelled")),
                o.value.is_not(None),
                o.effective.is_not(None),
            )
            .order_by(o.effective)
        ).all()
        for res_id, set_id, value, unit, effective in rows:
            for code in sets[set_id]:
                readings.setdefault(code, []).append((effective, float(value), res_id, unit))
    proposed, insufficient = [], []
    window = int(timedelta(days=rules.start_up_days).total_seconds() * 1_000_000)
    for code, g in sorted(rules.guidelines.items()):
        points = readings.get(code, [])
        usable = [p for p in points if p[3] in (None, g.unit)]
        if usable:
            first = usable[0][0]
            usable = [p for p in usable if p[0] < first + window]
        if len(usable) < rules.min_readings:
            if points:
                insufficient.append(
                    {
                        "code": code,
                        "readings": len(usable),
                        "needed": rules.min_readings,
                    }
                )
            continue
        zone = propose_ranges([p[1] for p in usable], g, rules)
        zone["period"] = {
            "start": format_instant(from_micros(usable[0][0])),
            "end": format_instant(from_micros(usable[-1][0])),
        }
        zone["readings"] = [
            {"time": format_instant(from_micros(t)), "value": v, "observation": f"Observation/{r}"}
            for t, v, r, _u in usable
        ]
        proposed.append(zone)
    return {
        "applied": False,
        "note": text("plan.proposal_note"),
        "startUpDays": rules.start_up_days,
        "zones": proposed,
        "insufficient": insufficient,
        "draft": {
            "zones": [
                {"code": z["code"], "unit": z["unit"], "green": z["green"], "yellow": z["yellow"]}
                for z in proposed
            ]
        },
    }
