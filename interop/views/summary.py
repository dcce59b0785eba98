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
from interop.care.plans import PlanPeriod, plan_at, plan_periods, ranges_of_plan
from interop.care.zones import ZoneRanges
from interop.fhir.dates import from_micros, to_micros
from interop.mapping.views import ViewDefinition, available_views, view_definition
from interop.store.schema import code_set_table, observation_table, resource_table
from interop.text import catalogue, local_time, number, plural, quantity, text, zone_name
from interop.views.chart import Band, Drawing, draw, to_svg
from interop.views.concepts import display, primary_code, with_aliases
from interop.views.page import page

__all__ = ["ViewDefinition", "available_views", "compute", "view_definition"]


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
    event_limit: int | None = None,
) -> dict[str, Any]:
    """The summary; ``event_limit`` cuts the event list (red first), and ``eventsTotal`` says
    how many there are, so no page cuts it silently."""
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
        wanted = wanted.where(cs.code.in_(with_aliases(codes)))
    loinc: dict[int, list[str]] = {}
    for set_id, code in conn.execute(wanted):
        # one concept, one row: SpO2 coded 2708-6 and 59408-5 is one series
        concept = primary_code(code)
        if concept not in loinc.setdefault(set_id, []):
            loinc[set_id].append(concept)
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
    periods = plan_periods(conn, patient_id, zone_name)
    chosen = plan_at(periods, t1)
    plan = ranges_of_plan(conn, chosen) if chosen is not None else {}
    defaults = defaults_for_patient(conn, patient_id)  # the defaults triage used (KOLS …)
    timeline = _plan_timeline(conn, periods, t0, t1)
    # (UTC) days with a measurement, as day numbers: only their count is used
    measured_days = {p[0] // 86_400_000_000 for s in series.values() for p in s.points}
    # adherence counts from when the follow-up began, when that is inside the period: a
    # patient followed up for 30 days is not 33 % adherent in a 90-day view
    followed_from = _followed_from(conn, patient_id, list(loinc), series, periods, t0)
    days = max(1, min(view.period_days, t1 // _DAY - followed_from // _DAY + 1))
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
                "display": display(code),
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
                "bands": _bands(timeline, code, defaults),
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
    events.sort(key=lambda e: e["zone"] != "red")  # red first, each newest first
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
    adherence, basis = _adherence(series, plan, followed_from, t1, measured_days, days)
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
        "adherenceFrom": None
        if followed_from == t0
        else from_micros(followed_from).isoformat(timespec="seconds"),
        "codes": codes_out,
        "events": events if event_limit is None else events[:event_limit],
        "eventsTotal": len(events),
        "eventCount": {
            "red": sum(e["zone"] == "red" for e in events),
            "yellow": sum(e["zone"] == "yellow" for e in events),
        },
        "tasks": tasks if "tasks" in view.aggregates or view.name in ("gp", "followup") else [],
        "plan": plan_out,
    }
    if "note" in view.aggregates:
        result["note"] = summary_note(result, zone_name)
    return result


def _plan_timeline(
    conn: Any, periods: list[PlanPeriod], t0: int, t1: int
) -> list[tuple[int, int, dict[str, ZoneRanges] | None]]:
    """[t0, t1] cut where the plan in force changes: (start, end, the plan's ranges or None
    where no plan was in force)."""
    cuts = sorted({t0, t1} | {t for p in periods for t in p[:2] if t is not None and t0 < t < t1})
    ranges: dict[str, dict[str, ZoneRanges]] = {}
    out: list[tuple[int, int, dict[str, ZoneRanges] | None]] = []
    for a, b in zip(cuts, cuts[1:], strict=False):
        cp = plan_at(periods, a)
        r = None
        if cp is not None:
            r = ranges.get(cp["id"])
            if r is None:
                r = ranges[cp["id"]] = ranges_of_plan(conn, cp)
        if out and out[-1][2] is r:
            out[-1] = (out[-1][0], b, r)
        else:
            out.append((a, b, r))
    return out


def _bands(
    timeline: list[tuple[int, int, dict[str, ZoneRanges] | None]],
    code: str,
    defaults: dict[str, ZoneRanges],
) -> list[dict[str, Any]]:
    """The code's green/yellow ranges as they were over the period: the plan's where a plan
    was in force and has the code, else the default triage used (if any)."""
    out = []
    for a, b, plan in timeline:
        r = (plan or {}).get(code) or defaults.get(code)
        if r is None:
            continue
        out.append(
            {
                "start": from_micros(a).isoformat(timespec="seconds"),
                "end": from_micros(b).isoformat(timespec="seconds"),
                "green": [None if x is None else float(x) for x in r.green],
                "yellow": [None if x is None else float(x) for x in r.yellow],
                "source": r.source,
            }
        )
    return out


_DAY = 86_400_000_000


def _followed_from(
    conn: Any,
    patient_id: str,
    code_sets: list[int],
    series: dict[str, Series],
    periods: list[PlanPeriod],
    t0: int,
) -> int:
    """Where adherence is counted from: the period's start, or — when the patient has no
    measurement of the view's codes before the period and the follow-up began more than a
    day after its start — when it began: the first plan's start, or the first measurement
    when that came earlier (or there is no plan). Never the first measurement alone when a
    plan was in force before it: weeks without a measurement under a plan are not
    adherence (one indexed look-up)."""
    first = min((p[0] for s in series.values() for p in s.points), default=None)
    plan_start = min((start for start, _end, _cp in periods if start is not None), default=None)
    if first is not None and plan_start is not None:
        first = min(first, plan_start)
    if first is None or first - t0 <= _DAY:
        return t0
    o = observation_table.c
    before = conn.execute(
        select(o.res_id)
        .where(o.patient_id == patient_id, o.code_set.in_(code_sets), o.effective < t0)
        .limit(1)
    ).first()
    return t0 if before is not None else first


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


def _share(value: float) -> str:
    return f"{number(round(value * 100))} %"


def _date(iso: str, zone: str) -> str:
    return local_time(datetime.fromisoformat(iso), zone, with_time=False)


def summary_note(summary: dict[str, Any], zone: str = "Europe/Oslo") -> str:
    """A short Norwegian note an EPJ can file: latest values, zones, events, plan status."""
    lines = [
        text(
            "summary.note_text.head",
            start=_date(summary["period"]["start"], zone),
            end=_date(summary["period"]["end"], zone),
        )
    ]
    for c in summary["codes"]:
        latest = c["latest"]
        params = {
            "measurement": display(c["code"]),
            "value": quantity(latest["value"], c["unit"]),
            "mean": quantity(round(c["mean"], 1), c["unit"]),
            "count": plural(c["count"], "measurement"),
        }
        if latest["zone"] in ("green", "yellow", "red", "not-assessed"):
            lines.append(text("summary.note_text.code", zone=zone_name(latest["zone"]), **params))
        else:
            lines.append(text("summary.note_text.code_unjudged", **params))
    ec = summary["eventCount"]
    lines.append(
        text(
            "summary.note_text.events",
            red=ec["red"],
            yellow=ec["yellow"],
            share=_share(summary["adherence"]),
        )
    )
    lines.append(text("summary.note_text.plan" if summary["plan"] else "summary.note_text.no_plan"))
    return " ".join(lines)


def public(summary: dict[str, Any]) -> dict[str, Any]:
    out = dict(summary)
    out["codes"] = [{k: v for k, v in c.items() if k != "_raw"} for c in summary["codes"]]
    return out


def chart_of(code: dict[str, Any], t0: int, t1: int, zone: str) -> Drawing:
    """The one drawing of a code's development, for the HTML page and the PDF alike."""
    bands = [
        Band(
            to_micros(datetime.fromisoformat(b["start"])),
            to_micros(datetime.fromisoformat(b["end"])),
            (b["green"][0], b["green"][1]),
            (b["yellow"][0], b["yellow"][1]),
            b["source"],
        )
        for b in code.get("bands", [])
    ]
    return draw(display(code["code"]), code.get("unit"), code["_raw"], bands, t0, t1, zone)


def _range_text(r: list[float | None] | None, unit_code: str | None) -> str:
    if not r or (r[0] is None and r[1] is None):
        return "–"
    low, high = r
    if low is None:
        return text("summary.range_open_low", high=quantity(high, unit_code))  # type: ignore[arg-type]
    if high is None:
        return text("summary.range_open_high", low=quantity(low, unit_code))
    return text("summary.range", low=number(low), high=quantity(high, unit_code))


def _event_line(e: dict[str, Any], units: dict[str, str | None], zone: str) -> str:
    line = text(
        "summary.event_line",
        time=local_time(datetime.fromisoformat(e["time"]), zone),
        measurement=display(e["code"]),
        value=quantity(e["value"], units.get(e["code"])),
        zone=zone_name(e["zone"]),
    )
    return line


def render_html(
    summary: dict[str, Any],
    patient_label: str,
    zone: str = "Europe/Oslo",
    all_events_link: str | None = None,
    shown_events: int = 30,
) -> str:
    """The summary page: latest values, charts, every red event reachable, tasks, the plan and
    (for the EPJ) the journal note; all text Norwegian from the message catalogue."""
    start = datetime.fromisoformat(summary["period"]["start"])
    end = datetime.fromisoformat(summary["period"]["end"])
    t0, t1 = to_micros(start), to_micros(end)
    units = {c["code"]: c["unit"] for c in summary["codes"]}
    rows, charts = [], []
    for c in summary["codes"]:
        latest = c["latest"]
        trend = c["trendPerWeek"]
        arrow = "→" if trend is None or abs(trend) < 0.05 else ("↗" if trend > 0 else "↘")
        trend_text = (
            text("summary.no_trend")
            if trend is None
            else f"{arrow} {quantity(round(trend, 2), c['unit'])}"
        )
        share = "–" if c["shareGreen"] is None else _share(c["shareGreen"])
        z = latest["zone"] or "none"
        badge = (
            f' <span class="zone zone-{html.escape(z)}">{html.escape(zone_name(z))}</span>'
            if latest["zone"]
            else ""
        )
        rows.append(
            f'<tr><th scope="row">{html.escape(display(c["code"]))}</th>'
            f"<td>{html.escape(quantity(latest['value'], c['unit']))}{badge}"
            f"<br><small>{html.escape(local_time(datetime.fromisoformat(latest['time']), zone))}</small></td>"
            f"<td>{html.escape(number(c['min']))} / {html.escape(number(round(c['mean'], 1)))} / "
            f"{html.escape(quantity(c['max'], c['unit']))}</td>"
            f"<td>{html.escape(trend_text)}</td><td>{html.escape(share)}</td></tr>"
        )
        charts.append(
            f"<figure><figcaption>{html.escape(display(c['code']))}</figcaption>"
            f"{to_svg(chart_of(c, t0, t1, zone))}</figure>"
        )
    events = summary["events"]
    total = summary.get("eventsTotal", len(events))
    listed = events if all_events_link is None else events[:shown_events]
    event_items = "".join(
        f'<li class="ev-{html.escape(e["zone"])}">{html.escape(_event_line(e, units, zone))}</li>'
        for e in listed
    )
    if not total:
        event_block = f"<p>{html.escape(text('summary.events_none'))}</p>"
    else:
        shown_note = ""
        if len(listed) < total:
            shown_note = (
                f'<p id="events-shown">{html.escape(text("summary.events_shown", shown=len(listed), total=total))}'
                f' <a href="{html.escape(all_events_link or "")}">{html.escape(text("summary.events_all"))}</a></p>'
            )
        event_block = f'{shown_note}<ul id="events">{event_items}</ul>'
    tasks = "".join(
        "<li>"
        + html.escape(
            text(
                "summary.task_line",
                priority=catalogue().get(f"priorities.{t['priority']}") or "",
                description=t["description"] or "",
                status=catalogue().get(f"worklist.task_status.{t['status']}") or "",
                time=local_time(datetime.fromisoformat(t["authoredOn"]), zone)
                if t.get("authoredOn")
                else "–",
            )
        )
        + "</li>"
        for t in summary["tasks"][:50]
    )
    plan_items = "".join(
        f"<li>{html.escape(text('summary.plan_line', measurement=display(code), green=_range_text(p['green'], p['unit']), yellow=_range_text(p['yellow'], p['unit'])))}</li>"
        for code, p in sorted(summary["plan"].items())
    )
    plan_block = (
        f'<ul id="plan">{plan_items}</ul>'
        if plan_items
        else f"<p>{html.escape(text('summary.plan_none'))}</p>"
    )
    note = summary.get("note")
    ec = summary["eventCount"]
    basis = "plan" if "plan" in summary.get("adherenceBasis", "") else "days"
    meta = " · ".join(
        [
            html.escape(patient_label),
            html.escape(
                text(
                    "summary.period",
                    start=local_time(start, zone, with_time=False),
                    end=local_time(end, zone, with_time=False),
                )
            ),
            html.escape(
                text(
                    "summary.adherence",
                    share=_share(summary["adherence"]),
                    basis=text(f"summary.adherence_basis.{basis}")
                    + (
                        text(
                            "summary.adherence_from",
                            date=_date(summary["adherenceFrom"], zone),
                        )
                        if summary.get("adherenceFrom")
                        else ""
                    ),
                )
            ),
            html.escape(text("summary.event_counts", red=ec["red"], yellow=ec["yellow"])),
        ]
    )
    cols = "".join(
        f'<th scope="col">{html.escape(text(f"summary.columns.{k}"))}</th>'
        for k in ("measurement", "latest", "range", "trend", "share_green")
    )
    return page(
        summary["title"],
        f'<h1>{html.escape(summary["title"])}</h1><p class="meta">{meta}</p>'
        + (
            f'<h2>{html.escape(text("summary.note"))}</h2><p id="note">{html.escape(note)}</p>'
            if note
            else ""
        )
        + f"<table><thead><tr>{cols}</tr></thead><tbody>{''.join(rows)}</tbody></table>"
        f"<h2>{html.escape(text('summary.charts'))}</h2>{''.join(charts)}"
        f"<h2>{html.escape(text('summary.events'))}</h2>{event_block}"
        + (
            f'<h2>{html.escape(text("summary.tasks"))}</h2><ul id="tasks">{tasks}</ul>'
            if tasks
            else ""
        )
        + f"<h2>{html.escape(text('summary.plan'))}</h2>{plan_block}",
    )
