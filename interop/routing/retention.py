"""Retention: remove delivered messages and processed inbound messages past their keep time.

Only rows whose story is over are removed:

* outbox rows in a final state — ``transport-acked`` for a message that expects no AppRec,
  ``apprec-ok`` and ``apprec-rejected``. Messages still queued or being sent, sent without a
  transport acknowledgement, waiting for their AppRec (``transport-acked`` with
  ``expects_apprec``), dead-lettered or past the AppRec deadline (``no-apprec``) stay: each
  still needs delivery or a person's attention.
* ``inbound_message`` rows that were ``processed``; ``received``/``processing`` rows are
  still to be done and ``failed`` ones wait for an operator. (A sender that re-sends a
  message after its row is gone gets it processed again; the ingest pipeline's own
  idempotency keeps that from duplicating data.)

Age is measured from ``created`` (outbox) and ``received`` (inbound). Deletes run in batches
so a large backlog never holds one long transaction.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from sqlalchemy import ColumnElement, Engine, and_, delete, func, or_, select

from interop.fhir.dates import now_utc, to_micros
from interop.store.schema import inbound_message_table, outbox_table

FINAL_WITHOUT_APPREC = "transport-acked"
FINAL_APPREC = ("apprec-ok", "apprec-rejected")
INBOUND_FINAL = "processed"
BATCH = 1000


def _outbox_final(cutoff: int) -> ColumnElement[bool]:
    o = outbox_table.c
    return and_(
        o.created < cutoff,
        or_(
            and_(o.status == FINAL_WITHOUT_APPREC, o.expects_apprec.is_(False)),
            o.status.in_(FINAL_APPREC),
        ),
    )


def _inbound_final(cutoff: int) -> ColumnElement[bool]:
    i = inbound_message_table.c
    return and_(i.received < cutoff, i.status == INBOUND_FINAL)


def _prune_table(engine: Engine, table: Any, condition: ColumnElement[bool], dry_run: bool) -> int:
    if dry_run:
        with engine.connect() as conn:
            return int(conn.execute(select(func.count()).where(condition)).scalar_one())
    total = 0
    while True:
        with engine.begin() as conn:
            ids = [r[0] for r in conn.execute(select(table.c.id).where(condition).limit(BATCH))]
            if not ids:
                return total
            # the condition again: a row that changed since it was selected stays
            result = conn.execute(delete(table).where(table.c.id.in_(ids), condition))
            total += int(result.rowcount or 0)
        if len(ids) < BATCH:
            return total


def prune(engine: Engine, older_than: timedelta, dry_run: bool = False) -> dict[str, int]:
    """Delete (or with ``dry_run`` count) final rows older than ``older_than``; returns
    ``{"outbox": n, "inbound_message": m}``."""
    if older_than < timedelta(0):
        raise ValueError("older_than must not be negative")
    cutoff = to_micros(now_utc() - older_than)
    return {
        "outbox": _prune_table(engine, outbox_table, _outbox_final(cutoff), dry_run),
        "inbound_message": _prune_table(
            engine, inbound_message_table, _inbound_final(cutoff), dry_run
        ),
    }
