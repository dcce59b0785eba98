"""The follow-up centre's worklist (*arbeidsliste*): the organisation's patients that need
attention, one row per patient, most urgent first.

Why a patient is on it and in which order is data (``mappings/worklist/ordering.yaml``): open
Tasks by their task-type code and FHIR priority (red deviation ``asap``, yellow ``urgent``,
missing measurements, readings nobody judges), patients with no measurement for a while,
messages to the GP that failed or got no AppRec, then any other open Task. Each row has the
patient's name and fødselsnummer, the reasons and since when (for a Task, the ``since`` triage
records: the deviation's first reading, the last reading before a gap), the latest value per
measurement with its zone, and every open Task (most urgent first) with who owns it.

A fixed number of queries, whatever the number of patients: open Tasks through the status
index, recent measurements through the (patient, time) index, messages through the outbox's
patient index.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from functools import lru_cache
from importlib.resources import files
from typing import Any
from zoneinfo import ZoneInfo

import orjson
import yaml
from pydantic import BaseModel, ConfigDict
from sqlalchemy import Connection, func, select, true

from interop.care.deviation_episode import task_since, task_zone_since
from interop.care.triage import OPEN_TASK, task_kind, task_zone
from interop.fhir.dates import fhir_instant, to_micros
from interop.patients import display_name
from interop.store.schema import observation_table, outbox_table, resource_table, token_table
from interop.store.value_lists import one_of
from interop.text import quantity, text, zone_name
from interop.views.concepts import display, primary_code

FNR_SYSTEMS = ("urn:oid:2.16.578.1.12.4.1.4.1", "urn:oid:2.16.578.1.12.4.1.4.2")
CHUNK = 500
SKIPPED = ("entered-in-error", "cancelled")
"""Observation statuses a row's latest values pass over."""
"""Ids per IN list (SQLite's and PostgreSQL's parameter limits are far above it)."""


class Reason(BaseModel):
    model_config = ConfigDict(extra="forbid")
    code: str
    task: str | None = None
    """Task-type code (``*``: any open Task)."""
    priority: list[str] = []
    inactive: bool = False
    message_status: list[str] = []
    since_from: str = "task"
    """``reading``: triage records since when the reason holds (the Task's ``since`` input); a
    Task stored before it did is shown with the time it was written, labelled as at the
    latest then. ``task``: the Task's own creation is the reason's start."""


class Ordering(BaseModel):
    model_config = ConfigDict(extra="forbid")
    version: str
    reasons: list[Reason]
    inactive_after_days: int = 7
    latest_values_days: int = 7
    message_days: int = 30


@lru_cache(maxsize=1)
def ordering() -> Ordering:
    raw = (files("mappings") / "worklist" / "ordering.yaml").read_text(encoding="utf-8")
    rules = Ordering.model_validate(yaml.safe_load(raw))
    for r in rules.reasons:
        text(f"worklist.reasons.{r.code}", days=rules.inactive_after_days)  # every reason has words
    return rules


@dataclass
class Row:
    patient_id: str
    rank: int = 1_000_000
    reasons: dict[str, tuple[int | None, dict[str, str] | None]] = field(default_factory=dict)
    """Reason code → since when (epoch µs, None when unknown) and that time in words."""
    tasks: list[tuple[int, str, int | None, dict[str, str] | None, dict[str, Any]]] = field(
        default_factory=list
    )
    """(rank, reason code, since when (µs), in words, Task) of each open Task."""
    messages: list[dict[str, Any]] = field(default_factory=list)

    def add(self, rank: int, code: str, since: int | None, words: dict[str, str] | None) -> None:
        """The reason holds since ``since`` (µs) as ``words`` say it (the earliest wins)."""
        self.rank = min(self.rank, rank)
        old = self.reasons.get(code)
        if old is None or (since is not None and (old[0] is None or since < old[0])):
            self.reasons[code] = (since, words)


def _instant(value: str | None, zone: str) -> int | None:
    if not value:
        return None
    try:  # the service writes full instants with an offset: the fast path
        at = datetime.fromisoformat(value)
        if at.tzinfo is not None:
            return to_micros(at)
    except ValueError:
        pass
    try:
        return fhir_instant(value, zone)
    except ValueError:
        return None


def _open_tasks(conn: Connection, patients: set[str]) -> list[dict[str, Any]]:
    """The open Tasks of these patients only: the open ones through the status index, narrowed
    to the patients' compartments in the database, so another organisation's Tasks are never
    read (nor their content parsed)."""
    if not patients:
        return []
    t = token_table.c
    open_ids = select(t.res_id).where(
        t.res_type == "Task", t.param == "status", t.code.in_(OPEN_TASK)
    )
    r = resource_table.c
    # Driven by the open Tasks (as many as the region's patients have deviations open now),
    # not by the patients' Tasks (every Task of two years, most of them completed): SQLite
    # would take the patient index, so the compartment is tested, not looked up, there
    # (at 500 patients with 24 completed Tasks each: 13 ms against 50 ms).
    patient_id: Any = r.patient_id if conn.dialect.name == "postgresql" else r.patient_id + ""
    out = []
    for (content,) in conn.execute(
        select(r.content).where(
            r.res_type == "Task",
            r.deleted.is_(False),
            r.res_id.in_(open_ids),
            one_of(conn, patient_id, sorted(patients)),
        )
    ):
        task = orjson.loads(content)
        ref = (task.get("for") or {}).get("reference", "")
        # the compartment and Task.for agree for what the store writes; both are checked
        if ref.startswith("Patient/") and ref[8:] in patients and task.get("status") in OPEN_TASK:
            out.append(task)
    return out


def _last_measured(conn: Connection, patients: list[str]) -> dict[str, int | None]:
    """Patient → time (µs) of its newest measurement (None: never measured): one statement,
    each patient's newest found at the end of its range of the (patient, time) index."""
    o, r = observation_table.c, resource_table.c
    newest = (
        select(func.max(o.effective))
        .where(o.patient_id == r.res_id, o.is_primary == true())
        .scalar_subquery()
    )
    out: dict[str, int | None] = {}
    for pid, last in conn.execute(
        select(r.res_id, newest).where(r.res_type == "Patient", one_of(conn, r.res_id, patients))
    ):
        out[pid] = None if last is None else int(last)
    return out


def _failed_messages(
    conn: Connection, patients: list[str], statuses: list[str], since: int
) -> list[Any]:
    if not statuses:
        return []
    o = outbox_table.c
    wanted = set(patients)
    # by status first (its index): failed messages are few, the organisation's patients many
    return [
        row
        for row in conn.execute(
            select(o.id, o.patient_id, o.kind, o.status, o.created, o.last_error).where(
                o.status.in_(statuses), o.created >= since
            )
        )
        if row.patient_id in wanted
    ]


def _latest_values(
    conn: Connection, patients: list[str], since: int, upto: int
) -> dict[str, dict[str, tuple[int, float, str | None, str | None]]]:
    """Patient → concept code → (time, value, unit, zone) of its latest measurement.

    The patients' Observations in the window come through the (patient, time) index of the
    primary rows (the newest of each concept kept as they come, in no particular order); a
    blood pressure panel's values are its components, read by the latest panel's id only."""
    o = observation_table.c
    out: dict[str, dict[str, tuple[int, float, str | None, str | None]]] = {}
    panels: dict[str, tuple[int, str]] = {}
    for pid, res_id, code, value, unit, effective, zone in conn.execute(
        select(o.patient_id, o.res_id, o.code, o.value, o.unit, o.effective, o.zone).where(
            one_of(conn, o.patient_id, patients),
            o.is_primary == true(),
            o.effective >= since,
            o.effective <= upto,
            o.status.not_in(SKIPPED),
        )
    ):
        when = int(effective)
        if value is None:  # a panel: the newest of the patient's panels wins
            old_panel = panels.get(pid)
            if old_panel is None or when >= old_panel[0]:
                panels[pid] = (when, res_id)
            continue
        per = out.setdefault(pid, {})
        concept = primary_code(code)  # 2708-6 and 59408-5: one concept, the newest wins
        old = per.get(concept)
        if old is None or when >= old[0]:
            per[concept] = (when, float(value), unit, zone)
    if panels:
        ids = [res_id for _t, res_id in panels.values()]
        owner = {res_id: pid for pid, (_t, res_id) in panels.items()}
        for res_id, code, value, unit, effective, zone in conn.execute(
            select(o.res_id, o.code, o.value, o.unit, o.effective, o.zone).where(
                one_of(conn, o.res_id, ids), o.is_component == true(), o.value.is_not(None)
            )
        ):
            per = out.setdefault(owner[res_id], {})
            concept = primary_code(code)
            old = per.get(concept)
            if old is None or effective >= old[0]:
                per[concept] = (int(effective), float(value), unit, zone)
    return out


def _patients(conn: Connection, ids: list[str]) -> dict[str, dict[str, Any]]:
    r = resource_table.c
    out = {}
    for rid, content in conn.execute(
        select(r.res_id, r.content).where(r.res_type == "Patient", one_of(conn, r.res_id, ids))
    ):
        out[rid] = orjson.loads(content)
    return out


def national_id(patient: dict[str, Any]) -> str | None:
    for i in patient.get("identifier", []):
        if i.get("system") in FNR_SYSTEMS and i.get("value"):
            return str(i["value"])
    return None


@lru_cache(maxsize=8)
def _zone(name: str) -> ZoneInfo:
    return ZoneInfo(name)


def _when(us: int | None, zone: str) -> dict[str, str] | None:
    """An instant as ISO 8601 (with its Norwegian offset) and as a person reads it
    (``06.12.2026 kl. 09:48``, as :func:`interop.text.local_time` writes it)."""
    if us is None:
        return None
    iso, words = _written(us, zone)
    return {"time": iso, "text": words}


@lru_cache(maxsize=32_768)
def _written(us: int, zone: str) -> tuple[str, str]:
    """The two spellings of an instant (a pure function: the worklist shows the same readings
    and Tasks request after request, so most are written once)."""
    at = datetime.fromtimestamp(us / 1_000_000, _zone(zone))
    return (
        at.isoformat(timespec="seconds"),
        f"{at.day:02d}.{at.month:02d}.{at.year} kl. {at.hour:02d}:{at.minute:02d}",
    )


def _task_since(
    task: dict[str, Any], from_reading: bool, zone: str
) -> tuple[int | None, dict[str, str] | None]:
    """Since when an open Task's reason holds (µs) and in words (``{time, text, basis}``).

    What triage recorded (``basis`` ``reading``): the first reading of the deviation's current
    episode, the last reading before a gap, the first unjudged reading; when the Task's zone
    was reached at another time than the episode began, the words say so («(rød fra …)»).
    A Task of that kind stored before triage recorded it (``basis`` ``task-created``): when
    the Task was written, said as what it is — the deviation began then *at the latest* —
    never shown bare as if it had just begun. Any other Task: when it was written."""
    recorded = _instant(task_since(task), zone)
    if recorded is not None:
        iso, words = _written(recorded, zone)
        zone_at = _instant(task_zone_since(task), zone)
        worst = task_zone(task)
        zone_words = _written(zone_at, zone)[1] if zone_at is not None else words
        if zone_at is not None and zone_words != words and worst:
            key = "since_zone_from" if zone_at > recorded else "since_zone_before"
            words = text(f"worklist.{key}", since=words, zone=zone_name(worst), time=zone_words)
        return recorded, {"time": iso, "text": words, "basis": "reading"}
    written = _instant(task.get("authoredOn"), zone)
    if written is None:
        return None, None
    iso, words = _written(written, zone)
    if from_reading:
        words = text("worklist.since_task_created", time=words)
    return written, {"time": iso, "text": words, "basis": "task-created"}


def _task_json(
    task: dict[str, Any], reason: dict[str, str], since: dict[str, str] | None, zone: str
) -> dict[str, Any]:
    owner = task.get("owner") or {}
    return {
        "id": task["id"],
        "reason": reason,
        "since": since,
        "type": task_kind(task),
        "priority": task.get("priority", "routine"),
        "status": task.get("status"),
        "statusText": text(f"worklist.task_status.{task.get('status')}"),
        "description": task.get("description"),
        "authoredOn": _when(_instant(task.get("authoredOn"), zone), zone),
        "owner": owner.get("display"),
        "notes": [
            {"text": n.get("text"), "author": n.get("authorString"), "time": n.get("time")}
            for n in task.get("note", [])
        ],
    }


def compute(
    conn: Connection, patient_ids: set[str], now: datetime, zone: str = "Europe/Oslo"
) -> list[dict[str, Any]]:
    """The worklist of these patients (those the actor may reach in the organisation)."""
    rules = ordering()
    rank_of = {r.code: i for i, r in enumerate(rules.reasons)}
    now_us = to_micros(now)
    rows: dict[str, Row] = {}

    def row(pid: str) -> Row:
        found = rows.get(pid)
        if found is None:
            found = rows[pid] = Row(pid)
        return found

    for task in _open_tasks(conn, patient_ids):
        pid = task["for"]["reference"][8:]
        kind, priority = task_kind(task), task.get("priority", "routine")
        for rank, reason in enumerate(rules.reasons):
            if reason.task is None or (reason.task != "*" and reason.task != kind):
                continue
            if reason.priority and priority not in reason.priority:
                continue
            # since when the reason holds: what triage recorded (the first reading of the
            # deviation's episode, the last reading before a gap); else when the Task was
            # written, labelled so
            since, words = _task_since(task, reason.since_from == "reading", zone)
            r = row(pid)
            r.add(rank, reason.code, since, words)
            r.tasks.append((rank, reason.code, since, words, task))
            break
    ids = sorted(patient_ids)
    inactive = next((r for r in rules.reasons if r.inactive), None)
    if inactive is not None:
        quiet_since = now_us - rules.inactive_after_days * 86_400_000_000
        for pid, last in _last_measured(conn, ids).items():
            if last is None or last < quiet_since:
                row(pid).add(rank_of[inactive.code], inactive.code, last, _when(last, zone))
    failed = next((r for r in rules.reasons if r.message_status), None)
    if failed is not None:
        since = now_us - rules.message_days * 86_400_000_000
        for m in _failed_messages(conn, ids, failed.message_status, since):
            r = row(m.patient_id)
            r.add(rank_of[failed.code], failed.code, m.created, _when(m.created, zone))
            r.messages.append(
                {
                    "id": m.id,
                    "type": m.kind,
                    "status": m.status,
                    "statusText": text(f"messages.status.{m.status}"),
                    "created": _when(m.created, zone),
                    "error": m.last_error,
                }
            )
    listed = sorted(rows)
    latest = _latest_values(
        conn, listed, now_us - rules.latest_values_days * 86_400_000_000, now_us + 300_000_000
    )
    patients = _patients(conn, listed)
    # the words each row repeats, looked up once a request
    reason_text = {
        r.code: text(f"worklist.reasons.{r.code}", days=rules.inactive_after_days)
        for r in rules.reasons
    }
    zone_names = {z: zone_name(z) for per in latest.values() for _t, _v, _u, z in per.values() if z}
    names: dict[str, str] = {}
    out: list[dict[str, Any]] = []
    for r in rows.values():
        patient = patients.get(r.patient_id, {})
        # every open Task, most urgent first: by its reason, priority, the longest waiting
        tasks = sorted(
            r.tasks,
            key=lambda x: (x[0], _priority_rank(x[4]), x[2] or now_us, str(x[4]["id"])),
        )
        owner = next((t["owner"].get("display") for *_, t in tasks if t.get("owner")), None)
        tasks_json = [
            _task_json(t, {"code": code, "text": reason_text[code]}, words, zone)
            for _rank, code, _since, words, t in tasks
        ]
        values: list[dict[str, Any]] = []
        for code, (t, v, unit, z) in sorted(latest.get(r.patient_id, {}).items()):
            values.append(
                {
                    "code": code,
                    "display": names.get(code) or names.setdefault(code, display(code)),
                    "value": v,
                    "unit": unit,
                    "text": quantity(v, unit),
                    "zone": z,
                    "zoneText": zone_names[z] if z else None,
                    "time": _when(t, zone),
                }
            )
        started = [(s, words) for s, words in r.reasons.values() if s is not None]
        out.append(
            {
                "patient": {
                    "id": r.patient_id,
                    "name": display_name(patient),
                    "nationalId": national_id(patient),
                },
                "rank": r.rank,
                "reasons": [
                    {"code": code, "text": reason_text[code], "since": words}
                    for code, (_s, words) in sorted(
                        r.reasons.items(), key=lambda kv: rank_of[kv[0]]
                    )
                ],
                "since": min(started, key=lambda sw: sw[0])[1] if started else None,
                "latest": values,
                "task": tasks_json[0] if tasks_json else None,
                "tasks": tasks_json,
                "owner": owner,
                "messages": r.messages,
            }
        )
    # most urgent first; within a rank, the longest waiting first
    out.sort(
        key=lambda x: (x["rank"], x["since"]["time"] if x["since"] else "9", x["patient"]["id"])
    )
    return out


PRIORITY_ORDER = {"stat": 0, "asap": 1, "urgent": 2, "routine": 3}


def _priority_rank(task: dict[str, Any]) -> int:
    return PRIORITY_ORDER.get(task.get("priority", "routine"), 3)
