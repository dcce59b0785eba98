"""The follow-up centre hears the GP's answer to a proposed egenbehandlingsplan.

Whichever way the GP answered (``POST …/plan/{id}/approve``, the GP's approval page, or a
Dialogmelding *svar*), the care core raises :class:`~interop.care.events.PlanAnswered`; this
subscriber (wired in ``interop.services``) writes a routine Task for the patient's care team
in the same transaction, so the worklist shows it beside the patient's other work: *Plan
godkjent av fastlege*, *Fastlegen ber om endringer i planen* with the GP's words,
*Fastlegen har svart på planforslaget* when the answer is neither, or — an approving svar from
someone who is not the patient's GP, which approves nothing — who answered and why the plan
still waits. The Task is the patient's
(``Task.for``), about the plan (``focus``), asked by the GP (``requester``, when known), and is
completed by a nurse like any other worklist Task.

A later answer about the same plan (*unclear*, then approved; changes, then the revised plan
approved) replaces the earlier answer's notice while it is still open: the earlier Task is
``cancelled`` — FHIR's status for a Task that will not be done — with a ``statusReason``
(``superseded``, in words), a note saying when and why it was closed, an ``output`` pointing
at the new Task, and the service as ``owner`` unless a nurse already owns it (the store's
completion hook then records ``executionPeriod.end`` and ``lastModified``). The new Task
carries the earlier answer's words in a note, so nothing the GP wrote is lost from the
worklist. Only the plan's own patient's open notices about that same plan are looked at.

Task-type codes and priorities are data (``mappings/plans/gp-approval.yaml``, ``notice``), the
words are the message catalogue's (``plan.notice``).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from interop.care.events import PlanAnswered
from interop.care.gp_approval import gp_approval_rules
from interop.care.triage import TASK_CODE_SYSTEM, open_tasks_of, task_kind
from interop.fhir.dates import format_instant, now_utc
from interop.store.repository import WriteTx
from interop.text import local_time, text

PLAN_INPUT = "care plan"
"""``Task.input.type.text`` of the plan a notice is about (also its ``focus``)."""
ANSWER_INPUT = "gp answer"
"""``Task.input.type.text`` of the GP's own words (also the notice's first note)."""
REPLACED_BY = "replaced by"
"""``Task.output.type.text`` of a superseded notice: the notice that replaced it."""
"""``Task.owner`` of a notice the service closed itself (nobody had taken it)."""
STATUS_REASON_SYSTEM = "https://dho-interop.no/fhir/CodeSystem/task-status-reason"


def notice_codes() -> frozenset[str]:
    """The task-type codes of the notices (``mappings/plans/gp-approval.yaml``, ``notice``)."""
    return frozenset(str(r["task"]) for r in gp_approval_rules()["notice"].values())


def open_notices(tx: WriteTx, patient_id: str, care_plan: str) -> list[dict[str, Any]]:
    """The patient's open notices about one plan (``CarePlan/<id>``): Tasks for that patient,
    focused on that plan, of a notice type — never another patient's, never another plan's."""
    codes = notice_codes()
    return [
        t
        for t in open_tasks_of(tx, patient_id)
        if (t.get("for") or {}).get("reference") == f"Patient/{patient_id}"
        and (t.get("focus") or {}).get("reference") == care_plan
        and task_kind(t) in codes
    ]


def _is_answer(item: dict[str, Any]) -> bool:
    return (item.get("type") or {}).get("text") == ANSWER_INPUT


def _earlier_note(earlier: dict[str, Any], zone: str) -> dict[str, Any]:
    """The new notice's note keeping what the earlier (now closed) one said."""
    authored = str(earlier.get("authoredOn") or earlier.get("lastModified") or "")
    words = next((i.get("valueString") for i in earlier.get("input") or [] if _is_answer(i)), None)
    note: dict[str, Any] = {
        "text": text(
            "plan.notice.superseded.earlier",
            time=local_time(datetime.fromisoformat(authored), zone) if authored else "",
            title=(earlier.get("code") or {}).get("text") or "",
            words=text("plan.notice.superseded.earlier_words", words=words) if words else "",
        )
    }
    if authored:
        note["time"] = authored
    return note


def supersede(
    tx: WriteTx, earlier: dict[str, Any], replacement: str, event: PlanAnswered, zone: str
) -> None:
    """Close an earlier notice a later answer about the same plan replaces (see the module)."""
    rule = gp_approval_rules()["superseded"]
    now = format_instant(now_utc())
    gp = (
        text("plan.notice.gp_named", name=event.gp_name)
        if event.gp_name
        else text("plan.notice.gp_unknown")
    )
    reason = text("plan.notice.superseded.reason")
    task = dict(earlier)
    task["status"] = rule["status"]
    task["statusReason"] = {
        "coding": [{"system": STATUS_REASON_SYSTEM, "code": rule["reason"], "display": reason}],
        "text": reason,
    }
    task.setdefault("owner", {"display": text("plan.notice.service")})
    task["note"] = [
        *(earlier.get("note") or []),
        {
            "text": text(
                "plan.notice.superseded.note",
                time=local_time(datetime.fromisoformat(now), zone),
                gp=gp,
                answer=text(f"plan.notice.superseded.answers.{event.decision}"),
            ),
            "authorString": text("plan.notice.service"),
            "time": now,
        },
    ]
    task["output"] = [
        *(earlier.get("output") or []),
        {"type": {"text": REPLACED_BY}, "valueReference": {"reference": replacement}},
    ]
    tx.update("Task", str(earlier["id"]), task)


def notice_task(event: PlanAnswered, plan_title: str, zone: str) -> dict[str, Any]:
    """The worklist Task telling the care team what the GP answered."""
    rule = gp_approval_rules()["notice"][event.decision]
    gp = (
        text("plan.notice.gp_named", name=event.gp_name)
        if event.gp_name
        else text("plan.notice.gp_unknown")
    )
    when = local_time(datetime.fromisoformat(event.time), zone)
    comment = (event.comment or "").strip()
    description = text(
        f"plan.notice.{event.decision}",
        gp=gp,
        plan=plan_title,
        time=when,
        door=text(f"plan.notice.doors.{event.door}"),
        comment=comment,
    )
    if event.decision == "approved" and comment:
        description += " " + text("plan.notice.comment", comment=comment)
    title = text(f"plan.notice.title.{event.decision}")
    now = format_instant(now_utc())
    task: dict[str, Any] = {
        "resourceType": "Task",
        "status": "requested",
        "intent": "order",
        "priority": rule["priority"],
        "code": {
            "coding": [{"system": TASK_CODE_SYSTEM, "code": rule["task"], "display": title}],
            "text": title,
        },
        "description": description,
        "focus": {"reference": event.care_plan},
        "for": {"reference": f"Patient/{event.patient_id}"},
        "authoredOn": now,
        "lastModified": now,
        "input": [{"type": {"text": PLAN_INPUT}, "valueReference": {"reference": event.care_plan}}],
    }
    if event.gp:
        task["requester"] = {"reference": event.gp, "display": gp}
    if comment:
        task["note"] = [{"text": comment, "authorString": gp, "time": event.time}]
        task["input"].append({"type": {"text": ANSWER_INPUT}, "valueString": comment})
    return task


class PlanNotices:
    """Subscriber of :class:`PlanAnswered`: the care team's Task, on the plan's own patient."""

    def __init__(self, zone: str) -> None:
        self.zone = zone

    def __call__(self, tx: WriteTx, event: PlanAnswered) -> None:
        stored = tx.get("CarePlan", event.care_plan.split("/", 1)[1])
        cp = stored.json() if stored is not None and not stored.deleted else {}
        subject = (cp.get("subject") or {}).get("reference")
        if subject != f"Patient/{event.patient_id}":
            # an event whose plan is not the patient's: never a Task on another patient
            raise ValueError(f"{event.care_plan} is not a plan of Patient/{event.patient_id}")
        title = str(cp.get("title") or "Egenbehandlingsplan")
        replaces = event.decision in gp_approval_rules()["superseded"]["by"]
        earlier = open_notices(tx, event.patient_id, event.care_plan) if replaces else []
        task = notice_task(event, title, self.zone)
        if earlier:
            task["note"] = [
                *(_earlier_note(t, self.zone) for t in earlier),
                *task.get("note", []),
            ]
        created = tx.create(task)
        for old in earlier:
            supersede(tx, old, f"Task/{created.res_id}", event, self.zone)
