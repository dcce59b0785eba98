"""Traffic-light triage of each Observation against the plan in force at its effective time.

Every measurement is judged in the transaction that writes it, whatever the door (store hooks
wired in ``interop.services``). An Observation the service builds (ingest: the pre-write hook,
``tx.context["triage"]``) carries the result: ``referenceRange`` (the green range, and the
yellow one, as in force) and ``interpretation`` with the v3-ObservationInterpretation code
(``N`` green, ``H``/``L`` yellow, ``HH``/``LL`` red) plus the zone from
``https://dho-interop.no/fhir/CodeSystem/zone``. An Observation a client writes (``/fhir``
create/update, transaction and batch Bundles) is stored exactly as sent (its own
interpretation included, never trusted) and judged after the write: the zone then lives beside
it only (the ``zone`` search index, Tasks, Flags, routed events). Blood pressure is triaged
per component; the panel gets the worst. Green bounds are inclusive; a missing bound is open.
Without an approved plan the defaults of ``mappings/default-thresholds.yaml`` apply
(``referenceRange.text`` says so). A value in another unit than the plan's is not triaged
(never a wrong zone).

Yellow/red then raises or escalates the patient's open Task for that code (a post-write hook,
written as the service's own work) and sets a Flag; green makes the Flag inactive but never
completes a Task — a person does. The Tasks and Flags of readings written together (a Bundle,
a group commit, an ingest message) are written together at the batch's end
(:mod:`interop.care.triage_writes`), each as the readings one at a time would leave it.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

import orjson

from interop.care.default_thresholds import defaults_for, episodes_of_patients, groups_of_episodes
from interop.care.deviation_episode import (
    Episode,
    after_deviation,
    after_green,
    episode_of,
    since_input,
    with_episode,
)
from interop.care.events import (
    DeviationEscalated,
    DeviationOpened,
    MeasurementJudged,
    raise_event,
)
from interop.care.flag_forms import is_earlier_missing_flag
from interop.care.plans import (
    LOINC,
    PlanPeriod,
    ZoneRanges,
    plan_at,
    plan_periods_of,
    ranges_of_plan,
)
from interop.care.task_inputs import input_named, with_input
from interop.care.triage_writes import (
    OPEN_ITEMS,
    OPEN_TASK,
    WRITES,
    OpenItems,
    TriageWrites,
    open_items,
)
from interop.fhir.dates import (
    fhir_instant,
    fhir_range,
    format_instant,
    from_micros,
    now_utc,
    to_micros,
)
from interop.store import open_items as open_item_rows
from interop.store.generation import bump as bump_generation
from interop.store.generation import in_transaction as generation_in
from interop.store.repository import FhirStore, StoredResource, WriteTx, new_id
from interop.store.schema import token_table
from interop.text import local_time, measurement_name, number, quantity, text, unit, zone_name

ZONE_SYSTEM = "https://dho-interop.no/fhir/CodeSystem/zone"
V3 = "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation"
RANK = {"green": 0, "yellow": 1, "red": 2}
NOT_ASSESSED = "not-assessed"
"""Zone of a measurement nobody judged: no plan threshold and no suitable default (never
green, no ``N`` interpretation)."""
DEFAULT_MARK = "standardgrenser"
"""In the text of everything judged by default ranges (interpretation, referenceRange, Task,
Flag): it was not the patient's own plan."""
V3_DISPLAY = {"N": "Normal", "H": "High", "L": "Low", "HH": "Critical high", "LL": "Critical low"}
TASK_CODE_SYSTEM = "https://dho-interop.no/fhir/CodeSystem/task-type"
SEVERITY_URL = "https://dho-interop.no/fhir/StructureDefinition/source-severity"
"""The zone a source's own questionnaire flow gave (see ``interop.mapping.build``)."""
PRIORITY = {"red": "asap", "yellow": "urgent"}
"""Task priority per zone, in FHIR's order (routine < urgent < asap < stat): a red deviation
comes before a yellow one in every list sorted by priority (the worklist)."""


@dataclass(frozen=True, slots=True)
class TriageResult:
    zone: str
    code: str
    """v3 interpretation code."""
    ranges: ZoneRanges


def classify(value: Decimal, r: ZoneRanges) -> TriageResult:
    def inside(lo_hi: tuple[Decimal | None, Decimal | None]) -> bool:
        lo, hi = lo_hi
        return (lo is None or value >= lo) and (hi is None or value <= hi)

    if inside(r.green):
        return TriageResult("green", "N", r)
    high = r.green[1] is not None and value > r.green[1]
    if inside(r.yellow):
        return TriageResult("yellow", "H" if high else "L", r)
    return TriageResult("red", "HH" if high else "LL", r)


# Every Observation of an ingest gets an interpretation and reference ranges; most share them
# (the same plan or default ranges, the same zone). They are built once and the JSON
# structures shared between the resources, which are serialised and never changed after.
_SHARED_LIMIT = 4096
_interpretations: dict[tuple[str, str, str, str], list[dict[str, Any]]] = {}
_range_lists: dict[int, tuple[ZoneRanges, list[dict[str, Any]]]] = {}


def _interpretation(t: TriageResult) -> list[dict[str, Any]]:
    key = (t.zone, t.code, t.ranges.source, t.ranges.label)
    hit = _interpretations.get(key)
    if hit is None:
        if len(_interpretations) > _SHARED_LIMIT:
            _interpretations.clear()
        hit = _interpretations[key] = _build_interpretation(t)
    return hit


def _reference_ranges(r: ZoneRanges) -> list[dict[str, Any]]:
    hit = _range_lists.get(id(r))
    if hit is None or hit[0] is not r:  # (an id is reused only once its object is gone)
        if len(_range_lists) > _SHARED_LIMIT:
            _range_lists.clear()
        hit = _range_lists[id(r)] = (r, _build_reference_ranges(r))
    return hit[1]


def _judged_by(r: ZoneRanges) -> str:
    """What judged a reading, for the texts: the plan, or the labelled default."""
    if r.source != "default":
        return f"plan {r.source}"
    return f"default ranges: {DEFAULT_MARK}, ikke pasientens egenbehandlingsplan – {r.label}"


def _with_bound(interpretation: list[dict[str, Any]], bound: str) -> list[dict[str, Any]]:
    """The (shared, never changed) interpretation, or a copy whose text says the value was a
    bound."""
    if not bound:
        return interpretation
    first = interpretation[0]
    return [{**first, "text": f"{first['text']}; {bound}"}, *interpretation[1:]]


def _build_interpretation(t: TriageResult) -> list[dict[str, Any]]:
    return [
        {
            "coding": [
                {"system": V3, "code": t.code, "display": V3_DISPLAY[t.code]},
                {"system": ZONE_SYSTEM, "code": t.zone, "display": t.zone},
            ],
            "text": f"{t.zone} ({_judged_by(t.ranges)})",
        }
    ]


NO_THRESHOLDS_TEXT = (
    "ikke vurdert: ingen grenseverdier i egenbehandlingsplanen og ingen standardgrenser "
    "for denne målingen"
)
NOT_COMPARABLE_TEXT = (
    "ikke vurdert: verdien kan ikke sammenlignes med grenseverdiene (annen enhet, ikke et "
    "tall eller utenfor apparatets måleområde)"
)


def _not_assessed(no_thresholds: bool) -> list[dict[str, Any]]:
    """The interpretation of a measurement (or component) nobody judged, and why."""
    return [
        {
            "coding": [{"system": ZONE_SYSTEM, "code": NOT_ASSESSED, "display": "ikke vurdert"}],
            "text": NO_THRESHOLDS_TEXT if no_thresholds else NOT_COMPARABLE_TEXT,
        }
    ]


def _without_zone(interpretations: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Interpretations other than a zone or a v3 N/H/L/HH/LL (a source's own "normal" is
    never kept beside our verdict)."""
    return [
        i
        for i in interpretations
        if not any(
            c.get("system") == ZONE_SYSTEM
            or (c.get("system") == V3 and c.get("code") in V3_DISPLAY)
            for c in i.get("coding", [])
        )
    ]


def _build_reference_ranges(r: ZoneRanges) -> list[dict[str, Any]]:
    out = []
    for zone, (lo, hi) in (("green", r.green), ("yellow", r.yellow)):
        rr: dict[str, Any] = {"text": f"{zone} zone ({_judged_by(r)})"}
        if lo is not None:
            rr["low"] = {
                "value": float(lo),
                "unit": r.unit,
                "system": "http://unitsofmeasure.org",
                "code": r.unit,
            }
        if hi is not None:
            rr["high"] = {
                "value": float(hi),
                "unit": r.unit,
                "system": "http://unitsofmeasure.org",
                "code": r.unit,
            }
        if zone == "green":
            rr["type"] = {
                "coding": [
                    {
                        "system": "http://terminology.hl7.org/CodeSystem/referencerange-meaning",
                        "code": "normal",
                    }
                ]
            }
        out.append(rr)
    return out


def _loinc(node: dict[str, Any]) -> str | None:
    for c in (node.get("code") or {}).get("coding", []):
        if c.get("system") == LOINC:
            return str(c.get("code"))
    return None


COMPARATORS = frozenset({"<", "<=", ">=", ">"})
BOUND_TEXT = {"<": "under", "<=": "høyst", ">=": "minst", ">": "over"}
"""How a bound reads in the texts (``> 11``: *over 11*)."""
_NUDGE = Decimal("1e-9")


def _value(node: dict[str, Any]) -> tuple[Decimal, str, str | None] | None:
    """(value, unit, comparator) of a node's valueQuantity; None when there is no number or
    the comparator is not one triage can judge (``ad``, unknown)."""
    q = node.get("valueQuantity")
    if not isinstance(q, dict) or not isinstance(q.get("value"), int | float):
        return None
    if isinstance(q.get("value"), bool):
        return None
    comparator = q.get("comparator")
    if comparator is not None and comparator not in COMPARATORS:
        return None
    return Decimal(str(q["value"])), q.get("code") or q.get("unit") or "", comparator


def classify_bound(value: Decimal, comparator: str | None, r: ZoneRanges) -> TriageResult:
    """The zone of a value the source gave as a bound, judged at the bound: ``> 11`` is at
    least 11 (just above it, so a green high of 11 is left), ``< 3`` at most 3. For a
    measurement where a low value is bad, that is the worst the value can be; where a high
    value is bad, the zone is at least this one (and the texts say it was a bound)."""
    if comparator == ">":
        value += _NUDGE
    elif comparator == "<":
        value -= _NUDGE
    return classify(value, r)


def bound_note(comparator: str | None, value: Decimal, unit: str) -> str:
    """What the texts say of a value given as a bound (empty for an exact value)."""
    if not comparator:
        return ""
    plain = format(value.normalize(), "f")
    return (
        f"verdien er oppgitt som en grense ({comparator} {plain} {unit}), vurdert som "
        f"{BOUND_TEXT[comparator]} {plain}: den virkelige verdien kan ligge lenger unna"
    )


def _reading(obs: dict[str, Any]) -> tuple[tuple[Decimal, str] | None, str]:
    """The value (of a single-value Observation) and the reading as Norwegian text: ``97 %``,
    ``7,8 mmol/L``, or a panel's components in order (blood pressure ``150/95 mmHg``); a
    bound keeps its comparator (``>11 mmol/L``)."""
    found = _value(obs)
    if found is not None:
        value, code, comparator = found
        return (value, code), f"{comparator or ''}{quantity(value.normalize(), code)}".strip()
    parts = [_value(c) for c in obs.get("component", [])]
    units = {p[1] for p in parts if p}
    reading = "/".join(f"{p[2] or ''}{number(p[0].normalize())}" for p in parts if p)
    reading += f" {unit(units.pop())}" if len(units) == 1 else ""
    return None, reading.strip()


MAX_TASK_NOTES = 20
"""A long deviation adds a note per measurement; the Task keeps the latest ones (every
measurement stays an Observation), so it does not grow without bound."""


def _local(instant: str | None, fallback: str) -> str:
    """A FHIR instant as Norwegian local time (``06.12.2026 kl. 09:48``)."""
    try:
        return local_time(from_micros(fhir_instant(instant or fallback)))
    except ValueError:
        return instant or fallback


def _append_note(notes: list[dict[str, Any]], note: dict[str, Any]) -> list[dict[str, Any]]:
    return [*notes, note][-MAX_TASK_NOTES:]


PRIORITY = {"red": "asap", "yellow": "urgent"}
"""A deviation Task's priority by zone (FHIR's order: routine < urgent < asap < stat), as the
follow-up worklist sorts them: red before yellow."""
ZONE_INPUT = "zone"
"""The Task input (``type.text``) holding the zone of the worst reading the Task is about."""


LATE_MARK = "etterregistrert"
"""In the text of a Task raised by a late reading (taken longer ago than the late window)."""
LATE_STATUS = {
    "coding": [{"system": TASK_CODE_SYSTEM, "code": "late", "display": "Etterregistrert"}],
    "text": LATE_MARK,
}
"""``businessStatus`` of a Task raised by late readings only (search ``business-status``)."""


def is_late_task(task: dict[str, Any]) -> bool:
    return any(
        c.get("system") == TASK_CODE_SYSTEM and c.get("code") == "late"
        for c in (task.get("businessStatus") or {}).get("coding", [])
    )


def _time_of(obs: dict[str, Any]) -> str:
    """The reading's time as the source stated it (effectiveDateTime or period start)."""
    return str(
        obs.get("effectiveDateTime") or (obs.get("effectivePeriod") or {}).get("start") or ""
    )


def task_zone(task: dict[str, Any]) -> str | None:
    """The zone of the worst reading a deviation Task is about (its ``zone`` input; a Task
    written before it had one: from its priority)."""
    zone = input_named(task, ZONE_INPUT, "valueCode")
    if zone is not None:
        return zone
    return {"asap": "red", "urgent": "yellow", "stat": "red"}.get(task.get("priority", ""))


MISSING_CODE = "missing-measurement"
"""The kind of the Task and Flag saying a plan's measurement was not taken in time
(:mod:`interop.care.missing`), in :data:`TASK_CODE_SYSTEM`."""


def flag_kind(flag: dict[str, Any]) -> str | None:
    """Which of the service's Flags this is: ``assess-deviation`` (a zone Flag, raised with
    the deviation Task), :data:`MISSING_CODE`, or None for a Flag someone else wrote (which
    the service never ends). A missing-measurement Flag written before it carried its kind is
    known by its text, in the forms the service wrote (:mod:`interop.care.flag_forms`: English
    ``no data for …``, then Norwegian ``Manglende måling: … siden …``)."""
    if flag_zone(flag) is not None:
        return "assess-deviation"
    concept = flag.get("code") or {}
    for c in concept.get("coding", []):
        if c.get("system") == TASK_CODE_SYSTEM and c.get("code") == MISSING_CODE:
            return MISSING_CODE
    return MISSING_CODE if is_earlier_missing_flag(flag) else None


def flag_zone(flag: dict[str, Any]) -> str | None:
    for c in (flag.get("code") or {}).get("coding", []):
        if c.get("system") == ZONE_SYSTEM:
            return str(c.get("code"))
    return None


def measurement_coding(code: str) -> list[dict[str, Any]]:
    """The coding naming the measurement a Flag is about (the Flag is found by it; the text
    names the measurement in words)."""
    if code == "unknown":
        return []
    return [{"system": LOINC, "code": code, "display": measurement_name(code)}]


def flag_is_about(flag: dict[str, Any], code: str) -> bool:
    """Whether a Flag is about the measurement ``code``: by its LOINC coding; a Flag written
    before the code was data, by the code as its text held it (``(8867-4)`` in a zone Flag,
    ``no data for 8867-4 …`` in a missing-measurement one) — never a bare substring, so
    ``2708-6`` is not ``12708-6``."""
    concept = flag.get("code") or {}
    codings = [c for c in concept.get("coding", []) if c.get("system") == LOINC]
    if codings:
        return any(c.get("code") == code for c in codings)
    words = str(concept.get("text") or "")
    return f"({code})" in words or words.startswith(f"no data for {code} ")


def _with_zone_input(inputs: list[dict[str, Any]], zone: str) -> list[dict[str, Any]]:
    return with_input(inputs, ZONE_INPUT, "valueCode", zone)


def _raise_or_escalate(
    tx: WriteTx,
    task: dict[str, Any] | None,
    *,
    zone: str,
    patient_ref: str,
    focus: str,
    note: str,
    now: str,
    kind: tuple[str, str, str],
    task_input: tuple[str, str],
    reading_time: str,
    late: bool = False,
) -> tuple[str, str | None]:
    """Raise a Task for a yellow/red deviation, or add to the open one. Returns the Task id
    and the news others should hear about: ``opened`` (a new Task), ``escalated`` (yellow to
    red, or a current reading on a late Task), or None (a further value only adds a note).

    The Task always describes the current worst reading: its description, ``code.text``,
    priority (:data:`PRIORITY`), focus and ``zone`` input follow a reading as bad as or worse
    than the one it was about; a milder one only adds a note (an open red Task is never
    moved down the list by a milder reading).

    ``kind``: (task code, its display, what is assessed); ``task_input``: (type text, value);
    ``reading_time``: when the reading was taken; every current reading places itself in the
    Task's episode (:mod:`interop.care.deviation_episode`: ``since``, the worklist's «Siden»,
    is the first reading of the current unbroken run of yellow/red readings)."""
    code, display, what = kind
    if task is not None:
        task = dict(task)  # its meta names the version read (see TriageWrites.put)
        was_late = is_late_task(task)
        current = None if was_late and not late else task_zone(task)
        escalated = not late and (current is None or RANK[zone] > RANK.get(current, 0))
        if late and not was_late:
            pass  # an old reading beside a current deviation: a note only
        else:
            # since when: the first reading of the current episode (a green between ends one;
            # a current reading on a Task of late readings begins one)
            episode = (
                Episode(reading_time, reading_time, reading_time)
                if current is None and was_late
                else after_deviation(
                    episode_of(task),
                    reading_time,
                    1 if current is None else RANK[zone] - RANK.get(current, 0),
                )
            )
            task["input"] = with_episode(task.get("input", []), episode)
        if not (late and not was_late) and (current is None or RANK[zone] >= RANK.get(current, 0)):
            task["priority"] = "routine" if late else PRIORITY[zone]
            task["description"] = note
            task["focus"] = {"reference": focus}
            task["code"] = {
                **task.get("code", {}),
                "text": text("triage.task_title", zone=zone_name(zone), what=what),
            }
            task["input"] = _with_zone_input(task.get("input", []), zone)
            if was_late and not late:
                task.pop("businessStatus", None)  # a current reading: no longer only late
        task["note"] = _append_note(task.get("note", []), {"text": note, "time": now})
        task["lastModified"] = now
        # the stored Task was validated when written; the changes are this module's own
        # (covered by tests/plans/test_triage.py), so no model validation when written
        return _writes(tx).put(tx, "Task", task, new=False), "escalated" if escalated else None
    # this module's own shape, checked against the FHIR model by tests/plans/test_triage.py
    task_id = _writes(tx).put(
        tx,
        "Task",
        {
            "resourceType": "Task",
            "id": new_id(),
            "status": "requested",
            **({"businessStatus": LATE_STATUS} if late else {}),
            "intent": "order",
            "priority": "routine" if late else PRIORITY[zone],
            "code": {
                "coding": [{"system": TASK_CODE_SYSTEM, "code": code, "display": display}],
                "text": text("triage.task_title", zone=zone_name(zone), what=what),
            },
            "description": note,
            "focus": {"reference": focus},
            "for": {"reference": patient_ref},
            "authoredOn": now,
            "lastModified": now,
            "input": _with_zone_input(
                with_episode(
                    [{"type": {"text": task_input[0]}, "valueCode": task_input[1]}],
                    Episode(since=reading_time, zone_since=reading_time, last=reading_time),
                ),
                zone,
            ),
        },
        new=True,
    )
    return task_id, "opened"


def _back_to_green(
    tx: WriteTx, task: dict[str, Any], obs: dict[str, Any], code: str, now: str
) -> None:
    """A current green reading of a deviation Task's measurement: the Task (left open for a
    nurse) records that its episode ended (:func:`after_green`), with a note the nurse reads
    on the worklist; a further green reading changes nothing (no new version)."""
    taken = _time_of(obs)
    if not taken:
        return
    episode = after_green(episode_of(task), taken)
    if episode is None:
        return
    task = dict(task)  # its meta names the version read (see TriageWrites.put)
    task["input"] = with_episode(task.get("input", []), episode)
    if episode.ended == taken:  # (not for a green that only moved «since» on)
        note = text(
            "triage.back_to_green",
            measurement=measurement_name(code),
            reading=_reading(obs)[1],
            time=_local(taken, now),
        )
        task["note"] = _append_note(task.get("note", []), {"text": note, "time": now})
    task["lastModified"] = now
    _writes(tx).put(tx, "Task", task, new=False)


def _writes(tx: WriteTx) -> TriageWrites:
    """The batch's Tasks and Flags to write (set up by :meth:`Triage.after_write`)."""
    writes: TriageWrites = tx.context[WRITES]
    return writes


PLAN_CACHE_SECONDS = 60.0
"""How long a process keeps a patient's plans for triage before reading them again. Cached
plans are also used only while the care-relations generation is the one they were read at:
every write of a CarePlan, Goal or EpisodeOfCare, in any process, moves it on."""

PLAN_TYPES = frozenset({"CarePlan", "Goal", "EpisodeOfCare"})
_GENERATION = "triage-generation"
"""``tx.context`` key: the generation as this transaction read it (once per transaction)."""
_MOVED = "triage-generation-moved"
"""``tx.context`` flag: this transaction wrote a plan (it moved the generation on)."""
_PLANS = "triage-plans"
"""``tx.context`` key: patient id → the plans this transaction read (dropped when it writes a
plan); kept in the process's cache too unless the transaction wrote a plan."""


class _PatientPlans:
    """One patient's plan versions as read at ``loaded``, and the ranges of those used."""

    __slots__ = ("defaults", "generation", "loaded", "periods", "ranges")

    def __init__(
        self,
        loaded: float,
        periods: list[PlanPeriod],
        groups: frozenset[str] = frozenset(),
        generation: int = 0,
    ) -> None:
        self.loaded = loaded
        self.generation = generation
        self.periods = periods
        self.ranges: dict[str, dict[str, ZoneRanges]] = {}
        self.defaults = defaults_for(groups)
        """The default ranges for the patient's groups (e.g. KOLS), from their episodes."""


class Triage:
    """Holds a per-process cache of each patient's plans (see ``PLAN_CACHE_SECONDS``)."""

    def __init__(self, store: FhirStore, *, late_after_hours: float = 24) -> None:
        self.store = store
        self.late_after = timedelta(hours=late_after_hours)
        """A reading taken longer ago than this when it arrives is late (*etterregistrert*)."""
        self._cache: dict[str, _PatientPlans] = {}
        self._lock = threading.Lock()

    def _plans(self, tx: WriteTx, patient_ids: list[str]) -> dict[str, _PatientPlans]:
        """Each patient's plans: as this transaction read them, or cached at the generation it
        reads (within ``PLAN_CACHE_SECONDS``), or else read now for all the patients missing
        (one statement for their plans, one for their episodes)."""
        generation = tx.context.get(_GENERATION)
        if generation is None:
            generation = tx.context[_GENERATION] = generation_in(tx.conn)
        in_tx: dict[str, _PatientPlans] = tx.context.setdefault(_PLANS, {})
        now = time.monotonic()
        out: dict[str, _PatientPlans] = {}
        missing: list[str] = []
        with self._lock:
            for pid in patient_ids:
                plans = in_tx.get(pid) or self._cache.get(pid)
                if (
                    plans is None
                    or plans.generation != generation
                    or now - plans.loaded > PLAN_CACHE_SECONDS
                ):
                    missing.append(pid)
                else:
                    out[pid] = plans
        if not missing:
            return out
        periods = plan_periods_of(tx.conn, missing, self.store.zone)
        episodes = episodes_of_patients(tx.conn, missing)
        read = {
            pid: _PatientPlans(now, periods[pid], groups_of_episodes(episodes[pid]), generation)
            for pid in missing
        }
        in_tx.update(read)
        if not tx.context.get(_MOVED):  # plans read beside an uncommitted plan: not kept
            with self._lock:
                if len(self._cache) > 20_000:
                    self._cache.clear()
                self._cache.update(read)
        out.update(read)
        return out

    def _ranges(
        self, tx: WriteTx, patient_id: str, when: tuple[int, int]
    ) -> tuple[dict[str, ZoneRanges], dict[str, ZoneRanges]]:
        """code → ranges of the patient's plan version in force at ``when`` (the first and
        last instant (µs) of the reading's time as the source stated it, see ``plan_at``),
        and code → the default ranges for this patient."""
        plans = self._plans(tx, [patient_id])[patient_id]
        chosen = plan_at(plans.periods, when[0], when[1])
        if chosen is None:
            return {}, plans.defaults
        key = str(chosen.get("id"))
        hit = plans.ranges.get(key)
        if hit is None:
            hit = plans.ranges[key] = ranges_of_plan(tx.conn, chosen)
        return hit, plans.defaults

    def _plan_written(self, tx: WriteTx) -> None:
        """A plan (CarePlan, Goal, EpisodeOfCare) is written or deleted in ``tx``: every
        process reads the plans again, this transaction too."""
        if not tx.context.get(_MOVED):
            bump_generation(tx.conn)  # every process reads the plans again
            tx.context[_MOVED] = True
        tx.context.pop(_GENERATION, None)
        tx.context.pop(_PLANS, None)
        with self._lock:
            self._cache.clear()

    def prepare(self, tx: WriteTx, resource: dict[str, Any]) -> dict[str, Any]:
        """Pre-write hook: forget cached plans when a plan changes; give an Observation the
        service builds (ingest: ``tx.context["triage"]``) its interpretation and reference
        ranges. An Observation a client writes (``/fhir``, Bundles) is stored as sent and
        judged after the write (:meth:`after_write`)."""
        rtype = resource.get("resourceType")
        if rtype in PLAN_TYPES:
            self._plan_written(tx)
            return resource
        if rtype != "Observation" or not tx.context.get("triage"):
            return resource
        return self.judge(tx, resource) or resource

    def before_hooks(self, tx: WriteTx, stored: list[StoredResource]) -> None:
        """Before the write hooks of resources written together (a group commit, a Bundle,
        an ingest): their Tasks and Flags are to be written together after them
        (:meth:`after_hooks`); and for several patients, what :meth:`after_write` needs for
        all of them is read in one statement each — the plans (for Observations judged after
        the write) and the open Tasks and Flags. Each hook then finds them as if it had read
        them itself: what an earlier one changes (a Task, a Flag) keeps the transaction's
        view up to date (:class:`OpenItems`), and a plan written in between drops the
        plans read."""
        judged: set[str] = set()
        patients: set[str] = set()
        kinds = (
            ("Observation", "QuestionnaireResponse")
            if tx.context.get("triage")
            else ("Observation",)
        )
        for s in stored:
            if s.deleted or s.res_type not in kinds:
                continue
            view = s.view()
            ref = (view.get("subject") or {}).get("reference", "")
            if not isinstance(ref, str) or not ref.startswith("Patient/"):
                continue
            patients.add(ref[8:])
            if s.res_type == "Observation":
                judged.add(ref[8:])
        if not patients:
            return
        # their Tasks and Flags are written together, at the end (:meth:`after_hooks`)
        tx.context.setdefault(WRITES, TriageWrites())
        if len(patients) < 2:
            return  # nothing to gain over reading them in the hook
        if judged and not tx.context.get("triage"):
            self._plans(tx, sorted(judged))
        known = open_items(tx)
        missing = sorted(p for p in patients if p not in known)
        if missing:
            known.add(_open_items_of(tx, missing))

    def judge(self, tx: WriteTx, resource: dict[str, Any]) -> dict[str, Any] | None:
        """The Observation with the zone triage gives it: ``interpretation`` (v3 code and
        zone, or not assessed and why) and ``referenceRange`` per judged node; a zone the
        source gave is replaced, never kept beside ours. A new dict (``resource`` is not
        changed); None when it cannot be judged (not a patient's, no time, entered in error)."""
        if resource.get("status") in ("entered-in-error", "cancelled"):
            return None
        ref = (resource.get("subject") or {}).get("reference", "")
        if not ref.startswith("Patient/"):
            return None
        when_text = resource.get("effectiveDateTime") or (
            resource.get("effectivePeriod") or {}
        ).get("start")
        if not when_text:
            return None
        try:
            when = fhir_range(when_text, self.store.zone)
        except ValueError:
            return None
        plan, defaults = self._ranges(tx, ref.split("/", 1)[1], when)
        worst: TriageResult | None = None
        worst_bound = ""
        missing = False
        """a node had no thresholds at all (plan or default)"""
        components = resource.get("component") or []
        nodes = components if components else [resource]
        new_components = []
        for node in nodes:
            code = _loinc(node)
            val = _value(node)
            ranges = plan.get(code or "") or defaults.get(code or "")
            if code is None or val is None or ranges is None or val[1] != ranges.unit:
                # nobody judged it: said so, never left to look normal
                no_thresholds = code is not None and ranges is None
                missing = missing or no_thresholds
                if components:
                    node = {
                        **node,
                        "interpretation": _without_zone(node.get("interpretation", []))
                        + _not_assessed(no_thresholds),
                    }
                new_components.append(node)
                continue
            t = classify_bound(val[0], val[2], ranges)
            bound = bound_note(val[2], val[0], val[1])
            if components:
                node = {
                    **node,
                    "interpretation": _with_bound(_interpretation(t), bound),
                    "referenceRange": _reference_ranges(ranges),
                }
            else:
                resource = {**resource, "referenceRange": _reference_ranges(ranges)}
            new_components.append(node)
            if worst is None or RANK[t.zone] > RANK[worst.zone]:
                worst, worst_bound = t, bound
        if components:
            resource = {**resource, "component": new_components}
        kept = _without_zone(resource.get("interpretation", []))
        if worst is not None:
            judged = _with_bound(_interpretation(worst), worst_bound)
            return {**resource, "interpretation": judged + kept}
        if _loinc(resource) is not None:
            # no component and no value judged (no thresholds, another unit, no number)
            return {**resource, "interpretation": _not_assessed(missing) + kept}
        return {**resource}

    # ---- after the write: Flags and Tasks --------------------------------------------------
    def after_write(
        self, tx: WriteTx, stored: StoredResource, previous: StoredResource | None
    ) -> None:
        if stored.res_type in PLAN_TYPES and stored.deleted:
            self._plan_written(tx)  # as for a new version (see :meth:`prepare`)
            return
        if stored.res_type in ("Task", "Flag"):
            # keep the per-transaction view of open items honest after every Task/Flag write
            known: OpenItems | None = tx.context.get(OPEN_ITEMS)
            if known is not None:
                known.keep(stored.res_type, stored.view(), deleted=stored.deleted)
            return
        judged_kinds = ("Observation", "QuestionnaireResponse")
        if stored.res_type not in judged_kinds or stored.deleted:
            return
        if WRITES in tx.context:  # one of a batch: its Tasks and Flags are written at its end
            self._after_write(tx, stored)
            return
        writes = tx.context[WRITES] = TriageWrites()
        try:
            self._after_write(tx, stored)
        finally:
            tx.context.pop(WRITES, None)
        writes.flush(tx)

    def after_hooks(self, tx: WriteTx, stored: list[StoredResource]) -> None:
        """After the write hooks of resources written together: write the Tasks and Flags
        their readings raised or changed, together (:class:`TriageWrites`)."""
        writes: TriageWrites | None = tx.context.pop(WRITES, None)
        if writes is not None:
            writes.flush(tx)

    def _after_write(self, tx: WriteTx, stored: StoredResource) -> None:
        """Judge an Observation (or a questionnaire the source judged) just written and act
        on it; its Tasks and Flags go to the batch's :class:`TriageWrites`."""
        if stored.res_type == "QuestionnaireResponse":
            if tx.context.get("triage"):
                self._questionnaire(tx, stored)
            return
        if tx.context.get("triage"):
            # built by the service and judged by :meth:`prepare`
            if b"/CodeSystem/zone" not in stored.content:
                return
            obs = stored.view()
        else:
            # as a client wrote it: judged here; the verdict lives beside it (the zone index,
            # Tasks, Flags, events), the stored resource stays as sent
            judged = self.judge(tx, stored.view())
            if judged is None:
                return
            obs = judged
        with tx.as_service():
            self._act_on(tx, stored, obs)

    def _act_on(self, tx: WriteTx, stored: StoredResource, obs: dict[str, Any]) -> None:
        """Index the judged Observation's zone and raise, escalate or close what follows."""
        zone = None
        for i in obs.get("interpretation", []):
            for c in i.get("coding", []):
                if c.get("system") == ZONE_SYSTEM:
                    zone = c.get("code")
        ref = (obs.get("subject") or {}).get("reference", "")
        if zone is None or not ref.startswith("Patient/"):
            return
        _index_zone(tx, stored.res_id, zone)
        code = _loinc(obs) or "unknown"
        pid = ref.split("/", 1)[1]
        now_at = now_utc()
        now = format_instant(now_at)
        late = self._is_late(obs, now_at)
        raise_event(
            tx,
            MeasurementJudged(
                pid, f"Observation/{stored.res_id}", code, str(zone), _time_of(obs), late
            ),
        )
        all_tasks, all_flags = self._open_items(tx, pid)
        if not late:
            # a reading arrived: the Flag saying this measurement (or one of a panel's
            # components, e.g. systolic blood pressure) was missing has ended
            measured = {code, *(c for c in map(_loinc, obs.get("component", [])) if c)}
            for gone in [
                f
                for f in all_flags
                if flag_kind(f) == MISSING_CODE and any(flag_is_about(f, c) for c in measured)
            ]:
                gone = {
                    **gone,
                    "status": "inactive",
                    "period": {**gone.get("period", {}), "end": now},
                }
                _writes(tx).put(tx, "Flag", gone, new=False)  # as for Tasks
        if zone == NOT_ASSESSED:
            texts = [i.get("text") or "" for i in obs.get("interpretation", [])]
            if NO_THRESHOLDS_TEXT in texts:
                _thresholds_missing(tx, all_tasks, ref, code, stored.res_id, obs)
            return
        tasks = [
            t
            for t in all_tasks
            if task_kind(t) == "assess-deviation"
            and any(i.get("valueCode") == code for i in t.get("input", []))
        ]
        about = [f for f in all_flags if flag_is_about(f, code)]
        flags = [f for f in about if flag_zone(f) is not None]
        by_default = any(
            DEFAULT_MARK in (i.get("text") or "") for i in obs.get("interpretation", [])
        )
        default_note = f" ({text('triage.by_default', mark=DEFAULT_MARK)})" if by_default else ""
        if late and zone == "green":
            return  # an old reading says nothing about the patient's state now
        if zone == "green":
            # the episode of an open deviation Task has ended: the next deviation is a new one
            for task in tasks:
                _back_to_green(tx, task, obs, code, now)
        if zone == "green" and not flags:
            return
        if zone == "green":
            for flag in flags:
                flag = {
                    **flag,
                    "status": "inactive",
                    "period": {**flag.get("period", {}), "end": now},
                }
                _writes(tx).put(tx, "Flag", flag, new=False)  # as for Tasks above
            return
        value, reading = _reading(obs)
        bounds = [
            (v[2], bound_note(v[2], v[0], v[1]))
            for v in (_value(n) for n in [obs, *obs.get("component", [])])
            if v is not None and v[2]
        ]
        note = (
            text(
                "triage.measurement_note",
                zone=zone_name(zone).capitalize(),
                measurement=measurement_name(code),
                reading=reading,
                time=_local(_time_of(obs) or None, now),
            )
            + default_note
            + "".join(f"; {said}" for _c, said in bounds)
        )
        if late:
            note = f"{LATE_MARK}: {note}"  # received at the note's time
        task_id, news = _raise_or_escalate(
            tx,
            tasks[0] if tasks else None,
            zone=zone,
            patient_ref=ref,
            focus=f"Observation/{stored.res_id}",
            note=note,
            now=now,
            kind=(
                "assess-deviation",
                "Vurder avvik fra egenbehandlingsplan",
                measurement_name(code),
            ),
            task_input=("measurement code", code),
            reading_time=_time_of(obs) or now,
            late=late,
        )
        if news is not None:
            event = DeviationOpened if news == "opened" else DeviationEscalated
            raise_event(
                tx,
                event(
                    pid,
                    task=f"Task/{task_id}",
                    code=code,
                    zone=zone,
                    reading=reading,
                    time=_time_of(obs) or now,
                    value=float(value[0]) if value else None,
                    unit=value[1] if value else None,
                    focus=f"Observation/{stored.res_id}",
                    late=late,
                    bound=bounds[0][0] if bounds else None,
                ),
            )
        if late:
            return  # no Flag about a state that may be long past
        flag_code = {
            "coding": [{"system": ZONE_SYSTEM, "code": zone}, *measurement_coding(code)],
            "text": text(
                "triage.flag",
                zone=zone_name(zone).capitalize(),
                measurement=measurement_name(code),
                time=_local(obs.get("effectiveDateTime"), now),
            )
            + default_note,
        }
        if flags:
            flag = dict(flags[0])
            if RANK[zone] > RANK.get(flag_zone(flag) or "green", 0):
                # escalated: the zone coding (searchable, Flag?code=…zone|red) and the text
                flag["code"] = flag_code
                _writes(tx).put(tx, "Flag", flag, new=False)
        else:
            _writes(tx).put(
                tx,
                "Flag",
                {
                    "resourceType": "Flag",
                    "id": new_id(),
                    "status": "active",
                    "category": [
                        {
                            "coding": [
                                {
                                    "system": "http://terminology.hl7.org/CodeSystem/flag-category",
                                    "code": "clinical",
                                }
                            ]
                        }
                    ],
                    "code": flag_code,
                    "subject": {"reference": ref},
                    "period": {"start": now},
                },
                new=True,
            )

    def _is_late(self, obs: dict[str, Any], now: datetime) -> bool:
        """Taken longer ago than the late window (by the end of its stated time)."""
        text = _time_of(obs)
        if not text:
            return False
        try:
            end = fhir_range(text, self.store.zone)[1]
        except ValueError:
            return False
        return end < to_micros(now - self.late_after)

    def _questionnaire(self, tx: WriteTx, stored: StoredResource) -> None:
        """A questionnaire the source's own flow judged yellow/red (the ``source-severity``
        extension) raises or escalates a Task for the follow-up centre, like a measurement."""
        qr = stored.json()
        zone = None
        for ext in qr.get("extension", []):
            if ext.get("url") == SEVERITY_URL:
                zone = (ext.get("valueCoding") or {}).get("code") or ext.get("valueCode")
        ref = (qr.get("subject") or {}).get("reference", "")
        if zone not in ("yellow", "red") or not ref.startswith("Patient/"):
            return
        pid = ref.split("/", 1)[1]
        key = f"questionnaire:{qr.get('questionnaire', '')}"
        all_tasks, _flags = self._open_items(tx, pid)
        tasks = [t for t in all_tasks if any(i.get("valueCode") == key for i in t.get("input", []))]
        now = format_instant(now_utc())
        display_url = "http://hl7.org/fhir/StructureDefinition/display"
        titles = [
            e.get("valueString")
            for e in (qr.get("_questionnaire") or {}).get("extension", [])
            if e.get("url") == display_url
        ]
        title = titles[0] if titles and titles[0] else "spørreskjema"
        note = text(
            "triage.questionnaire_note",
            zone=zone_name(zone).capitalize(),
            title=title,
            time=_local(qr.get("authored"), now),
        )
        task_id, news = _raise_or_escalate(
            tx,
            tasks[0] if tasks else None,
            zone=zone,
            patient_ref=ref,
            focus=f"QuestionnaireResponse/{stored.res_id}",
            note=note,
            now=now,
            kind=("assess-questionnaire", "Vurder besvart spørreskjema", title),
            task_input=("questionnaire", key),
            reading_time=qr.get("authored") or now,
        )
        if news is not None:
            severity = "rød" if zone == "red" else "gul"
            event = DeviationOpened if news == "opened" else DeviationEscalated
            raise_event(
                tx,
                event(
                    pid,
                    task=f"Task/{task_id}",
                    code="questionnaire",
                    zone=zone,
                    reading=f"«{title}» besvart, {severity} alvorlighet",
                    time=qr.get("authored") or now,
                    focus=f"QuestionnaireResponse/{stored.res_id}",
                    display="Spørreskjema",
                ),
            )

    def _open_items(
        self, tx: WriteTx, patient_id: str
    ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """The patient's open Tasks and active Flags as this transaction sees them: read once
        (through the search indexes, so the cost does not grow with the patient's closed
        history), with what the transaction changed since (its batch's Tasks and Flags not
        yet written included)."""
        known = open_items(tx)
        if patient_id not in known:
            known.add(_open_items_of(tx, [patient_id]))
        return known.of(patient_id)


MEASUREMENT_INPUTS = ("measurement code", "questionnaire")


def measurement_code_of(task: dict[str, Any]) -> str | None:
    """The measurement code (or ``questionnaire:<url>``) a triage Task is about."""
    return input_named(task, MEASUREMENT_INPUTS, "valueCode")


def task_kind(task: dict[str, Any]) -> str | None:
    """What a Task the service raised is for (its code in :data:`TASK_CODE_SYSTEM`:
    ``assess-deviation``, ``missing-measurement`` …); None for anyone else's."""
    for c in (task.get("code") or {}).get("coding", []):
        if c.get("system") == TASK_CODE_SYSTEM:
            return str(c.get("code"))
    return None


def _thresholds_missing(
    tx: WriteTx,
    open_tasks: list[dict[str, Any]],
    patient_ref: str,
    code: str,
    obs_id: str,
    obs: dict[str, Any],
) -> None:
    """One routine Task per patient and code while readings of it go unjudged (no plan
    threshold, no default): a person adds thresholds to the plan, then completes it. Its
    words name the measurement and the first unjudged reading as a nurse reads them; the
    code and the Observation stay in the data (``input``, ``focus``)."""
    if any(
        task_kind(t) == "thresholds-missing"
        and any(i.get("valueCode") == code for i in t.get("input", []))
        for t in open_tasks
    ):
        return
    now = format_instant(now_utc())
    name = measurement_name(code)
    _writes(tx).put(
        tx,
        "Task",
        {
            "resourceType": "Task",
            "id": new_id(),
            "status": "requested",
            "intent": "order",
            "priority": "routine",
            "code": {
                "coding": [
                    {
                        "system": TASK_CODE_SYSTEM,
                        "code": "thresholds-missing",
                        "display": "Grenseverdier mangler",
                    }
                ],
                "text": text("triage.thresholds_missing.title", measurement=name),
            },
            "description": text(
                "triage.thresholds_missing.description",
                measurement=name,
                reading=_reading(obs)[1],
                time=_local(_time_of(obs), now),
            ),
            "focus": {"reference": f"Observation/{obs_id}"},
            "for": {"reference": patient_ref},
            "authoredOn": now,
            "lastModified": now,
            "input": since_input(
                [{"type": {"text": "measurement code"}, "valueCode": code}],
                _time_of(obs) or now,
            ),
        },
        new=True,
    )


_OPEN_STATUSES = {"Task": OPEN_TASK, "Flag": ("active",)}
"""The statuses in which a Task is open and a Flag active."""


def _open_items_of(
    tx: WriteTx,
    patient_ids: list[str],
    statuses: Mapping[str, Collection[str]] = _OPEN_STATUSES,
) -> dict[str, tuple[list[dict[str, Any]], list[dict[str, Any]]]]:
    """Each patient's open Tasks and active Flags, read together (:mod:`interop.store.open_items`),
    each item once, in the order of its id (only the types ``statuses`` names: the others'
    lists stay empty)."""
    out: dict[str, tuple[list[dict[str, Any]], list[dict[str, Any]]]] = {
        pid: ([], []) for pid in patient_ids
    }
    slots = {rtype: slot for slot, rtype in enumerate(_OPEN_STATUSES)}
    seen: set[tuple[str, str, str]] = set()
    rows = open_item_rows.of_patients(tx.conn, statuses, patient_ids)
    for rtype, pid, rid, content in sorted(rows, key=lambda row: (row[2], row[1])):
        if (rtype, rid, pid) in seen or pid not in out:
            continue
        seen.add((rtype, rid, pid))
        item = orjson.loads(content)
        if item.get("status") in statuses.get(rtype, ()):
            out[pid][slots[rtype]].append(item)
    return out


def open_tasks_of(tx: WriteTx, patient_id: str) -> list[dict[str, Any]]:
    """The patient's open Tasks, as the transaction sees them (by the search indexes; its
    Flags are not read)."""
    return _open_items_of(tx, [patient_id], {"Task": OPEN_TASK})[patient_id][0]


ZONE_PARAM = "zone"
"""The Observation search parameter of the computed zone (``Observation?zone=red``; see
``fhir_profiles/search-parameters.yaml``, ``index: computed``)."""


def _index_zone(tx: WriteTx, obs_id: str, zone: str) -> None:
    """Keep the zone of an Observation just judged, to be indexed when the transaction
    commits (:func:`flush_zone_index`, one insert for all of them)."""
    pending: dict[str, str] = tx.context.setdefault("zone_index", {})
    pending[obs_id] = zone


def flush_zone_index(tx: WriteTx) -> None:
    """Before-commit hook: write the zones judged in this transaction as token index rows of
    their Observations, in one insert. Each was judged after a write of its Observation in
    this transaction, and every write of a version clears that resource's index rows first
    (its zone row included), so there is none to replace."""
    pending: dict[str, str] | None = tx.context.pop("zone_index", None)
    if not pending:
        return
    tx.add_index_rows(
        token_table,
        ("res_type", "res_id", "param", "system", "code"),
        [("Observation", rid, ZONE_PARAM, ZONE_SYSTEM, zone) for rid, zone in pending.items()],
    )
