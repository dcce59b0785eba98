"""Notice what others changed in NHN *Pasientens planer*: ``interop plans poll-nhn`` and the
worker's job (``INTEROP_NHN_PLANS_POLL_SECONDS``).

For every patient whose egenbehandlingsplan is tied to an NHN plan (our CarePlan holds its id
and the version and clinical content we last exported or imported), the NHN plan is read:

* the same version, or a newer one whose zones and status are what we exported (a comment, or
  our own write whose answer was lost): nothing to tell; a newer version is recorded so our next
  export does not meet a 409 for it;
* zones changed, or a status we did not set (someone else's EPJ, the GP's system, the patient's
  app): our plan is **not** changed — it keeps judging by the thresholds the GP approved, and
  nothing from NHN is applied (NHN's zones are text, and any change to thresholds goes through
  a draft, a nurse and the GP). The change is made visible instead: a conflict on our CarePlan
  (what changed, who, when, which version; the next export meets the same 409 and overwrites
  nothing until a person has reconciled) and a routine Task for the care team on the
  patient's worklist, told once per NHN version;
* an NHN plan whose ``subject`` is not the patient's number is never recorded on that patient.

Task-type code and priority are data (``mappings/national/nhn-plans.yaml``, ``poll``), the words
the message catalogue's (``nhn_plan.poll``).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import orjson
from sqlalchemy import select

from interop.care.plan_state import state_of
from interop.care.plans import plan_versions
from interop.care.triage import OPEN_TASK, TASK_CODE_SYSTEM
from interop.fhir.dates import format_instant, now_utc
from interop.messaging.addressbook import AddressError
from interop.national.plans_api import PlansApiClient, PlansApiError, clinical, subject_number
from interop.national.plans_export import link_of, mapping, nhn_subject, set_link
from interop.store.context import WriteContext
from interop.store.repository import FhirStore, WriteTx
from interop.store.schema import resource_table, token_table
from interop.text import local_time, text

log = logging.getLogger("interop.national")


@dataclass
class PollReport:
    plans: int = 0
    """NHN plans read."""
    unchanged: int = 0
    caught_up: int = 0
    """Newer NHN versions with our own zones and status: the version recorded."""
    changed: int = 0
    """Changes by someone else made visible (conflict + Task)."""
    already_told: int = 0
    errors: list[str] = field(default_factory=list)

    def summary(self) -> dict[str, int]:
        return {
            "plans": self.plans,
            "unchanged": self.unchanged,
            "caught_up": self.caught_up,
            "changed": self.changed,
            "already_told": self.already_told,
            "errors": len(self.errors),
        }


def linked_patients(store: FhirStore) -> list[str]:
    """Patients with a CarePlan tied to an NHN plan (its id as identifier)."""
    t, r = token_table.c, resource_table.c
    plans = select(t.res_id).where(
        t.res_type == "CarePlan", t.param == "identifier", t.system == mapping()["plan_id_system"]
    )
    with store.reader() as conn:
        return sorted(
            {
                pid
                for (pid,) in conn.execute(
                    select(r.patient_id).where(
                        r.res_type == "CarePlan", r.deleted.is_(False), r.res_id.in_(plans)
                    )
                )
                if pid
            }
        )


def _holder(conn: Any, pid: str) -> tuple[dict[str, Any], dict[str, Any]] | None:
    """The patient's CarePlan holding the NHN link with the highest version, and that link."""
    held = [(cp, lk) for cp in plan_versions(conn, pid) if (lk := link_of(cp))]
    if not held:
        return None
    return max(held, key=lambda pair: pair[1].get("version") or 0)


def _our_status(conn: Any, pid: str) -> str | None:
    """The NHN status our newest exported plan gives (None: no plan in an exported state)."""
    statuses = mapping()["status"]
    exported = [s for cp in plan_versions(conn, pid) if (s := statuses.get(state_of(cp)))]
    return exported[-1] if exported else None


def _who(plan: dict[str, Any]) -> str:
    by = plan.get("updated_by") or {}
    if not isinstance(by, dict):
        return str(by)
    parts = [str(by[k]) for k in ("name", "system") if by.get(k)]
    return ", ".join(parts) or text("nhn_plan.poll.someone")


def _when(plan: dict[str, Any], zone: str) -> str:
    try:
        return local_time(datetime.fromisoformat(str(plan.get("updated_at"))), zone)
    except ValueError:
        return str(plan.get("updated_at") or "")


class PlansPoll:
    def __init__(self, services: Any, api: PlansApiClient) -> None:
        self.services = services
        self.store: FhirStore = services.store
        self.api = api
        self.zone: str = services.settings.timezone

    def run(self, patients: list[str] | None = None) -> PollReport:
        report = PollReport()
        for pid in linked_patients(self.store) if patients is None else patients:
            try:
                self._one(pid, report)
            except PlansApiError as exc:
                report.errors.append(f"Patient/{pid}: Pasientens planer: {exc}")
            except (KeyError, TypeError, ValueError) as exc:  # an answer off the contract
                report.errors.append(
                    f"Patient/{pid}: Pasientens planer answered off the contract "
                    f"({type(exc).__name__}: {exc}); nothing recorded"
                )
        for line in report.errors:
            log.warning("NHN plan poll: %s", line)
        return report

    def _one(self, pid: str, report: PollReport) -> None:
        with self.store.reader() as conn:
            found = _holder(conn, pid)
            patient = self.store.get("Patient", pid, conn)
        if found is None or patient is None or patient.deleted:
            return
        _cp, link = found
        try:
            number = nhn_subject(patient.json())["value"]
        except AddressError as exc:
            report.errors.append(str(exc))
            return
        current = self.api.get(str(link["id"]))
        report.plans += 1
        if subject_number(current) != number:
            report.errors.append(
                f"NHN plan {link['id']} tied to Patient/{pid} is another person's plan: "
                "nothing recorded"
            )
            return
        with self.store.write(WriteContext.service()) as tx:
            # read again under the write: an export may have moved the link meanwhile
            found = _holder(tx.conn, pid)
            if found is None:
                return
            cp, link = found
            version = int(current["version"])
            if version <= (link.get("version") or 0):
                report.unchanged += 1
                return
            theirs = clinical(current.get("clinical_content"))
            changes = []
            if theirs != link.get("exported"):
                changes.append(text("nhn_plan.poll.zones_changed"))
            ours = _our_status(tx.conn, pid)
            if ours is not None and current.get("status") != ours:
                changes.append(text("nhn_plan.poll.status_changed", status=current.get("status")))
            cp.pop("meta", None)
            if not changes:
                # a comment, or our own write whose answer was lost: the version is ours to use
                set_link(cp, str(link["id"]), version, link.get("exported") or {})
                tx.update("CarePlan", cp["id"], cp)
                report.caught_up += 1
                return
            if link.get("noticed") == version:
                report.already_told += 1
                return
            what = "; ".join(changes)
            by = self._changed_by(current, int(link.get("version") or 0))
            conflict = text(
                "nhn_plan.poll.conflict",
                who=_who(by),
                time=_when(by, self.zone),
                version=by.get("version", version),
                what=what,
            )
            # the version and content we hold stay: the next export meets the 409 and
            # overwrites nothing until a person has reconciled
            set_link(
                cp,
                str(link["id"]),
                int(link.get("version") or 0),
                link.get("exported") or {},
                conflict,
                noticed=version,
            )
            tx.update("CarePlan", cp["id"], cp)
            self._tell(tx, pid, cp, conflict)
            report.changed += 1

    def _changed_by(self, current: dict[str, Any], known: int) -> dict[str, Any]:
        """The newest version after ``known`` that another system wrote: the current one, or,
        when we wrote the current one ourselves (a revoke that left their zones as they were),
        the newest of theirs in the plan's history."""
        ours = self.services.settings.edi2_source_system
        if (current.get("updated_by") or {}).get("system") != ours:
            return current
        try:
            history = self.api.history(str(current["id"]))
        except PlansApiError:
            return current
        theirs = [
            h
            for h in history
            if isinstance(h, dict)
            and int(h.get("version") or 0) > known
            and (h.get("updated_by") or {}).get("system") != ours
        ]
        return max(theirs, key=lambda h: int(h["version"])) if theirs else current

    def _tell(self, tx: WriteTx, pid: str, cp: dict[str, Any], conflict: str) -> None:
        """The care team's Task (one open at a time per patient: a later change is a note)."""
        rule = mapping()["poll"]
        now = format_instant(now_utc())
        description = conflict + " " + text("nhn_plan.poll.what_to_do")
        r = resource_table.c
        for (content,) in tx.conn.execute(
            select(r.content).where(r.res_type == "Task", r.patient_id == pid, r.deleted.is_(False))
        ):
            task = orjson.loads(content)
            codes = {c.get("code") for c in (task.get("code") or {}).get("coding", [])}
            if rule["task"] in codes and task.get("status") in OPEN_TASK:
                task.pop("meta", None)
                task["note"] = [*task.get("note", []), {"text": conflict, "time": now}]
                task["focus"] = {"reference": f"CarePlan/{cp['id']}"}
                task["lastModified"] = now
                tx.update("Task", task["id"], task)
                return
        title = text("nhn_plan.poll.title")
        tx.create(
            {
                "resourceType": "Task",
                "status": "requested",
                "intent": "order",
                "priority": rule["priority"],
                "code": {
                    "coding": [
                        {"system": TASK_CODE_SYSTEM, "code": rule["task"], "display": title}
                    ],
                    "text": title,
                },
                "description": description,
                "focus": {"reference": f"CarePlan/{cp['id']}"},
                "for": {"reference": f"Patient/{pid}"},
                "authoredOn": now,
                "lastModified": now,
            }
        )


def poll_nhn_plans(services: Any, api: PlansApiClient) -> PollReport:
    return PlansPoll(services, api).run()
