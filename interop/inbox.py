"""The inbound message store: keep raw bytes first, acknowledge, process later.

A listener calls :func:`accept` (one short transaction: the bytes are durable when it returns)
and answers the sender; :class:`InboxProcessor` turns stored messages into data through the
ingest pipeline, off the acknowledgement path. Several processors may run at once: on
PostgreSQL rows are claimed with ``FOR UPDATE SKIP LOCKED``, and a claim carries a lease so
that only a crashed processor's rows are taken back (see :class:`InboxProcessor`).
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, replace

import orjson
from sqlalchemy import ColumnElement, and_, or_, select, update
from sqlalchemy.exc import IntegrityError

from adapters.base import IngestMeta
from interop.fhir.dates import now_utc, to_micros
from interop.messaging.inbound import KITH_ADAPTER
from interop.observability import correlation_id
from interop.pipeline import IngestPipeline, IngestRejected
from interop.services import Services
from interop.store.repository import new_id
from interop.store.schema import inbound_message_table as inbox

log = logging.getLogger("interop.inbox")

NOT_PROCESSED_HERE = (KITH_ADAPTER,)
"""Adapters of rows other inboxes store already processed (never run through the pipeline)."""


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


@dataclass(frozen=True, slots=True)
class Claimed:
    """A stored message a processor holds (status ``processing``) until ``lease_until``."""

    id: str
    sender: str
    adapter: str
    raw: bytes
    attempts: int
    lease_until: int
    """The claim's lease (µs): the row is only renewed and settled while it still carries this
    lease, so a processor whose lease ran out cannot touch a row another one took back."""


class InboxProcessor:
    """Runs stored messages through the pipeline (in the listener's process or a worker).

    A claimed row is ``processing`` with a lease (``lease_until``); the processor renews the
    lease before it starts on a row when less than half of it is left. A ``processing`` row
    whose lease ran out belongs to a processor that died: any processor takes it back (at
    start with :meth:`recover`, and in every claim). One under a live lease is never touched,
    so several workers, and a worker that restarts, never process a message twice at once.
    A row taken back ``max_attempts`` times is marked failed rather than tried again (a
    message that kills its processor must not take every worker down in turn).

    Only rows written by :func:`accept` are processed: KITH messages (adapter ``kith``) are
    stored already processed/failed by the KITH inbox and are excluded by adapter as well.
    """

    def __init__(
        self,
        services: Services,
        pipeline: IngestPipeline | None = None,
        *,
        lease_seconds: float | None = None,
        max_attempts: int = 5,
    ) -> None:
        self.services = services
        self.pipeline = pipeline or IngestPipeline(services)
        self.wake = threading.Event()
        if lease_seconds is None:
            lease_seconds = services.settings.inbox_lease_seconds
        self.lease_us = max(1, int(lease_seconds * 1_000_000))
        self.max_attempts = max_attempts

    @staticmethod
    def _expired(now: int) -> ColumnElement[bool]:
        """``processing`` rows whose holder is gone (rows from before leases have none)."""
        return and_(
            inbox.c.status == "processing",
            or_(inbox.c.lease_until.is_(None), inbox.c.lease_until < now),
            inbox.c.adapter.not_in(NOT_PROCESSED_HERE),
        )

    def _claim(self, limit: int) -> list[Claimed]:
        now = to_micros(now_utc())
        lease = now + self.lease_us
        with self.services.store.write() as tx:
            stmt = (
                select(
                    inbox.c.id,
                    inbox.c.sender,
                    inbox.c.adapter,
                    inbox.c.raw,
                    inbox.c.status,
                    inbox.c.attempts,
                )
                .where(
                    or_(
                        and_(
                            inbox.c.status == "received",
                            inbox.c.adapter.not_in(NOT_PROCESSED_HERE),
                        ),
                        self._expired(now),
                    )
                )
                .order_by(inbox.c.received)
                .limit(limit)
            )
            if self.services.store.is_postgres:
                stmt = stmt.with_for_update(skip_locked=True)
            rows = tx.conn.execute(stmt).all()
            given_up = [
                r.id for r in rows if r.status == "processing" and r.attempts >= self.max_attempts
            ]
            taken = [r for r in rows if r.id not in given_up]
            if given_up:
                log.error(
                    "inbound message(s) %s given up after %d attempts", given_up, self.max_attempts
                )
                tx.conn.execute(
                    update(inbox)
                    .where(inbox.c.id.in_(given_up))
                    .values(
                        status="failed",
                        processed=now,
                        lease_until=None,
                        error=f"given up: processing was interrupted {self.max_attempts} times "
                        "(the process died or its lease ran out)",
                    )
                )
            if taken:
                tx.conn.execute(
                    update(inbox)
                    .where(inbox.c.id.in_([r.id for r in taken]))
                    .values(status="processing", attempts=inbox.c.attempts + 1, lease_until=lease)
                )
        return [
            Claimed(r.id, r.sender, r.adapter, bytes(r.raw), r.attempts + 1, lease) for r in taken
        ]

    def _renew(self, item: Claimed) -> Claimed | None:
        """The row with a fresh lease when less than half of it is left; None when it is no
        longer ours (the lease ran out and another processor took it back)."""
        now = to_micros(now_utc())
        if item.lease_until - now > self.lease_us // 2:
            return item
        lease = now + self.lease_us
        with self.services.engine.begin() as conn:
            done = conn.execute(
                update(inbox)
                .where(
                    inbox.c.id == item.id,
                    inbox.c.status == "processing",
                    inbox.c.lease_until == item.lease_until,
                )
                .values(lease_until=lease)
            )
        if not done.rowcount:
            log.warning(
                "inbound message %s: lease lost, left to the processor that has it", item.id
            )
            return None
        return replace(item, lease_until=lease)

    def process(self, item: Claimed) -> bool:
        """Run one claimed message through the pipeline and record the outcome; False when
        the row was no longer ours (nothing was done or recorded)."""
        held = self._renew(item)
        if held is None:
            return False
        meta = IngestMeta(
            source=held.sender,
            default_timezone=self.services.settings.timezone,
            received_at=now_utc(),
        )
        status, report, err = "processed", None, None
        # everything this message causes (outbox messages, log lines) carries its id
        token = correlation_id.set(f"inbound:{held.id}")
        try:
            rep = self.pipeline.ingest(held.adapter, held.raw, meta)
            report = orjson.dumps(rep.to_json())
        except IngestRejected as exc:
            status, report = "failed", orjson.dumps(exc.report.to_json())
            err = str(exc)[:2000]
        except Exception as exc:  # noqa: BLE001 - kept for an operator, never dropped
            log.exception("processing inbound message %s failed", held.id)
            status, err = "failed", f"{type(exc).__name__}: {exc}"[:2000]
        finally:
            correlation_id.reset(token)
        with self.services.engine.begin() as conn:
            done = conn.execute(
                update(inbox)
                .where(
                    inbox.c.id == held.id,
                    inbox.c.status == "processing",
                    inbox.c.lease_until == held.lease_until,
                )
                .values(
                    status=status,
                    processed=to_micros(now_utc()),
                    report=report,
                    error=err,
                    lease_until=None,
                )
            )
        if not done.rowcount:
            # the lease ran out while the pipeline worked and another processor took the row
            # back; the pipeline is an idempotent receiver, so its second run changes nothing
            log.warning("inbound message %s: lease ran out during processing", held.id)
            return False
        return True

    def process_pending(self, limit: int = 10) -> int:
        claimed = self._claim(limit)
        for item in claimed:
            self.process(item)
        return len(claimed)

    def recover(self) -> int:
        """Put rows left in 'processing' by a crashed process back in the queue: only those
        whose lease ran out; a row another live processor holds is left alone."""
        now = to_micros(now_utc())
        with self.services.engine.begin() as conn:
            result = conn.execute(
                update(inbox).where(self._expired(now)).values(status="received", lease_until=None)
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
