"""Completing a Task records who, when and what was done (store hooks, every door).

When a Task becomes ``completed`` (or ``cancelled``), the pre-write hook fills in what the
client left out: ``owner`` (the acting person or system), ``executionPeriod.end`` (now) and
``lastModified`` (now; a Task created already closed keeps its own times). A client that closes an open Task must say what was done: an
``output``, a ``statusReason`` or a new ``note`` (otherwise 422 naming ``Task.output``). The
post-write hook raises :class:`~interop.care.events.DeviationClosed` for a deviation Task.
"""

from __future__ import annotations

from typing import Any

from interop.care.events import DeviationClosed, raise_event
from interop.care.triage import OPEN_TASK, measurement_code_of, task_kind
from interop.fhir.dates import format_instant, now_utc
from interop.fhir.outcome import error
from interop.identifiers import HPR_OID
from interop.store.context import Door
from interop.store.repository import StoredResource, WriteTx

CLOSED = ("completed", "cancelled")
DEVIATION_TASKS = frozenset({"assess-deviation", "assess-questionnaire"})
ACTOR_SYSTEM = "urn:dho-interop:actor"
"""Identifier system of an actor of this service (an API key or HelseID client) that has no
HPR number."""
CLIENT_DOORS = frozenset({Door.FHIR, Door.BUNDLE})


def _owner(tx: WriteTx) -> dict[str, Any]:
    actor = tx.ctx.actor
    if actor is None:
        return {"display": "DHO Interop (tjenesten)"}
    hpr = getattr(actor, "hpr", None)
    name = getattr(actor, "name", None)
    ident = (
        {"system": HPR_OID, "value": hpr} if hpr else {"system": ACTOR_SYSTEM, "value": actor.id}
    )
    return {"identifier": ident, "display": name or f"{actor.role} {actor.id}"}


def outcome_of(task: dict[str, Any]) -> str | None:
    """What was done, as a Task says it: its output, status reason or last note."""
    for out in task.get("output", []):
        for key in ("valueString", "valueMarkdown"):
            if isinstance(out.get(key), str) and out[key].strip():
                return str(out[key])
        concept = out.get("valueCodeableConcept") or {}
        text = concept.get("text") or next(
            (c.get("display") or c.get("code") for c in concept.get("coding", [])), None
        )
        if text:
            return str(text)
    reason = (task.get("statusReason") or {}).get("text")
    if reason:
        return str(reason)
    notes = task.get("note") or []
    return str(notes[-1].get("text")) if notes and notes[-1].get("text") else None


def prepare(tx: WriteTx, resource: dict[str, Any]) -> dict[str, Any]:
    """Pre-write hook: record who closed a Task and when; a client says what was done."""
    if resource.get("resourceType") != "Task" or resource.get("status") not in CLOSED:
        return resource
    rid = resource.get("id")
    previous = tx.get("Task", str(rid)) if isinstance(rid, str) else None
    before = previous.json() if previous is not None and not previous.deleted else None
    if before is not None and before.get("status") in CLOSED:
        return resource  # closed before: nothing to record again
    if before is not None and tx.ctx.door in CLIENT_DOORS:
        said = (
            resource.get("output")
            or (resource.get("statusReason") or {}).get("text")
            or len(resource.get("note") or []) > len(before.get("note") or [])
        )
        if not said:
            raise error(
                422,
                "required",
                "Task.output: closing a Task records what was done (an output, a statusReason "
                "or a new note)",
                expression=["Task.output"],
            )
    now = format_instant(now_utc())
    out = dict(resource)
    out.setdefault("owner", _owner(tx))
    period = dict(out.get("executionPeriod") or {})
    if before is None:
        # created closed (a record of work done elsewhere): its own times stand
        period.setdefault("end", out.get("lastModified") or now)
        out.setdefault("lastModified", period["end"])
    else:
        period.setdefault("end", now)
        out["lastModified"] = now
    out["executionPeriod"] = period
    return out


def after_write(tx: WriteTx, stored: StoredResource, previous: StoredResource | None) -> None:
    """Post-write hook: a deviation Task just closed raises ``DeviationClosed``."""
    if stored.res_type != "Task" or stored.deleted:
        return
    task = stored.view()
    if task.get("status") not in CLOSED or task_kind(task) not in DEVIATION_TASKS:
        return
    if (
        previous is not None
        and not previous.deleted
        and previous.json().get("status") not in OPEN_TASK
    ):
        return  # it was closed before
    ref = (task.get("for") or {}).get("reference", "")
    if not isinstance(ref, str) or not ref.startswith("Patient/"):
        return
    raise_event(
        tx,
        DeviationClosed(
            ref[8:],
            task=f"Task/{stored.res_id}",
            code=measurement_code_of(task),
            status=str(task["status"]),
            owner=task.get("owner"),
            closed_at=str((task.get("executionPeriod") or {}).get("end") or ""),
            outcome=outcome_of(task),
        ),
    )
