"""Actor views of "pasientens måledata": one computation, served as JSON and as HTML.

A view (``mappings/views/<name>.yaml``) says which codes, which period and which aggregates an
actor gets: a GP sees weekly trends and red/yellow events, not thousands of raw values. The
summary is computed from the observation index (values, zones) without parsing Observation
JSON; the HTML page draws server-side SVG sparklines with the green/yellow bands of the plan
in force, and needs no external assets.
"""

from __future__ import annotations

import html
import statistics
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
from sqlalchemy import select

from interop.care.default_thresholds import defaults_for_patient
from interop.care.plans import ranges_in_force
from interop.care.zones import ZoneRanges
from interop.fhir.dates import from_micros, to_micros
from interop.mapping.views import ViewDefinition, available_views, view_definition
from interop.store.schema import code_set_table, observation_table, resource_table

__all__ = ["DISPLAY", "ViewDefinition", "available_views", "compute", "view_definition"]

DISPLAY = {
    "8480-6": "Systolisk blodtrykk",
    "8462-4": "Diastolisk blodtrykk",
    "8867-4": "Puls",
    "2708-6": "Oksygenmetning (SpO2)",
    "29463-7": "Vekt",
    "8310-5": "Temperatur",
    "14743-9": "Blodsukker (kapillært)",
    "15074-8": "Blodsukker",
    "9279-1": "Respirasjonsfrekvens",
}


def _episode_codes(conn: Any, patient_id: str, view: ViewDefinition) -> list[str]:
    """The codes the patient's active episode needs, when the view defines them."""
    if not view.codes_by_episode:
        return []
    for (content,) in conn.execute(
        select(resource_table.c.content).where(
            resource_table.c.res_type == "EpisodeOfCare",
            resource_table.c.patient_id == patient_id,
            resource_table.c.deleted.is_(False),
        )
    ):
        ep = orjson.loads(content)
        if ep.get("status") != "active":
            continue
        for t in ep.get("type", []):
            keys = [c.get("code", "") for c in t.get("coding", [])] + [
                str(t.get("text", "")).lower()
            ]
            for key in keys:
                if key in view.codes_by_episode:
                    return view.codes_by_episode[key]
    return []


@dataclass
class Series:
    code: str
    unit: str | None
    points: list[tuple[int, float, str | None]]
    """(effective µs, value, zone)"""
    res_ids: list[str] = field(default_factory=list)


def _trend(points: list[tuple[int, float, str | None]]) -> float | None:
    """Least-squares slope per week."""
    if len(points) < 3 or points[-1][0] - points[0][0] < 86_400_000_000:
        return None  # a trend needs at least three points over at least a day
    xs = [p[0] / 604_800_000_000 for p in points]
    ys = [p[1] for p in points]
    mx, my = statistics.fmean(xs), statistics.fmean(ys)
    den = sum((x - mx) ** 2 for x in xs)
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / den if den else None


def compute(
    conn: Any,
    patient_id: str,
    view: ViewDefinition,
    *,
    now: datetime | None = None,
    zone_name: str = "Europe/Oslo",
) -> dict[str, Any]:
    now = now or datetime.now(UTC)
    start = now - timedelta(days=view.period_days)
    # include the few minutes of device clock skew the ingest accepts
    t0, t1 = to_micros(start), to_micros(now + timedelta(minutes=5))
    o, cs = observation_table.c, code_set_table.c
    # the code sets with the view's LOINC codes first (a few dozen rows), then the patient's
    # rows with those sets: each set an index range of (patient, code set, time)
    codes = _episode_codes(conn, patient_id, view) or view.codes
    wanted = select(cs.set_id, cs.code).where(cs.system == "http://loinc.org")
    if codes:
        wanted = wanted.where(cs.code.in_(codes))
    loinc: dict[int, list[str]] = {}
    for set_id, code in conn.execute(wanted):
        loinc.setdefault(set_id, []).append(code)
    rows = (
        conn.execute(
            select(o.res_id, o.code_set, o.value, o.unit, o.effective, o.zone)
            .where(
                o.patient_id == patient_id,
                o.code_set.in_(list(loinc)),
                o.effective >= t0,
                o.effective <= t1,
                o.status.not_in(("entered-in-error", "cancelled")),
                o.value.is_not(None),
            )
            .order_by(o.effective)
        ).all()
        if loinc
        else []
    )
    series: dict[str, Series] = {}
    for res_id, set_id, value, unit, effective, zone in rows:
        for code in loinc[set_id]:  # a series per LOINC coding of the code
            s = series.get(code)
            if s is None:
                s = series[code] = Series(code, unit, [])
            s.points.append((effective, float(value), zone))
            s.res_ids.append(res_id)
    plan = ranges_in_force(conn, patient_id, t1, zone_name)
    defaults = defaults_for_patient(conn, patient_id)  # the defaults triage used (KOLS …)
    days = max(1, view.period_days)
    # (UTC) days with a measurement, as day numbers: only their count is used
    measured_days = {p[0] // 86_400_000_000 for s in series.values() for p in s.points}
    codes_out = []
    bucket_starts: dict[int, str] = {}  # the codes share their buckets' start times
    for code, s in sorted(series.items()):
        vals = [p[1] for p in s.points]
        zones = [p[2] for p in s.points if p[2]]
        ranges: ZoneRanges | None = plan.get(code) or defaults.get(code)
        weekly = []
        week = 604_800_000_000 if view.resolution == "week" else 86_400_000_000
        buckets: dict[int, list[float]] = {}
        for t, v, _z in s.points:
            buckets.setdefault((t - t0) // week, []).append(v)
        for b in sorted(buckets):
            bucket = buckets[b]
            bucket_start = bucket_starts.get(b)
            if bucket_start is None:
                bucket_start = bucket_starts[b] = from_micros(t0 + b * week).isoformat(
                    timespec="seconds"
                )
            weekly.append(
                {
                    "start": bucket_start,
                    "min": min(bucket),
                    "mean": round(sum(bucket) / len(bucket), 2),
                    "max": max(bucket),
                    "n": len(bucket),
                }
            )
        codes_out.append(
            {
                "code": code,
                "display": DISPLAY.get(code, code),
                "unit": s.unit,
                "count": len(vals),
                "latest": {
                    "value": vals[-1],
                    "time": from_micros(s.points[-1][0]).isoformat(timespec="seconds"),
                    "zone": s.points[-1][2],
                },
                "min": min(vals),
                "mean": round(statistics.fmean(vals), 2),
                "max": max(vals),
                "trendPerWeek": None if (tr := _trend(s.points)) is None else round(tr, 3),
                "shareGreen": round(zones.count("green") / len(zones), 3) if zones else None,
                "series": weekly,
                "ranges": None
                if ranges is None
                else {
                    "source": ranges.source,
                    "green": [None if x is None else float(x) for x in ranges.green],
                    "yellow": [None if x is None else float(x) for x in ranges.yellow],
                },
                "_raw": s.points,
            }
        )
    events: list[dict[str, Any]] = [
        {
            "_res_id": rid,
            "time": from_micros(t).isoformat(timespec="seconds"),
            "code": code,
            "value": v,
            "zone": z,
        }
        for code, s in series.items()
        for (t, v, z), rid in zip(s.points, s.res_ids, strict=True)
        if z in ("yellow", "red")
    ]
    events.sort(key=lambda e: str(e["time"]), reverse=True)
    tasks = []
    done_by_observation: dict[str, list[str]] = {}
    for (content,) in conn.execute(
        select(resource_table.c.content).where(
            resource_table.c.res_type == "Task", resource_table.c.patient_id == patient_id
        )
    ):
        t = orjson.loads(content)
        tasks.append(
            {
                "id": t["id"],
                "status": t.get("status"),
                "priority": t.get("priority"),
                "description": t.get("description"),
                "authoredOn": t.get("authoredOn"),
                "notes": [n.get("text") for n in t.get("note", [])],
            }
        )
        # what was done about an event: the Task raised for it, its status and notes
        focus = (t.get("focus") or {}).get("reference", "")
        if focus.startswith("Observation/"):
            outcome = f"Task {t.get('status')}"
            if t.get("statusReason", {}).get("text"):
                outcome += f": {t['statusReason']['text']}"
            done_by_observation.setdefault(focus.split("/", 1)[1], []).append(outcome)
    for e in events:
        e["actions"] = done_by_observation.get(e.pop("_res_id", ""), [])
    adherence, basis = _adherence(series, plan, t0, t1, measured_days, days)
    plan_out = {
        code: {
            "source": r.source,
            "unit": r.unit,
            "green": [None if x is None else float(x) for x in r.green],
            "yellow": [None if x is None else float(x) for x in r.yellow],
            "actions": r.actions,
        }
        for code, r in plan.items()
    }
    result = {
        "view": view.name,
        "title": view.title,
        "patient": f"Patient/{patient_id}",
        "period": {
            "start": start.isoformat(timespec="seconds"),
            "end": now.isoformat(timespec="seconds"),
        },
        "adherence": adherence,
        "adherenceBasis": basis,
        "codes": codes_out,
        "events": events[:100],
        "eventCount": {
            "red": sum(e["zone"] == "red" for e in events),
            "yellow": sum(e["zone"] == "yellow" for e in events),
        },
        "tasks": tasks if "tasks" in view.aggregates or view.name in ("gp", "followup") else [],
        "plan": plan_out,
    }
    if "note" in view.aggregates:
        result["note"] = summary_note(result)
    return result


def _adherence(
    series: dict[str, Series],
    plan: dict[str, ZoneRanges],
    t0: int,
    t1: int,
    measured_days: set[Any],
    days: int,
) -> tuple[float, str]:
    """Share of scheduled measurements done: per planned code with a schedule (maxGapHours),
    measurements against the number the schedule asks for; without a schedule, share of days
    with at least one measurement."""
    scheduled = {code: r.max_gap_hours for code, r in plan.items() if r.max_gap_hours}
    if scheduled:
        shares = []
        for code, gap in scheduled.items():
            expected = max(1, (t1 - t0) // (gap * 3_600_000_000))
            got = len(series[code].points) if code in series else 0
            shares.append(min(1.0, got / expected))
        return round(sum(shares) / len(shares), 3), "scheduled measurements done (plan)"
    return round(len(measured_days) / days, 3), "days with at least one measurement"


def summary_note(summary: dict[str, Any]) -> str:
    """A short Norwegian note an EPJ can file: latest values, zones, events, plan status."""
    lines = [
        f"Digital hjemmeoppfølging {summary['period']['start'][:10]}–{summary['period']['end'][:10]}."
    ]
    for c in summary["codes"]:
        latest = c["latest"]
        zone = f" ({latest['zone']})" if latest["zone"] else ""
        lines.append(
            f"{c['display']}: siste {latest['value']:g} {c['unit'] or ''}{zone}, snitt {c['mean']:g}, "
            f"{c['count']} målinger."
        )
    ec = summary["eventCount"]
    lines.append(
        f"Røde hendelser: {ec['red']}, gule: {ec['yellow']}. Etterlevelse {summary['adherence'] * 100:.0f} %."
    )
    lines.append(
        "Egenbehandlingsplan: "
        + (
            "godkjent plan i bruk."
            if summary["plan"]
            else "ingen godkjent plan; standardgrenser brukt."
        )
    )
    return " ".join(lines)


def public(summary: dict[str, Any]) -> dict[str, Any]:
    out = dict(summary)
    out["codes"] = [{k: v for k, v in c.items() if k != "_raw"} for c in summary["codes"]]
    return out


ZONE_FILL = {"green": "#e6f4ea", "yellow": "#fff4ce"}
ZONE_DOT = {"green": "#2e7d32", "yellow": "#b7791f", "red": "#c62828", None: "#555"}
"""Dot colour per zone; any other (``not-assessed``) is drawn as unjudged (grey)."""


def value_axis(code: dict[str, Any]) -> tuple[float, float]:
    """The y-axis range of a code's chart: its values and the plan's zone bounds, padded 8 %."""
    rng = code.get("ranges") or {}
    bounds = [
        float(b)
        for r in (rng.get("green") or [], rng.get("yellow") or [])
        for b in r
        if b is not None
    ]
    both = [float(p[1]) for p in code["_raw"]] + bounds
    lo, hi = min(both), max(both)
    if hi == lo:
        hi, lo = hi + 1, lo - 1
    pad = (hi - lo) * 0.08
    return lo - pad, hi + pad


def sparkline(code: dict[str, Any], t0: int, t1: int, width: int = 360, height: int = 70) -> str:
    pts = code["_raw"]
    rng = code.get("ranges") or {}
    lo, hi = value_axis(code)

    def y(v: float) -> float:
        return height - (v - lo) / (hi - lo) * height

    def x(t: int) -> float:
        return (t - t0) / max(1, t1 - t0) * width

    parts = [
        f'<svg class="spark" role="img" aria-label="{html.escape(code["display"])}" width="{width}" height="{height}" viewBox="0 0 {width} {height}" xmlns="http://www.w3.org/2000/svg">'
    ]
    for zone in ("yellow", "green"):
        band = rng.get(zone)
        if band:
            b_lo = band[0] if band[0] is not None else lo
            b_hi = band[1] if band[1] is not None else hi
            parts.append(
                f'<rect class="band-{zone}" x="0" y="{y(b_hi):.1f}" width="{width}" height="{max(0.0, y(b_lo) - y(b_hi)):.1f}" fill="{ZONE_FILL[zone]}"/>'
            )
    path = " ".join(f"{x(t):.1f},{y(v):.1f}" for t, v, _z in pts)
    parts.append(f'<polyline fill="none" stroke="#1f4e79" stroke-width="1.5" points="{path}"/>')
    for t, v, z in pts:
        if z in ("yellow", "red"):
            parts.append(
                f'<circle cx="{x(t):.1f}" cy="{y(v):.1f}" r="3" fill="{ZONE_DOT.get(z, ZONE_DOT[None])}"><title>{v} ({z})</title></circle>'
            )
    parts.append("</svg>")
    return "".join(parts)


def render_html(summary: dict[str, Any], patient_label: str) -> str:
    t0 = to_micros(datetime.fromisoformat(summary["period"]["start"]))
    t1 = to_micros(datetime.fromisoformat(summary["period"]["end"]))
    rows = []
    for c in summary["codes"]:
        latest = c["latest"]
        trend = c["trendPerWeek"]
        arrow = "→" if trend is None or abs(trend) < 0.05 else ("↗" if trend > 0 else "↘")
        share = "–" if c["shareGreen"] is None else f"{c['shareGreen'] * 100:.0f} %"
        rows.append(
            f'<tr><th scope="row">{html.escape(c["display"])}<br><small>{html.escape(c["code"])}</small></th>'
            f'<td class="zone-{latest["zone"] or "none"}">{latest["value"]:g} {html.escape(c["unit"] or "")}</td>'
            f"<td>{c['min']:g} / {c['mean']:g} / {c['max']:g}</td><td>{arrow} {'' if trend is None else f'{trend:+.2f}/uke'}</td>"
            f"<td>{share}</td><td>{sparkline(c, t0, t1)}</td></tr>"
        )
    events = (
        "".join(
            f'<li class="ev-{e["zone"]}">{html.escape(e["time"][:16].replace("T", " "))} — {html.escape(DISPLAY.get(e["code"], e["code"]))} {e["value"]:g} ({e["zone"]})</li>'
            for e in summary["events"][:30]
        )
        or "<li>Ingen gule eller røde målinger i perioden.</li>"
    )
    tasks = "".join(
        f"<li>{html.escape(t['priority'] or '')}: {html.escape(t['description'] or '')} — {html.escape(t['status'] or '')}</li>"
        for t in summary["tasks"][:20]
    )
    return f"""<!doctype html>
<html lang="no"><head><meta charset="utf-8"><title>{html.escape(summary["title"])}</title>
<style>
body{{font-family:system-ui,-apple-system,sans-serif;margin:1.5em;max-width:72em;color:#222}}
h1{{font-size:1.3em;margin-bottom:.2em}} table{{border-collapse:collapse;width:100%}}
th,td{{text-align:left;padding:.3em .6em;border-bottom:1px solid #ddd;vertical-align:middle}}
.zone-green{{color:#2e7d32;font-weight:600}} .zone-yellow{{color:#b7791f;font-weight:600}} .zone-red{{color:#c62828;font-weight:700}}
.ev-red{{color:#c62828}} .ev-yellow{{color:#8a5a00}} .meta{{color:#555}}
@media print{{body{{margin:0}} .spark{{width:280px}}}}
</style></head><body>
<h1>{html.escape(summary["title"])}</h1>
<p class="meta">{html.escape(patient_label)} · {html.escape(summary["period"]["start"][:10])} – {html.escape(summary["period"]["end"][:10])} ·
Etterlevelse {summary["adherence"] * 100:.0f} % av dagene · røde hendelser {summary["eventCount"]["red"]}, gule {summary["eventCount"]["yellow"]}</p>
<table><thead><tr><th>Måling</th><th>Siste</th><th>Min / snitt / maks</th><th>Trend</th><th>Andel grønn</th><th>Utvikling (grønt/gult bånd = planens soner)</th></tr></thead>
<tbody>{"".join(rows)}</tbody></table>
<h2>Røde og gule hendelser</h2><ul id="events">{events}</ul>
{"<h2>Oppgaver</h2><ul id='tasks'>" + tasks + "</ul>" if tasks else ""}
</body></html>"""
