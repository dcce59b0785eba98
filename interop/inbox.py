"""The inbound message store: keep raw bytes first, acknowledge, process later.

A listener calls :func:`accept` (one short transaction: the bytes are durable when it returns)
and answers the sender; :class:`InboxProcessor` turns stored messages into data through the
ingest pipeline, off the acknowledgement path. Several processors may run at once: on
PostgreSQL rows are claimed with ``FOR UPDATE SKIP LOCKED``.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass

import orjson
from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError

from adapters.base import IngestMeta
from interop.fhir.dates import now_utc, to_micros
from interop.pipeline import IngestPipeline, IngestRejected
from interop.services import Services
from interop.store.repository import new_id
from interop.store.schema import inbound_message_table as inbox

log = logging.getLogger("interop.inbox")


@dataclass(frozen=True, slots=True)
class Accepted:
    id: str
    duplicate: bool
    previous_ack: bytes | None = None


def accept(
    services: Services,
    *,
    channel: str,
    sender: str,
    message_id: str,
    adapter: str,
    raw: bytes,
    ack: bytes | None = None,
) -> Accepted:
    """Store a raw message durably (one short transaction, with the acknowledgement that will
    be sent); a known (channel, sender, message id) is a duplicate."""
    row_id = new_id()
    try:
        with services.engine.begin() as conn:
            conn.execute(
                inbox.insert().values(
                    id=row_id,
                    channel=channel,
                    sender=sender[:255],
                    message_id=message_id[:255],
                    received=to_micros(now_utc()),
                    adapter=adapter,
                    raw=raw,
                    status="received",
                    attempts=0,
                    ack=ack,
                )
            )
    except IntegrityError:
        found = _find(services, channel, sender, message_id)
        if found is None:
            raise
        return found
    return Accepted(row_id, False)


def _find(services: Services, channel: str, sender: str, message_id: str) -> Accepted | None:
    with services.store.reader() as conn:
        row = conn.execute(
            select(inbox.c.id, inbox.c.ack).where(
                inbox.c.channel == channel,
                inbox.c.sender == sender[:255],
                inbox.c.message_id == message_id[:255],
            )
        ).first()
    return Accepted(row.id, True, row.ack) if row is not None else None


class InboxProcessor:
    """Runs stored messages through the pipeline (in the listener's process or a worker)."""

    def __init__(self, services: Services, pipeline: IngestPipeline | None = None) -> None:
        self.services = services
        self.pipeline = pipeline or IngestPipeline(services)
        self.wake = threading.Event()

    def _claim(self, limit: int) -> list[tuple[str, str, str, bytes]]:
        with self.services.store.write() as tx:
            stmt = (
                select(inbox.c.id, inbox.c.sender, inbox.c.adapter, inbox.c.raw)
                .where(inbox.c.status == "received")
                .order_by(inbox.c.received)
                .limit(limit)
            )
            if self.services.store.is_postgres:
                stmt = stmt.with_for_update(skip_locked=True)
            rows = tx.conn.execute(stmt).all()
            if rows:
                tx.conn.execute(
                    update(inbox)
                    .where(inbox.c.id.in_([r.id for r in rows]))
                    .values(status="processing", attempts=inbox.c.attempts + 1)
                )
        return [(r.id, r.sender, r.adapter, bytes(r.raw)) for r in rows]

    def process_pending(self, limit: int = 10) -> int:
        claimed = self._claim(limit)
        for row_id, sender, adapter, raw in claimed:
            meta = IngestMeta(
                source=sender,
                default_timezone=self.services.settings.timezone,
                received_at=now_utc(),
            )
            status, report, err = "processed", None, None
            try:
                rep = self.pipeline.ingest(adapter, raw, meta)
                report = orjson.dumps(rep.to_json())
            except IngestRejected as exc:
                status, report = "failed", orjson.dumps(exc.report.to_json())
                err = str(exc)[:2000]
            except Exception as exc:  # noqa: BLE001 - kept for an operator, never dropped
                log.exception("processing inbound message %s failed", row_id)
                status, err = "failed", f"{type(exc).__name__}: {exc}"[:2000]
            with self.services.engine.begin() as conn:
                conn.execute(
                    update(inbox)
                    .where(inbox.c.id == row_id)
                    .values(
                        status=status,
                        processed=to_micros(now_utc()),
                        report=report,
                        error=err,
                    )
                )
        return len(claimed)

    def recover(self) -> int:
        """Put rows left in 'processing' by a crashed process back in the queue."""
        with self.services.engine.begin() as conn:
            result = conn.execute(
                update(inbox).where(inbox.c.status == "processing").values(status="received")
            )
        return int(result.rowcount or 0)

    def run_forever(self, stop: threading.Event, idle_seconds: float = 0.5) -> None:
        while not stop.is_set():
            try:
                n = self.process_pending()
            except Exception:  # noqa: BLE001 - the loop must survive a database hiccup
                log.exception("inbox processing round failed")
                n = 0
            if n == 0:
                self.wake.wait(idle_seconds)
                self.wake.clear()
