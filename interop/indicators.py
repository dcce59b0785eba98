"""Management indicators (*styringsinformasjon*) per organisation and period.

Computed from the index tables and stored resources, never from one patient's record on its
own: every count below the suppression threshold is withheld (``null`` with
``"suppressed": true``), so a small municipality's figures cannot point at a person.

Definitions (period = [start, end] in the configured zone, inclusive dates):

* patients in scope: Patients whose ``managingOrganization`` or ``generalPractitioner``
  is the organisation or one of its parts (``Organization.partOf``, any depth).
* active patients: patients in scope with at least one measurement in the period.
* measurements received: Observations (each counted once) with effective time in the period.
* adherence: share of patient-days in the period with at least one measurement, over the
  active patients' days since their first measurement (a plan's own schedule, when the
  triage module records one, is the better measure; see ``adherence_basis`` in the output).
* zone shares: green/yellow/red share of the triaged measurements.
* red/yellow events: Tasks raised for the follow-up centre in the period (priority
  ``asap``/``stat`` = red, ``urgent`` = yellow, ``routine`` = yellow: FHIR's order).
* response time: from a red Task's ``authoredOn`` to its completion (``lastModified`` of the
  version that set ``completed``): median and 90th percentile, hours.
* messages: outbox messages for patients in scope created in the period, by status and AppRec.
* what the nurses do (Tasks completed from the worklist in the period, with an outcome from
  ``mappings/worklist/outcomes.yaml``): contacts per patient-month by outcome (completed Tasks
  with that outcome over the active patients' months in the period), hours from a red Task
  being raised to the first time a person acted on it (``executionPeriod.start``: taking it,
  or completing it at once), the share of deviations handled without the GP (outcomes whose
  ``gp`` is false), and active patients per nurse (the distinct owners of the Tasks acted on).
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import orjson
from sqlalchemy import Connection, distinct, func, select, true

from interop.care.deviations import outcome_list
from interop.fhir.dates import fhir_instant, to_micros
from interop.fhir.outcome import error
from interop.store.schema import (
    observation_table,
    outbox_table,
    reference_table,
    resource_table,
    token_table,
)

ORGNR_SYSTEM = "urn:oid:2.16.578.1.12.4.1.4.101"


@dataclass
class Indicators:
    organization: str
    organization_name: str | None
    period_start: date
    period_end: date
    suppress_below: int
    values: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "organization": {"orgnr": self.organization, "name": self.organization_name},
            "period": {"start": self.period_start.isoformat(), "end": self.period_end.isoformat()},
            "suppressBelow": self.suppress_below,
            "indicators": self.values,
        }


DEFAULT_DAYS = 30
"""The period shown when none is asked for: the last 30 days, today included."""


def default_period(zone: str) -> tuple[date, date]:
    """The last :data:`DEFAULT_DAYS` days up to today (Norwegian local date), inclusive."""
    today = datetime.now(ZoneInfo(zone)).date()
    return today - timedelta(days=DEFAULT_DAYS - 1), today


def parse_period(text: str) -> tuple[date, date]:
    try:
        start_s, end_s = text.split("/", 1)
        start, end = date.fromisoformat(start_s), date.fromisoformat(end_s)
    except ValueError:
        raise error(
            400, "invalid", f"period {text!r}: use YYYY-MM-DD/YYYY-MM-DD (inclusive dates)"
        ) from None
    if end < start:
        raise error(400, "invalid", "the period ends before it starts")
    return start, end


def _org_ids(conn: Connection, orgnr: str) -> tuple[list[str], str | None]:
    root = conn.execute(
        select(token_table.c.res_id).where(
            token_table.c.res_type == "Organization",
            token_table.c.param == "identifier",
            token_table.c.system == ORGNR_SYSTEM,
            token_table.c.code == orgnr,
        )
    ).scalar()
    if root is None:
        raise error(404, "not-found", f"no Organization with org.nr {orgnr}")
    found = [root]
    frontier = [root]
    while frontier:
        children = [
            r[0]
            for r in conn.execute(
                select(reference_table.c.res_id).where(
                    reference_table.c.res_type == "Organization",
                    reference_table.c.param == "partof",
                    reference_table.c.target.in_([f"Organization/{i}" for i in frontier]),
                )
            )
        ]
        frontier = [c for c in children if c not in found]
        found.extend(frontier)
    content = conn.execute(
        select(resource_table.c.content).where(
            resource_table.c.res_type == "Organization", resource_table.c.res_id == root
        )
    ).scalar()
    name = orjson.loads(content).get("name") if content else None
    return found, name


def _patients(conn: Connection, org_ids: list[str]) -> list[str]:
    targets = [f"Organization/{i}" for i in org_ids]
    # practitioner roles / practitioners working for these organisations (GP lists)
    roles = [
        f"PractitionerRole/{r[0]}"
        for r in conn.execute(
            select(reference_table.c.res_id).where(
                reference_table.c.res_type == "PractitionerRole",
                reference_table.c.param == "organization",
                reference_table.c.target.in_(targets),
            )
        )
    ]
    rows = conn.execute(
        select(reference_table.c.res_id)
        .distinct()
        .where(
            reference_table.c.res_type == "Patient",
            reference_table.c.param.in_(("organization", "general-practitioner")),
            reference_table.c.target.in_(targets + roles),
        )
    )
    return [r[0] for r in rows]


def _suppress(value: int, threshold: int) -> dict[str, Any]:
    if 0 < value < threshold:
        return {"value": None, "suppressed": True}
    return {"value": value, "suppressed": False}


def _share(part: int, whole: int, threshold: int) -> dict[str, Any]:
    if whole < threshold or (0 < part < threshold):
        return {"value": None, "suppressed": True}
    return {"value": round(part / whole, 4) if whole else None, "suppressed": False}


def _percentile(values: list[float], p: float) -> float:
    data = sorted(values)
    k = (len(data) - 1) * p
    lo = int(k)
    hi = min(lo + 1, len(data) - 1)
    return data[lo] + (data[hi] - data[lo]) * (k - lo)


def compute(
    conn: Connection,
    orgnr: str,
    start: date,
    end: date,
    *,
    zone_name: str = "Europe/Oslo",
    suppress_below: int = 5,
) -> Indicators:
    tz = ZoneInfo(zone_name)
    t0 = to_micros(datetime.combine(start, time.min, tz))
    t1 = to_micros(datetime.combine(end + timedelta(days=1), time.min, tz)) - 1
    org_ids, name = _org_ids(conn, orgnr)
    patients = _patients(conn, org_ids)
    ind = Indicators(orgnr, name, start, end, suppress_below)
    o = observation_table.c
    v: dict[str, Any] = {}
    v["patientsInScope"] = _suppress(len(patients), suppress_below)
    if not patients:
        for key in ("activePatients", "measurementsReceived"):
            v[key] = _suppress(0, suppress_below)
        ind.values = v
        return ind
    in_period = [
        o.is_primary == true(),
        o.patient_id.in_(patients),
        o.effective >= t0,
        o.effective <= t1,
        o.status != "entered-in-error",
    ]
    active = conn.execute(select(func.count(distinct(o.patient_id))).where(*in_period)).scalar_one()
    measurements = conn.execute(select(func.count()).where(*in_period)).scalar_one()
    v["activePatients"] = _suppress(int(active), suppress_below)
    v["measurementsReceived"] = _suppress(int(measurements), suppress_below)

    # adherence: patient-days with a measurement / days each active patient was followed
    day_expr = (o.effective - t0) // 86_400_000_000
    days_with = conn.execute(
        select(func.count()).select_from(
            select(o.patient_id, day_expr.label("d")).where(*in_period).distinct().subquery()
        )
    ).scalar_one()
    first_seen = conn.execute(
        select(o.patient_id, func.min(o.effective)).where(*in_period).group_by(o.patient_id)
    ).all()
    followed_days = sum(int((t1 - max(t0, first)) // 86_400_000_000) + 1 for _, first in first_seen)
    v["adherence"] = _share(int(days_with), followed_days, suppress_below)
    v["adherenceBasis"] = "patient-days with at least one measurement"

    zones: dict[str, int] = dict(
        conn.execute(
            select(o.zone, func.count()).where(*in_period, o.zone.is_not(None)).group_by(o.zone)
        ).all()
    )
    # a measurement nobody judged (zone not-assessed: no thresholds) is not triaged
    triaged = sum(int(n) for z, n in zones.items() if z in ("green", "yellow", "red"))
    v["triagedMeasurements"] = _suppress(triaged, suppress_below)
    v["notAssessedMeasurements"] = _suppress(int(zones.get("not-assessed", 0)), suppress_below)
    for z in ("green", "yellow", "red"):
        v[f"share{z.capitalize()}"] = _share(int(zones.get(z, 0)), triaged, suppress_below)

    # Tasks (red/yellow events) and response times
    task_rows = conn.execute(
        select(resource_table.c.content).where(
            resource_table.c.res_type == "Task",
            resource_table.c.patient_id.in_(patients),
            resource_table.c.deleted.is_(False),
        )
    ).all()
    red = yellow = 0
    hours: list[float] = []
    first_contact: list[float] = []
    outcomes: dict[str, int] = {}
    nurses: set[str] = set()
    outcome_system, outcome_list_ = outcome_list()
    for (content,) in task_rows:
        task = orjson.loads(content)
        _nurse_work(
            task,
            t0,
            t1,
            zone_name,
            outcome_system,
            outcomes,
            nurses,
            first_contact,
        )
        authored = task.get("authoredOn")
        if not authored:
            continue
        try:
            at = fhir_instant(authored, zone_name)
        except ValueError:
            continue
        if not (t0 <= at <= t1):
            continue
        priority = task.get("priority", "routine")
        is_red = priority in ("asap", "stat")
        red += int(is_red)
        yellow += int(not is_red)
        if is_red and task.get("status") == "completed":
            done = task.get("lastModified") or task.get("meta", {}).get("lastUpdated")
            if done:
                hours.append((fhir_instant(done, zone_name) - at) / 3.6e9)
    v["redEvents"] = _suppress(red, suppress_below)
    v["yellowEvents"] = _suppress(yellow, suppress_below)
    if len(hours) >= suppress_below:
        v["redResponseHours"] = {
            "median": round(statistics.median(hours), 2),
            "p90": round(_percentile(hours, 0.9), 2),
            "n": len(hours),
            "suppressed": False,
        }
    else:
        v["redResponseHours"] = {"median": None, "p90": None, "n": None, "suppressed": bool(hours)}

    patient_months = int(active) * max(1.0, (t1 - t0) / (30.44 * 86_400_000_000))
    v["contactsPerPatientMonth"] = {
        code: _rate(outcomes.get(code, 0), patient_months, suppress_below) for code in outcome_list_
    }
    handled = sum(outcomes.values())
    without_gp = sum(n for code, n in outcomes.items() if not outcome_list_[code].gp)
    v["shareHandledWithoutGp"] = _share(without_gp, handled, suppress_below)
    v["redFirstContactHours"] = _spread(first_contact, suppress_below)
    v["nurses"] = len(nurses)
    v["patientsPerNurse"] = (
        {"value": round(int(active) / len(nurses), 1), "suppressed": False}
        if nurses and int(active) >= suppress_below
        else {"value": None, "suppressed": bool(nurses)}
    )

    ob = outbox_table.c
    msg_rows = conn.execute(
        select(ob.status, func.count())
        .where(ob.patient_id.in_(patients), ob.created >= t0, ob.created <= t1)
        .group_by(ob.status)
    ).all()
    by_status = {s: int(n) for s, n in msg_rows}
    v["messagesSent"] = _suppress(sum(by_status.values()), suppress_below)
    v["messagesByStatus"] = {s: _suppress(n, suppress_below) for s, n in sorted(by_status.items())}
    v["messagesDeadLettered"] = _suppress(by_status.get("dead", 0), suppress_below)
    v["appRecOk"] = _suppress(by_status.get("apprec-ok", 0), suppress_below)
    v["appRecRejected"] = _suppress(by_status.get("apprec-rejected", 0), suppress_below)
    ind.values = v
    return ind


def _rate(count: int, per: float, threshold: int) -> dict[str, Any]:
    """``count`` per ``per`` (4 decimals); withheld when the count is small (but not 0)."""
    if 0 < count < threshold:
        return {"value": None, "suppressed": True}
    return {"value": round(count / per, 4) if per else None, "suppressed": False}


def _spread(hours: list[float], threshold: int) -> dict[str, Any]:
    if len(hours) >= threshold:
        return {
            "median": round(statistics.median(hours), 2),
            "p90": round(_percentile(hours, 0.9), 2),
            "n": len(hours),
            "suppressed": False,
        }
    return {"median": None, "p90": None, "n": None, "suppressed": bool(hours)}


def _nurse_work(
    task: dict[str, Any],
    t0: int,
    t1: int,
    zone_name: str,
    outcome_system: str,
    outcomes: dict[str, int],
    nurses: set[str],
    first_contact: list[float],
) -> None:
    """Count what a person did about one Task in [t0, t1]."""
    period = task.get("executionPeriod") or {}
    try:
        started = fhir_instant(period["start"], zone_name) if period.get("start") else None
        ended = fhir_instant(period["end"], zone_name) if period.get("end") else None
        authored = fhir_instant(task["authoredOn"], zone_name) if task.get("authoredOn") else None
    except ValueError:
        return
    owner = task.get("owner") or {}
    who = (owner.get("identifier") or {}).get("value") or owner.get("display")
    if who and any(t is not None and t0 <= t <= t1 for t in (started, ended)):
        nurses.add(str(who))
    if task.get("status") == "completed" and ended is not None and t0 <= ended <= t1:
        for out in task.get("output", []):
            for coding in (out.get("valueCodeableConcept") or {}).get("coding", []):
                if coding.get("system") == outcome_system and coding.get("code"):
                    outcomes[coding["code"]] = outcomes.get(coding["code"], 0) + 1
    if (
        task.get("priority") in ("asap", "stat")
        and authored is not None
        and started is not None
        and t0 <= authored <= t1
    ):
        first_contact.append((started - authored) / 3.6e9)


CSV_COLUMNS = ("organization", "period_start", "period_end", "indicator", "value", "suppressed")


def to_csv(ind: Indicators) -> str:
    """One row per figure; what the figures are about (organisation, period) is in columns of
    every row, so a spreadsheet or ``csv`` reader takes the file as it is."""
    lines = [",".join(CSV_COLUMNS)]
    about = f"{ind.organization},{ind.period_start},{ind.period_end}"

    def emit(name: str, item: Any) -> None:
        if isinstance(item, dict) and "suppressed" in item and "value" in item:
            val = "" if item["value"] is None else item["value"]
            lines.append(f"{about},{name},{val},{str(item['suppressed']).lower()}")
        elif isinstance(item, dict) and "median" in item:
            for k in ("median", "p90", "n"):
                val = "" if item[k] is None else item[k]
                lines.append(f"{about},{name}.{k},{val},{str(item['suppressed']).lower()}")
        elif isinstance(item, dict):
            for k, sub in item.items():
                emit(f"{name}.{k}", sub)
        else:
            lines.append(f"{about},{name},{item},false")

    for name, item in ind.values.items():
        emit(name, item)
    return "\n".join(lines) + "\n"


def to_measure_report(ind: Indicators) -> dict[str, Any]:
    groups = []
    for name, item in ind.values.items():
        if not isinstance(item, dict) or "value" not in item:
            continue
        group: dict[str, Any] = {"code": {"text": name}}
        if item["value"] is not None:
            if isinstance(item["value"], float) or name.startswith("share") or name == "adherence":
                group["measureScore"] = {"value": item["value"], "unit": "1"}
            else:
                group["population"] = [{"code": {"text": name}, "count": item["value"]}]
        else:
            group["extension"] = [
                {
                    "url": "https://dho-interop.no/fhir/StructureDefinition/suppressed",
                    "valueBoolean": True,
                }
            ]
        groups.append(group)
    return {
        "resourceType": "MeasureReport",
        "status": "complete",
        "type": "summary",
        "measure": "https://dho-interop.no/fhir/Measure/dho-styringsinformasjon",
        "date": datetime.now(ZoneInfo("UTC")).isoformat(timespec="seconds"),
        "reporter": {
            "identifier": {"system": ORGNR_SYSTEM, "value": ind.organization},
            "display": ind.organization_name,
        },
        "period": {"start": ind.period_start.isoformat(), "end": ind.period_end.isoformat()},
        "group": groups,
    }
