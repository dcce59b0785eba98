"""The inbound message store: keep raw bytes first, acknowledge, process later.

A listener calls :func:`accept` (one short transaction: the bytes are durable when it returns)
and answers the sender; an asyncio listener hands its messages to a :class:`GroupAcceptor`,
which stores those arriving together in one transaction. :class:`InboxProcessor` turns stored
messages into data through the ingest pipeline, off the acknowledgement path; its loop's
writes are background writes, which on SQLite give way to the acknowledgement path's (see
:mod:`interop.store.write_lock`). Several processors may run at once: on
PostgreSQL rows are claimed with ``FOR UPDATE SKIP LOCKED``, and a claim carries a lease so
that only a crashed processor's rows are taken back (see :class:`InboxProcessor`).
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
from collections.abc import Sequence
from concurrent.futures import Future
from dataclasses import dataclass, replace
from typing import Any

import orjson
from sqlalchemy import ColumnElement, and_, or_, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.sql.dml import ReturningInsert

from adapters.base import IngestMeta
from adapters.hl7v2 import split_message_header
from interop.fhir.dates import now_utc, to_micros
from interop.ingest.mllp_senders import (
    MllpSender,
    MllpSenders,
    SenderNotListed,
    SendersFileError,
    load_senders,
)
from interop.ingest.pipeline import IngestItem, IngestPipeline, IngestRejected, IngestReport
from interop.messaging.inbound import KITH_ADAPTER
from interop.metrics import correlation_id
from interop.resend import conflict_key, digest_of, keep_conflict
from interop.services import Services
from interop.store.context import Door, WriteContext
from interop.store.repository import new_id
from interop.store.schema import inbound_message_table as inbox
from interop.store.write_lock import background_writes

log = logging.getLogger("interop.ingest.inbox")

NOT_PROCESSED_HERE = (KITH_ADAPTER,)
"""Adapters of rows other inboxes store already processed (never run through the pipeline)."""

MLLP_WRITE = WriteContext(None, Door.MLLP)
"""HL7 v2 messages taken over MLLP are processed by the service (no actor yet)."""


@dataclass(frozen=True, slots=True)
class Accepted:
    id: str
    duplicate: bool
    previous_ack: bytes | None = None
    conflict: bool = False
    """Another message with this (channel, sender, message id) was stored before: this one
    is kept with status ``conflict`` and never processed (see :mod:`interop.resend`)."""


@dataclass(frozen=True, slots=True)
class Incoming:
    """A message to store (see :func:`accept_many`)."""

    channel: str
    sender: str
    message_id: str
    adapter: str
    raw: bytes
    ack: bytes | None = None
    """the acknowledgement that will be sent (re-sent as is for a duplicate)"""
    conflict_ack: bytes | None = None
    """the refusal that will be sent instead when the message reuses another's id"""


_UNIQUE_KEY = (inbox.c.channel, inbox.c.sender, inbox.c.message_id)
_insert_new: dict[str, ReturningInsert[tuple[str]]] = {
    # one statement for the batch; a known (channel, sender, message id) inserts nothing and
    # returns no id: that marks a duplicate
    "sqlite": sqlite_insert(inbox)
    .on_conflict_do_nothing(index_elements=_UNIQUE_KEY)
    .returning(inbox.c.id),
    "postgresql": pg_insert(inbox)
    .on_conflict_do_nothing(index_elements=_UNIQUE_KEY)
    .returning(inbox.c.id),
}


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
    return accept_many(services, [Incoming(channel, sender, message_id, adapter, raw, ack)])[0]


def accept_many(services: Services, items: Sequence[Incoming]) -> list[Accepted]:
    """Store raw messages durably, all in one transaction (committed when this returns); each
    known (channel, sender, message id), also one met earlier in ``items``, is a duplicate and
    comes back with the row that was stored first and its acknowledgement — when it says the
    same (:func:`interop.resend.digest_of`). One that says something else is another message
    reusing the id: it is kept with status ``conflict`` (never processed) and comes back with
    ``conflict`` set, or, when that very message was kept so before, as a duplicate of that
    row with the refusal it was given."""
    received = to_micros(now_utc())
    ids = [new_id() for _ in items]
    keys = [(it.channel, it.sender[:255], it.message_id[:255]) for it in items]
    rows = [
        {
            "id": row_id,
            "channel": channel,
            "sender": sender,
            "message_id": message_id,
            "received": received,
            "adapter": it.adapter,
            "raw": it.raw,
            "status": "received",
            "attempts": 0,
            "ack": it.ack,
        }
        for row_id, (channel, sender, message_id), it in zip(ids, keys, items, strict=True)
    ]
    stmt = _insert_new[services.engine.dialect.name]
    out: list[Accepted] = []
    with services.engine.begin() as conn:
        inserted = set(conn.execute(stmt, rows).scalars())
        first: dict[tuple[str, str, str], tuple[str, bytes | None, str, bytes]] = {}
        """key → (row id, ack, adapter, raw) of the row stored under it"""
        for row_id, key, it in zip(ids, keys, items, strict=True):
            if row_id in inserted:
                first[key] = (row_id, it.ack, it.adapter, it.raw)
                out.append(Accepted(row_id, False))
                continue
            if key not in first:
                channel, sender, message_id = key
                hit = conn.execute(
                    select(inbox.c.id, inbox.c.ack, inbox.c.adapter, inbox.c.raw).where(
                        inbox.c.channel == channel,
                        inbox.c.sender == sender,
                        inbox.c.message_id == message_id,
                    )
                ).first()
                if hit is None:  # cannot happen: the row we conflicted with is gone
                    raise RuntimeError(f"inbound message {key} neither stored nor found")
                first[key] = (hit.id, hit.ack, hit.adapter, bytes(hit.raw))
            held_id, held_ack, held_adapter, held_raw = first[key]
            # compared only for a known key (a digest costs nothing on the common path)
            if digest_of(it.adapter, it.raw) == digest_of(held_adapter, held_raw):
                out.append(Accepted(held_id, True, held_ack))
                continue
            out.append(_conflicting(conn, key, it))
    return out


def _conflicting(conn: Any, key: tuple[str, str, str], it: Incoming) -> Accepted:
    """Keep a message that reuses another's id for an operator (or find it kept before)."""
    channel, sender, message_id = key
    kept = keep_conflict(
        conn,
        channel=channel,
        sender=sender,
        message_id=message_id,
        adapter=it.adapter,
        raw=it.raw,
        ack=it.conflict_ack,
    )
    if kept is not None:
        log.warning(
            "inbound message %s from %s reuses the id of another message: kept as %s, "
            "not processed",
            message_id,
            sender,
            kept,
        )
        return Accepted(kept, False, None, conflict=True)
    hit = conn.execute(
        select(inbox.c.id, inbox.c.ack).where(
            inbox.c.channel == channel,
            inbox.c.sender == sender,
            inbox.c.message_id == conflict_key(message_id, digest_of(it.adapter, it.raw)),
        )
    ).one()
    return Accepted(hit.id, True, hit.ack, conflict=True)


class GroupAcceptor:
    """Stores messages for an asyncio listener (:meth:`accept`) from one writer thread.

    The messages that arrive while a transaction is being written are stored together in the
    next one (group commit): under concurrent senders one commit acknowledges many messages,
    and a lone sender pays for one short transaction and two thread hand-overs. Each
    :meth:`accept` returns only after the transaction holding its message has committed. If a
    shared transaction fails, its messages are stored one by one, so one message's failure
    never becomes another's.
    """

    def __init__(self, services: Services, *, max_batch: int = 100) -> None:
        self.services = services
        self.max_batch = max_batch
        self._queue: queue.SimpleQueue[tuple[Incoming, Future[Accepted]] | None] = (
            queue.SimpleQueue()
        )
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._closed = False

    def submit(self, item: Incoming) -> Future[Accepted]:
        fut: Future[Accepted] = Future()
        with self._lock:
            if self._closed:
                raise RuntimeError("GroupAcceptor is closed")
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, daemon=True, name="inbox-accept")
                self._thread.start()
            self._queue.put((item, fut))
        return fut

    async def accept(self, item: Incoming) -> Accepted:
        return await asyncio.wrap_future(self.submit(item))

    def close(self, timeout: float = 10) -> None:
        """Store what was submitted, then stop the writer thread."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            thread = self._thread
            if thread is not None:
                self._queue.put(None)
        if thread is not None:
            thread.join(timeout)

    def _run(self) -> None:
        stopping = False
        while not stopping:
            first = self._queue.get()
            if first is None:
                break
            batch = [first]
            while len(batch) < self.max_batch:
                try:
                    nxt = self._queue.get_nowait()
                except queue.Empty:
                    break
                if nxt is None:
                    stopping = True
                    break
                batch.append(nxt)
            # a message whose sender went away before it was written is not stored: it was
            # never acknowledged, so the sender sends it again
            self._store([b for b in batch if b[1].set_running_or_notify_cancel()])

    def _store(self, batch: list[tuple[Incoming, Future[Accepted]]]) -> None:
        if not batch:
            return
        try:
            results = accept_many(self.services, [item for item, _ in batch])
        except Exception as exc:  # noqa: BLE001 - retried one by one, or handed to the caller
            if len(batch) > 1:
                for one in batch:
                    self._store([one])
            else:
                batch[0][1].set_exception(exc)
            return
        for (_, fut), result in zip(batch, results, strict=True):
            fut.set_result(result)


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

    Each message is run in the name of its sender as the MLLP senders file lists it (a
    vendor's limits, or none for the follow-up centre's own engine); a message whose sender
    is no longer listed fails without being run, and while the file is unreadable nothing is
    claimed (see :mod:`interop.ingest.mllp_senders`).
    """

    def __init__(
        self,
        services: Services,
        pipeline: IngestPipeline | None = None,
        *,
        lease_seconds: float | None = None,
        max_attempts: int = 5,
        batch: bool | None = None,
    ) -> None:
        self.services = services
        self.pipeline = pipeline or IngestPipeline(services)
        self.batch = services.store.is_postgres if batch is None else batch
        """Process the messages of a claim in one transaction. Default on PostgreSQL, where
        a message costs round trips the batch shares; off on SQLite, where a background
        transaction holds the one write lock an MLLP acknowledgement may be waiting for."""
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
        with self.services.store.write(MLLP_WRITE) as tx:
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
            done = conn.execute(update(inbox).where(_still_ours(item)).values(lease_until=lease))
        if not done.rowcount:
            log.warning(
                "inbound message %s: lease lost, left to the processor that has it", item.id
            )
            return None
        return replace(item, lease_until=lease)

    def _meta(self, held: Claimed, sender: MllpSender) -> IngestMeta:
        return IngestMeta(
            source=sender.orgnr if sender.vendor is not None and sender.orgnr else _source(held),
            default_timezone=self.services.settings.timezone,
            received_at=now_utc(),
        )

    @staticmethod
    def _not_listed(held: Claimed) -> SenderNotListed:
        return SenderNotListed(
            f"avsender {held.sender} er ikke (lenger) registrert for MLLP; meldingen er ikke behandlet"
        )

    def process(self, item: Claimed, senders: MllpSenders | None = None) -> bool:
        """Run one claimed message through the pipeline and record the outcome; False when
        the row was no longer ours (nothing was done or recorded)."""
        held = self._renew(item)
        if held is None:
            return False
        if senders is None:
            senders = load_senders(self.services.settings)
        sender = senders.get(_source(held))
        if sender is None:
            return self._settle([(held, self._not_listed(held))]) == 1
        # everything this message causes (outbox messages, log lines) carries its id
        token = correlation_id.set(f"inbound:{held.id}")
        try:
            outcome: IngestReport | Exception = self.pipeline.ingest(
                held.adapter, held.raw, self._meta(held, sender), vendor=sender.vendor
            )
        except Exception as exc:  # noqa: BLE001 - recorded below, never dropped
            outcome = exc
        finally:
            correlation_id.reset(token)
        return self._settle([(held, outcome)]) == 1

    def process_batch(self, items: list[Claimed], senders: MllpSenders | None = None) -> int:
        """Run claimed messages through the pipeline in one transaction
        (:meth:`IngestPipeline.ingest_many`: each gets the outcome it would get alone) and
        record the outcomes; returns how many rows were still ours."""
        held = [h for h in (self._renew(i) for i in items) if h is not None]
        if not held:
            return 0
        if senders is None:
            senders = load_senders(self.services.settings)
        listed = [(h, s) for h in held if (s := senders.get(_source(h))) is not None]
        results: list[tuple[Claimed, IngestReport | Exception]] = [
            (h, self._not_listed(h)) for h in held if senders.get(_source(h)) is None
        ]
        if listed:
            outcomes = self.pipeline.ingest_many(
                [
                    IngestItem(
                        h.adapter,
                        h.raw,
                        self._meta(h, s),
                        correlation_id=f"inbound:{h.id}",
                        vendor=s.vendor,
                    )
                    for h, s in listed
                ]
            )
            results += list(zip([h for h, _ in listed], outcomes, strict=True))
        return self._settle(results)

    def _settle(self, results: list[tuple[Claimed, IngestReport | Exception]]) -> int:
        rows = []
        for held, outcome in results:
            status, report, err = "processed", None, None
            if isinstance(outcome, IngestRejected):
                status, report = "failed", orjson.dumps(outcome.report.to_json())
                err = str(outcome)[:2000]
            elif isinstance(outcome, SenderNotListed):
                log.warning("inbound message %s not processed: %s", held.id, outcome)
                status, err = "failed", str(outcome)[:2000]
            elif isinstance(outcome, Exception):  # kept for an operator, never dropped
                log.error(
                    "processing inbound message %s failed",
                    held.id,
                    exc_info=(type(outcome), outcome, outcome.__traceback__),
                )
                status, err = "failed", f"{type(outcome).__name__}: {outcome}"[:2000]
            else:
                report = orjson.dumps(outcome.to_json())
            rows.append((held, status, report, err))
        settled = 0
        with self.services.engine.begin() as conn:
            for held, status, report, err in rows:
                done = conn.execute(
                    update(inbox)
                    .where(_still_ours(held))
                    .values(
                        status=status,
                        processed=to_micros(now_utc()),
                        report=report,
                        error=err,
                        lease_until=None,
                    )
                )
                if done.rowcount:
                    settled += 1
                else:
                    # the lease ran out while the pipeline worked and another processor took
                    # the row back; the pipeline is an idempotent receiver, so its second run
                    # changes nothing
                    log.warning("inbound message %s: lease ran out during processing", held.id)
        return settled

    def process_pending(self, limit: int = 10) -> int:
        try:
            senders = load_senders(self.services.settings)
        except SendersFileError as exc:
            log.error("MLLP senders file: %s; nothing is processed until it is fixed", exc)
            return 0
        claimed = self._claim(limit)
        if self.batch and len(claimed) > 1:
            self.process_batch(claimed, senders)
        else:
            for item in claimed:
                self.process(item, senders)
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
        """Process until ``stop`` is set. The loop's writes are background writes: on SQLite
        they give way to the process's other writers (an MLLP listener storing a message before
        it acknowledges it), see :mod:`interop.store.write_lock`."""
        with background_writes():
            self._run(stop, idle_seconds)

    def _run(self, stop: threading.Event, idle_seconds: float) -> None:
        while not stop.is_set():
            try:
                n = self.process_pending()
            except Exception:  # noqa: BLE001 - the loop must survive a database hiccup
                log.exception("inbox processing round failed")
                n = 0
            if n == 0:
                self.wake.wait(idle_seconds)
                self.wake.clear()


def _source(held: Claimed) -> str:
    """The source name an HL7 v2 message is ingested under: MSH-3.1|MSH-4.1, as before the
    inbox named senders by their full MSH-3 and MSH-4 (a sender's local patient ids and its
    processed-message records are scoped by it)."""
    if held.adapter == "hl7v2":
        try:
            return split_message_header(held.raw).sender
        except ValueError:
            pass
    return held.sender


def _still_ours(item: Claimed) -> ColumnElement[bool]:
    """The claimed row, as long as this processor's lease on it holds."""
    return and_(
        inbox.c.id == item.id,
        inbox.c.status == "processing",
        inbox.c.lease_until == item.lease_until,
    )
