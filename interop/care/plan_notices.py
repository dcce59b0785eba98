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

Task-type codes and priorities are data (``mappings/plans/gp-approval.yaml``, ``notice``), the
words are the message catalogue's (``plan.notice``).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from interop.care.events import PlanAnswered
from interop.care.gp_approval import gp_approval_rules
from interop.care.triage import TASK_CODE_SYSTEM
from interop.fhir.dates import format_instant, now_utc
from interop.store.repository import WriteTx
from interop.text import local_time, text

PLAN_INPUT = "care plan"
"""``Task.input.type.text`` of the plan a notice is about (also its ``focus``)."""


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
        tx.create(notice_task(event, title, self.zone))
