"""What a person does about a deviation (*avvik*): take the Task, add a note, complete it with
an outcome from the code list (``mappings/worklist/outcomes.yaml``).

Completing closes the Task and the patient's active Flags for the same measurement code, and
records who did it, when, and what was done (owner, ``executionPeriod.end``, ``lastModified``,
``output`` with the outcome coding, a note). Every change is a new version of the Task, so the
history keeps each step. The writes go through the store (its write guard and audit) in the
caller's transaction.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from importlib.resources import files
from typing import Any

import orjson
import yaml
from sqlalchemy import select

from interop.care.triage import OPEN_TASK, flag_is_about, flag_kind, task_kind
from interop.fhir.dates import format_instant, now_utc
from interop.fhir.outcome import error
from interop.store.repository import WriteTx
from interop.store.schema import resource_table
from interop.text import local_time, text

HPR = "urn:oid:2.16.578.1.12.4.1.4.4"
OUTCOME_TYPE = "outcome"


@dataclass(frozen=True, slots=True)
class Outcome:
    code: str
    gp: bool
    """Whether the patient's GP was involved."""


@dataclass(frozen=True, slots=True)
class Person:
    """Who acts on the Task: an actor's id, and HPR number and name when known."""

    id: str
    hpr: str | None = None
    name: str | None = None

    @property
    def label(self) -> str:
        return self.name or (f"HPR {self.hpr}" if self.hpr else self.id)

    def reference(self) -> dict[str, Any]:
        ref: dict[str, Any] = {"display": self.label}
        if self.hpr:
            ref["identifier"] = {"system": HPR, "value": self.hpr}
        return ref


@lru_cache(maxsize=1)
def outcome_list() -> tuple[str, dict[str, Outcome]]:
    """(code system, code → outcome) from ``mappings/worklist/outcomes.yaml``."""
    data = yaml.safe_load(
        (files("mappings") / "worklist" / "outcomes.yaml").read_text(encoding="utf-8")
    )
    outcomes = {
        str(o["code"]): Outcome(str(o["code"]), bool(o.get("gp"))) for o in data["outcomes"]
    }
    return str(data["system"]), outcomes


def outcome_display(code: str) -> str:
    return text(f"worklist.outcomes.{code}")


def _open_task(tx: WriteTx, task_id: str) -> dict[str, Any]:
    stored = tx.get("Task", task_id)
    if stored is None or stored.deleted:
        raise error(404, "not-found", f"no Task/{task_id}")
    task = stored.json()
    if task.get("status") not in OPEN_TASK:
        raise error(409, "business-rule", f"Task/{task_id} is {task.get('status')}, no longer open")
    task.pop("meta", None)
    return task


def _note(task: dict[str, Any], who: Person, when: str, words: str) -> None:
    task["note"] = [*task.get("note", []), {"authorString": who.label, "time": when, "text": words}]


def take(tx: WriteTx, task_id: str, who: Person) -> dict[str, Any]:
    """``who`` owns the Task from now (``accepted``)."""
    task = _open_task(tx, task_id)
    now = format_instant(now_utc())
    task["owner"] = who.reference()
    task["status"] = "accepted"
    task["lastModified"] = now
    task.setdefault("executionPeriod", {})["start"] = now
    _note(task, who, now, text("worklist.owned", who=who.label))
    tx.update("Task", task_id, task)
    return task


def add_note(tx: WriteTx, task_id: str, who: Person, words: str) -> dict[str, Any]:
    words = words.strip()
    if not words:
        raise error(422, "required", "note: the note is empty")
    task = _open_task(tx, task_id)
    now = format_instant(now_utc())
    task["lastModified"] = now
    _note(task, who, now, words)
    tx.update("Task", task_id, task)
    return task


def _measurement_code(task: dict[str, Any]) -> str | None:
    for i in task.get("input", []):
        if i.get("valueCode"):
            return str(i["valueCode"])
    return None


def complete(
    tx: WriteTx, task_id: str, who: Person, outcome: str, words: str = ""
) -> dict[str, Any]:
    """Close the deviation: the Task ``completed`` with its outcome, and the patient's active
    Flags for the same measurement code ``inactive``. The one place a deviation is closed."""
    system, outcomes = outcome_list()
    if outcome not in outcomes:
        raise error(
            422,
            "code-invalid",
            f"outcome: {outcome!r} is not in the outcome list ({', '.join(outcomes)})",
        )
    task = _open_task(tx, task_id)
    at = now_utc()
    now = format_instant(at)
    display = outcome_display(outcome)
    task["status"] = "completed"
    task.setdefault("owner", who.reference())
    task["lastModified"] = now
    # the first time a person acted on it (taking it, or completing it at once)
    task.setdefault("executionPeriod", {}).setdefault("start", now)
    task["executionPeriod"]["end"] = now
    task["output"] = [
        *task.get("output", []),
        {
            "type": {"text": OUTCOME_TYPE},
            "valueCodeableConcept": {
                "coding": [{"system": system, "code": outcome, "display": display}],
                "text": display,
            },
        },
    ]
    line = text("worklist.completed", time=local_time(at), who=who.label, outcome=display)
    _note(task, who, now, f"{line}. {words.strip()}" if words.strip() else line)
    tx.update("Task", task_id, task)
    code = _measurement_code(task)
    patient = (task.get("for") or {}).get("reference", "")
    if code and patient.startswith("Patient/"):
        kind = task_kind(task)  # a deviation Task ends its zone Flag, a missing-measurement
        # Task its own Flag: never the other kind's (a red Flag stays while it is red)
        for flag in _active_flags(tx, patient.split("/", 1)[1]):
            if kind is not None and flag_kind(flag) == kind and flag_is_about(flag, code):
                flag.pop("meta", None)
                flag["status"] = "inactive"
                flag["period"] = {**flag.get("period", {}), "end": now}
                tx.update("Flag", flag["id"], flag)
    return task


def _active_flags(tx: WriteTx, patient_id: str) -> list[dict[str, Any]]:
    flags = []
    for (content,) in tx.conn.execute(
        select(resource_table.c.content).where(
            resource_table.c.res_type == "Flag",
            resource_table.c.patient_id == patient_id,
            resource_table.c.deleted.is_(False),
        )
    ):
        flag = orjson.loads(content)
        if flag.get("status") == "active":
            flags.append(flag)
    return flags
