"""``Observation/$lastn`` and ``Observation/$stats`` (FHIR R4) over the observation index.

$lastn: the most recent ``max`` Observations per patient and per code, newest first. An
Observation is grouped by its *primary* coding (the first coding of ``Observation.code``), so
a multi-coded Observation is returned once. Entered-in-error and cancelled are left out.

$stats: statistics of one subject's values per code over a period, returned as Observations
whose components carry one statistic each (code system
``http://terminology.hl7.org/CodeSystem/observation-statistics``), in the UCUM unit of the
data. A panel code (BP 85354-9) gives statistics per component (systolic, diastolic). Values
in different units are never mixed: each unit gets its own result.
"""

from __future__ import annotations

import math
import statistics
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

import orjson
from sqlalchemy import and_, func, select, true

from interop.fhir.dates import fhir_range, format_instant, from_micros, now_utc, to_micros
from interop.fhir.outcome import error
from interop.fhir.searchparams import index_value
from interop.store.repository import FhirStore, new_id
from interop.store.schema import code_set_table, observation_table, resource_table, token_table
from interop.store.search_values import code_sets_holding_any, date_condition

STATS_SYSTEM = "http://terminology.hl7.org/CodeSystem/observation-statistics"
EXCLUDED = ("entered-in-error", "cancelled")
STATISTICS = {
    "average": "Average",
    "maximum": "Maximum",
    "minimum": "Minimum",
    "count": "Count",
    "totalcount": "Total Count",
    "median": "Median",
    "std-dev": "Standard Deviation",
    "sum": "Sum",
    "variance": "Variance",
    "20-percent": "20th Percentile",
    "80-percent": "80th Percentile",
    "4-lower": "Lower Quartile",
    "4-upper": "Upper Quartile",
    "4-dev": "Quartile Deviation",
    "5-1": "1st Quintile",
    "5-2": "2nd Quintile",
    "5-3": "3rd Quintile",
    "5-4": "4th Quintile",
    "skew": "Skew",
    "kurtosis": "Kurtosis",
}
ALIASES = {"max": "maximum", "min": "minimum", "mean": "average"}
FIRST_LAST_URL = "https://dho-interop.no/fhir/StructureDefinition/statistic-first-last"


def _token(value: str) -> tuple[str | None, str]:
    if "|" in value:
        s, c = value.split("|", 1)
        return s, c
    return None, value


def patient_ids(store: FhirStore, conn: Any, params: dict[str, list[str]]) -> list[str] | None:
    """The patients named by patient/subject (reference, id, or :identifier / .identifier)."""
    refs = params.get("patient", []) + params.get("subject", [])
    idents = (
        params.get("patient:identifier", [])
        + params.get("subject:identifier", [])
        + params.get("patient.identifier", [])
        + params.get("subject.identifier", [])
    )
    if not refs and not idents:
        return None
    # each occurrence of the parameter narrows the set (repeated parameters are AND-ed)
    sets: list[set[str]] = []
    for r in refs:
        ids: set[str] = set()
        sets.append(ids)
        for v in r.split(","):
            v = v.strip()
            if v.startswith("Patient/"):
                ids.add(v.split("/", 1)[1])
            elif "/" not in v and v:
                ids.add(v)
            else:
                raise error(400, "invalid", f"patient {v!r} must be Patient/<id> or an id")
    for i in idents:
        ids = set()
        sets.append(ids)
        for v in i.split(","):
            system, code = _token(v)
            cond = [
                token_table.c.res_type == "Patient",
                token_table.c.param == "identifier",
                token_table.c.code == index_value(code),
            ]
            if system:
                cond.append(token_table.c.system == index_value(system))
            ids.update(r[0] for r in conn.execute(select(token_table.c.res_id).where(*cond)))
    return sorted(set.intersection(*sets))


def _code_conditions(values: list[str], *, component: bool | None = False) -> Any:
    """Any of the codes in ``values`` (one sub-select however many codes are listed)."""
    o = observation_table.c
    tokens = []
    for v in values:
        for item in v.split(","):
            system, code = _token(item.strip())
            tokens.append((system or None, code))
    cond = [o.code_set.in_(code_sets_holding_any(tokens))]
    if component is not None:
        cond.append(o.is_component == component)
    return and_(*cond)


def _date_conditions(values: list[str], zone: str) -> list[Any]:

    o = observation_table.c
    return [date_condition(o.effective, o.effective_end, v, zone, "date") for v in values]


MAX_DURATION_HOURS = 24 * 366 * 150
"""A $stats ``duration`` longer than any record (150 years of hours) is refused."""


def lastn(
    store: FhirStore, params: dict[str, list[str]], *, max_count: int = 100
) -> list[tuple[str, bytes]]:
    try:
        n = int((params.get("max") or ["1"])[0])
    except ValueError:
        raise error(400, "invalid", "max must be a positive integer") from None
    if n < 1 or n > max_count:
        raise error(400, "invalid", f"max must be between 1 and {max_count}")
    o = observation_table.c
    with store.reader() as conn:
        pids = patient_ids(store, conn, params)
        if pids is not None and not pids:
            return []
        conds = [o.status.not_in(EXCLUDED), o.is_component.is_(False)]
        if pids is not None:
            conds.append(o.patient_id.in_(pids))
        if params.get("code"):
            for occurrence in params["code"]:
                conds.append(_code_conditions([occurrence]))
            # the group is the primary coding; match on any coding, group on the primary one
            matched = select(o.res_id).where(*conds).distinct()
            base = [o.is_primary == true(), o.res_id.in_(matched)]
        else:
            base = [*conds, o.is_primary == true()]
        if params.get("category"):
            cats = [_token(c)[1] for v in params["category"] for c in v.split(",")]
            base.append(o.category.in_(cats))
        base.extend(_date_conditions(params.get("date", []), store.zone))
        ranked = (
            select(
                o.res_id,
                o.effective,
                func.row_number()
                .over(
                    partition_by=(o.patient_id, o.system, o.code),
                    order_by=(o.effective.desc(), o.res_id.desc()),
                )
                .label("rn"),
                o.patient_id,
                o.code,
            )
            .where(*base)
            .subquery()
        )
        rows = conn.execute(
            select(ranked.c.res_id, resource_table.c.content)
            .join(
                resource_table,
                and_(
                    resource_table.c.res_type == "Observation",
                    resource_table.c.res_id == ranked.c.res_id,
                ),
            )
            .where(ranked.c.rn <= n)
            .order_by(ranked.c.patient_id, ranked.c.code, ranked.c.effective.desc())
        ).all()
    return [(r.res_id, bytes(r.content)) for r in rows]


@dataclass
class StatsRequest:
    patient_ids: list[str]
    codes: list[tuple[str | None, str]]
    start: int | None
    end: int | None
    statistics: list[str]
    include: bool
    limit: int | None


def parse_stats(store: FhirStore, conn: Any, params: dict[str, list[str]]) -> StatsRequest:
    pids = patient_ids(store, conn, params)
    if pids is None:
        raise error(400, "required", "$stats needs subject (or patient)")
    codes: list[tuple[str | None, str]] = []
    # repeated code parameters narrow each other (an actor's scope is added as one of them)
    occurrences = [{c.strip().split("|")[-1] for c in v.split(",")} for v in params.get("code", [])]
    allowed = set.intersection(*occurrences) if occurrences else None
    params = {**params, "code": params.get("code", [])[:1]}
    default_system: str | None = (params.get("system") or [""])[0] or None
    for v in params.get("code", []):
        for c in v.split(","):
            s, code = _token(c.strip())
            if allowed is None or code in allowed:
                codes.append((s or default_system, code))
    for v in params.get("coding", []):
        for c in v.split(","):
            s, code = _token(c.strip())
            codes.append((s, code))
    if not codes:
        raise error(400, "required", "$stats needs code (with system) or coding")
    start = end = None
    if params.get("period"):
        p = params["period"][0]
        if "/" in p:
            a, b = p.split("/", 1)
            start = fhir_range(a, store.zone)[0] if a else None
            end = fhir_range(b, store.zone)[1] if b else None
        else:
            try:
                start, end = fhir_range(p, store.zone)
            except ValueError:
                raise error(400, "invalid", f"period {p!r} is not a date or start/end") from None
    elif params.get("duration"):
        try:
            hours = float(params["duration"][0])
        except ValueError:
            raise error(400, "invalid", "duration is a number of hours") from None
        if not 0 < hours <= MAX_DURATION_HOURS:  # also refuses nan and inf
            raise error(
                400,
                "invalid",
                f"duration is a number of hours above 0 and at most {MAX_DURATION_HOURS}",
            )
        end = to_micros(now_utc())
        start = end - int(hours * 3600 * 1_000_000)
    wanted = []
    for v in params.get("statistic", ["average,minimum,maximum,count"]):
        for s in v.split(","):
            s = ALIASES.get(s.strip(), s.strip())
            if s not in STATISTICS and s not in ("first", "last", "regression"):
                raise error(
                    400,
                    "not-supported",
                    f"statistic {s!r} is not supported; use {', '.join(STATISTICS)}",
                )
            if s == "regression":
                raise error(400, "not-supported", "statistic 'regression' is not supported")
            wanted.append(s)
    include = (params.get("include") or ["false"])[0] == "true"
    limit = None
    if params.get("limit"):
        try:
            limit = int(params["limit"][0])
        except ValueError:
            limit = 0
        if limit < 1:
            raise error(400, "invalid", "limit must be a positive integer")
    return StatsRequest(pids, codes, start, end, wanted, include, limit)


def _quantile(data: list[float], q: float) -> float:
    k = (len(data) - 1) * q
    lo = math.floor(k)
    hi = min(lo + 1, len(data) - 1)
    return data[lo] + (data[hi] - data[lo]) * (k - lo)


def compute_statistic(
    name: str, values: list[float], firstlast: tuple[float, float]
) -> float | None:
    if not values and name not in ("count", "totalcount"):
        return None
    data = sorted(values)
    n = len(data)
    if name in ("count", "totalcount"):
        return float(n)
    if name == "average":
        return statistics.fmean(data)
    if name == "maximum":
        return data[-1]
    if name == "minimum":
        return data[0]
    if name == "median":
        return statistics.median(data)
    if name == "sum":
        return math.fsum(data)
    if name == "std-dev":
        return statistics.stdev(data) if n > 1 else 0.0
    if name == "variance":
        return statistics.variance(data) if n > 1 else 0.0
    if name == "20-percent":
        return _quantile(data, 0.2)
    if name == "80-percent":
        return _quantile(data, 0.8)
    if name == "4-lower":
        return _quantile(data, 0.25)
    if name == "4-upper":
        return _quantile(data, 0.75)
    if name == "4-dev":
        return (_quantile(data, 0.75) - _quantile(data, 0.25)) / 2
    if name.startswith("5-"):
        return _quantile(data, int(name[2]) / 5)
    if name in ("skew", "kurtosis"):
        if n < 3:
            return None
        mean = statistics.fmean(data)
        sd = statistics.pstdev(data)
        if sd == 0:
            return 0.0
        if name == "skew":
            return sum(((x - mean) / sd) ** 3 for x in data) / n
        return sum(((x - mean) / sd) ** 4 for x in data) / n - 3
    if name == "first":
        return firstlast[0]
    if name == "last":
        return firstlast[1]
    return None


def stats(store: FhirStore, params: dict[str, list[str]]) -> list[dict[str, Any]]:
    o = observation_table.c
    # a row per coding, as $stats reports each coding its own way
    codings = observation_table.join(code_set_table, code_set_table.c.set_id == o.code_set)
    results: list[dict[str, Any]] = []
    with store.reader() as conn:
        req = parse_stats(store, conn, params)
        if not req.patient_ids:
            return []
        cs = code_set_table.c
        cols = (
            o.res_id,
            cs.system,
            cs.code,
            o.is_component,
            o.is_primary,
            o.value,
            o.unit,
            o.effective,
            o.category,
        )
        for system, code in req.codes:
            # the Observation's own code (index: patient, code set, effective), one row per
            # coding it matches …
            cond = [
                o.patient_id.in_(req.patient_ids),
                cs.code == index_value(code),
                o.is_component.is_(False),
                o.status.not_in(EXCLUDED),
            ]
            if system:
                cond.append(cs.system == index_value(system))
            if req.start is not None:
                cond.append(o.effective >= req.start)
            if req.end is not None:
                cond.append(o.effective <= req.end)
            own = conn.execute(
                select(*cols).select_from(codings).where(*cond).order_by(o.effective)
            ).all()
            rows = [r for r in own if r.value is not None]
            # … and, for a panel (no value of its own), its components
            panels = [r.res_id for r in own if r.value is None]
            for i in range(0, len(panels), 500):
                rows.extend(
                    conn.execute(
                        select(*cols)
                        .select_from(codings)
                        .where(
                            o.res_id.in_(panels[i : i + 500]),
                            o.is_component.is_(True),
                            o.value.is_not(None),
                        )
                    ).all()
                )
            rows.sort(key=lambda r: r.effective or 0)
            groups: dict[tuple[str, str, str | None], list[Any]] = defaultdict(list)
            for r in rows:
                groups[(r.system, r.code, r.unit)].append(r)
            for (gsys, gcode, unit), grows in groups.items():
                # one value per Observation (a multi-coded Observation has several rows)
                seen: dict[str, Any] = {}
                for r in grows:
                    seen.setdefault(r.res_id, r)
                ordered = sorted(seen.values(), key=lambda r: r.effective or 0)
                if req.limit:
                    ordered = ordered[-req.limit :]
                values = [float(r.value) for r in ordered]
                firstlast = (values[0], values[-1]) if values else (math.nan, math.nan)
                results.append(
                    _stat_observation(req, gsys, gcode, unit, values, firstlast, ordered)
                )
                # the statistic is of the category its sources are (as the sources write it)
                by_code = {r.category: r.res_id for r in ordered if r.category}
                results[-1]["category"] = _source_categories(conn, list(by_code.values()))
                if not results[-1]["category"]:
                    del results[-1]["category"]
    return results


def _source_categories(conn: Any, res_ids: list[str]) -> list[Any]:
    """The distinct ``category`` elements of the Observations ``res_ids`` (one per category)."""
    out: list[Any] = []
    if not res_ids:
        return out
    r = resource_table.c
    rows = conn.execute(
        select(r.content).where(r.res_type == "Observation", r.res_id.in_(res_ids))
    ).all()
    for row in rows:
        for cat in orjson.loads(bytes(row.content)).get("category") or []:
            if cat not in out:
                out.append(cat)
    return out


def _stat_observation(
    req: StatsRequest,
    system: str,
    code: str,
    unit: str | None,
    values: list[float],
    firstlast: tuple[float, float],
    rows: list[Any],
) -> dict[str, Any]:
    start = (
        from_micros(req.start)
        if req.start is not None
        else (from_micros(rows[0].effective) if rows else now_utc())
    )
    end = (
        from_micros(req.end)
        if req.end is not None
        else (from_micros(rows[-1].effective) if rows else now_utc())
    )
    components = []
    for name in req.statistics:
        value = compute_statistic(name, values, firstlast)
        comp: dict[str, Any] = {
            "code": {
                "coding": [
                    {"system": STATS_SYSTEM, "code": name, "display": STATISTICS.get(name, name)}
                ]
                if name in STATISTICS
                else [{"system": FIRST_LAST_URL, "code": name}]
            }
        }
        if value is None or (isinstance(value, float) and math.isnan(value)):
            comp["dataAbsentReason"] = {
                "coding": [
                    {
                        "system": "http://terminology.hl7.org/CodeSystem/data-absent-reason",
                        "code": "not-applicable",
                    }
                ]
            }
        elif name in ("count", "totalcount"):
            comp["valueQuantity"] = {"value": int(value)}
        else:
            q: dict[str, Any] = {"value": round(value, 4)}
            if unit:
                q.update({"unit": unit, "system": "http://unitsofmeasure.org", "code": unit})
            comp["valueQuantity"] = q
        components.append(comp)
    obs: dict[str, Any] = {
        "resourceType": "Observation",
        "id": new_id(),
        "status": "final",
        "category": [],  # filled from the sources by :func:`stats`
        "code": {"coding": [{"system": system, "code": code}]},
        "effectivePeriod": {"start": format_instant(start), "end": format_instant(end)},
        "component": components,
    }
    if len(req.patient_ids) == 1:
        obs["subject"] = {"reference": f"Patient/{req.patient_ids[0]}"}
    if req.include:
        obs["derivedFrom"] = [{"reference": f"Observation/{r.res_id}"} for r in rows[:1000]]
    return obs
