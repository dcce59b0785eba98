"""Missing-measurement check: a plan says how long a code may go unmeasured (``maxGapHours`` on
its Goal); when that is exceeded, the follow-up centre gets a Task and the patient a Flag.

Idempotent: while a missing-measurement Task for the patient and code is open, no new one is
raised. Run by ``interop check-missing`` and periodically by ``interop worker``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import orjson
from sqlalchemy import func, select

from interop.care.deviation_episode import since_input
from interop.care.plans import PLAN_CATEGORY, SCHEDULE_URL
from interop.care.ports import CareServices
from interop.care.triage import MISSING_CODE, OPEN_TASK, TASK_CODE_SYSTEM, measurement_coding
from interop.fhir.dates import fhir_instant, format_instant, from_micros, now_utc, to_micros
from interop.store.context import WriteContext
from interop.store.schema import observation_table, resource_table
from interop.store.search_values import code_sets_holding
from interop.text import elapsed, local_time, measurement_name, plural, text


def _schedules(conn: Any) -> list[tuple[str, str, int, int]]:
    """(patient id, LOINC code, max gap hours, plan start µs) for every active plan's Goals."""
    out = []
    for (content,) in conn.execute(
        select(resource_table.c.content).where(
            resource_table.c.res_type == "CarePlan", resource_table.c.deleted.is_(False)
        )
    ):
        cp = orjson.loads(content)
        if cp.get("status") != "active" or not any(
            c.get("code") == PLAN_CATEGORY["code"]
            for cat in cp.get("category", [])
            for c in cat.get("coding", [])
        ):
            continue
        pid = cp["subject"]["reference"].split("/", 1)[1]
        start = fhir_instant(cp["period"]["start"]) if cp.get("period", {}).get("start") else 0
        ids = [g["reference"].split("/", 1)[1] for g in cp.get("goal", [])]
        for (gcontent,) in conn.execute(
            select(resource_table.c.content).where(
                resource_table.c.res_type == "Goal", resource_table.c.res_id.in_(ids)
            )
        ):
            goal = orjson.loads(gcontent)
            for ext in goal.get("extension", []):
                if ext["url"] == SCHEDULE_URL:
                    hours = next(
                        e["valueInteger"] for e in ext["extension"] if e["url"] == "maxGapHours"
                    )
                    code = goal["target"][0]["measure"]["coding"][0]["code"]
                    out.append((pid, code, int(hours), start))
    return out


def check_missing(services: CareServices, now: datetime | None = None) -> int:
    """Raise Tasks for overdue measurements; returns how many were raised."""
    now = now or now_utc()
    t_now = to_micros(now)
    raised = 0
    o = observation_table.c
    with services.store.write(WriteContext.service()) as tx:
        for pid, code, hours, start in _schedules(tx.conn):
            last = tx.conn.execute(
                select(func.max(o.effective)).where(
                    o.patient_id == pid,
                    o.code_set.in_(code_sets_holding(None, code)),
                    o.status.not_in(("entered-in-error", "cancelled")),
                )
            ).scalar()
            since = last if last is not None else start
            if t_now - since <= hours * 3_600_000_000:
                continue
            open_tasks = [
                t
                for (c,) in tx.conn.execute(
                    select(resource_table.c.content).where(
                        resource_table.c.res_type == "Task", resource_table.c.patient_id == pid
                    )
                )
                if (t := orjson.loads(c)).get("status") in OPEN_TASK
                and any(x.get("code") == MISSING_CODE for x in t.get("code", {}).get("coding", []))
                and any(i.get("valueCode") == code for i in t.get("input", []))
            ]
            if open_tasks:
                continue
            gap_hours = (t_now - since) / 3_600_000_000
            name = measurement_name(code)
            when = local_time(from_micros(since), services.settings.timezone)
            title = text("triage.missing.title", measurement=name)
            words = text(
                "triage.missing.description",
                measurement=name,
                time=when,
                gap=elapsed(gap_hours, beyond=hours),
                hours=plural(hours, "hour"),
            )
            stamp = format_instant(now)
            tx.create(
                {
                    "resourceType": "Task",
                    "status": "requested",
                    "intent": "order",
                    "priority": "routine",
                    "code": {
                        "coding": [
                            {
                                "system": TASK_CODE_SYSTEM,
                                "code": MISSING_CODE,
                                "display": "Manglende måling",
                            }
                        ],
                        "text": title,
                    },
                    "description": words,
                    "for": {"reference": f"Patient/{pid}"},
                    "authoredOn": stamp,
                    "lastModified": stamp,
                    # since the last reading (or the plan's start): the worklist's «Siden»
                    "input": since_input(
                        [{"type": {"text": "measurement code"}, "valueCode": code}],
                        format_instant(from_micros(since)),
                    ),
                }
            )
            tx.create(
                {
                    "resourceType": "Flag",
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
                    "code": {
                        "coding": [
                            *measurement_coding(code),
                            {"system": TASK_CODE_SYSTEM, "code": MISSING_CODE},
                        ],
                        "text": text("triage.missing.flag", measurement=name, time=when),
                    },
                    "subject": {"reference": f"Patient/{pid}"},
                    "period": {"start": stamp},
                }
            )
            raised += 1
    return raised
