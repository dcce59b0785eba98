"""The periodic status report to the GP (PLO *Statusrapport*, type 2): for every patient with
measurements in the period and no status report sent within it (``INTEROP_STATUS_REPORT_DAYS``,
default 7; 0 turns it off). Run by the worker every hour and by ``interop send-status``.

Each patient is handled in its own transaction, holding a lock on the Patient row (PostgreSQL)
while it checks for a recent report and writes the new one, so several workers never send the
same week's report twice.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import select

from interop.fhir.dates import to_micros
from interop.routing.rules import Event, router_for
from interop.store.context import WriteContext
from interop.store.schema import observation_table, outbox_table, resource_table

EVENT = "status.periodic"


def due_patients(services: Any, days: int, now: datetime) -> list[str]:
    since = to_micros(now - timedelta(days=days))
    with services.store.reader() as conn:
        measured = {
            r[0]
            for r in conn.execute(
                select(observation_table.c.patient_id)
                .where(observation_table.c.effective >= since, observation_table.c.is_primary)
                .distinct()
            )
        }
        reported = {
            r[0]
            for r in conn.execute(
                select(outbox_table.c.patient_id)
                .where(outbox_table.c.event == EVENT, outbox_table.c.created >= since)
                .distinct()
            )
        }
    return sorted(p for p in measured - reported if p)


def send_periodic_status(
    services: Any,
    *,
    days: int | None = None,
    patients: list[str] | None = None,
    force: bool = False,
    now: datetime | None = None,
) -> dict[str, int]:
    """Route ``status.periodic`` for each due patient; returns counts."""
    days = services.settings.status_report_days if days is None else days
    if days <= 0 and not force:
        return {"sent": 0, "skipped": 0}
    now = now or datetime.now(UTC)
    window = max(days, 1)
    candidates = patients if patients is not None else due_patients(services, window, now)
    since = to_micros(now - timedelta(days=window))
    router = router_for(services)
    counts = {"sent": 0, "skipped": 0, "unroutable": 0}
    for pid in candidates:
        with services.store.write(WriteContext.service()) as tx:
            lock = select(resource_table.c.version).where(
                resource_table.c.res_type == "Patient", resource_table.c.res_id == pid
            )
            if services.store.is_postgres:
                lock = lock.with_for_update()
            if tx.conn.execute(lock).first() is None:
                counts["skipped"] += 1
                continue
            recent = tx.conn.execute(
                select(outbox_table.c.id).where(
                    outbox_table.c.patient_id == pid,
                    outbox_table.c.event == EVENT,
                    outbox_table.c.created >= since,
                    outbox_table.c.status != "dead",
                )
            ).first()
            if recent is not None and not force:
                counts["skipped"] += 1
                continue
            rows = router.route(tx.conn, Event(EVENT, pid, f"Patient/{pid}"))
            dead = tx.conn.execute(
                select(outbox_table.c.id).where(
                    outbox_table.c.id.in_(rows), outbox_table.c.status == "dead"
                )
            ).all()
            counts["unroutable" if dead else "sent"] += 1
    return counts
