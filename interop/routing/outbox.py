"""The outbox (*Guaranteed Delivery* with a *Dead Letter Channel*).

:func:`enqueue` writes a message in the caller's transaction, so the data and the message
that announces it commit together or not at all. :class:`Outbox` claims deliverable messages
for a worker: the oldest undelivered message of each destination only (per-destination order),
with ``FOR UPDATE SKIP LOCKED`` on PostgreSQL so several workers never take the same message,
and a lease so a crashed worker's messages return to the queue.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any

import orjson
from sqlalchemy import Connection, Engine, and_, exists, func, select, update
from sqlalchemy.orm import aliased

from interop.fhir.dates import now_utc, to_micros
from interop.store.repository import new_id
from interop.store.schema import counter_table, outbox_table

PENDING = ("queued", "sending")
FINAL_OK = ("transport-acked", "apprec-ok")
APPREC_DEADLINE_US = 96 * 3600 * 1_000_000


@dataclass(frozen=True, slots=True)
class OutboxMessage:
    id: str
    msg_id: str
    destination: str
    transport: str
    address: str
    content_type: str
    payload: bytes
    kind: str
    attempts: int
    expects_apprec: bool
    correlation_id: str | None


def _next_seq(conn: Connection) -> int:
    result = conn.execute(
        update(counter_table)
        .where(counter_table.c.name == "outbox")
        .values(value=counter_table.c.value + 1)
        .returning(counter_table.c.value)
    ).scalar()
    if result is None:
        conn.execute(counter_table.insert().values(name="outbox", value=1))
        return 1
    return int(result)


def enqueue(
    conn: Connection,
    *,
    event: str,
    kind: str,
    destination: str,
    transport: str,
    address: str,
    content_type: str,
    payload: bytes,
    msg_id: str | None = None,
    patient_id: str | None = None,
    focus: str | None = None,
    expects_apprec: bool = False,
    conversation_ref: str | None = None,
    correlation_id: str | None = None,
    reprocess_of: str | None = None,
) -> str:
    """Add a message to the outbox inside the caller's transaction; returns its row id."""
    if correlation_id is None:
        from interop.observability import correlation_id as cid_var

        correlation_id = cid_var.get()
    now = to_micros(now_utc())
    row_id = new_id()
    conn.execute(
        outbox_table.insert().values(
            id=row_id,
            seq=_next_seq(conn),
            msg_id=msg_id or new_id(),
            conversation_ref=conversation_ref,
            correlation_id=correlation_id,
            created=now,
            event=event,
            kind=kind,
            destination=destination,
            transport=transport,
            address=address,
            content_type=content_type,
            payload=payload,
            patient_id=patient_id,
            focus=focus,
            expects_apprec=expects_apprec,
            status="queued",
            attempts=0,
            next_attempt=now,
            reprocess_of=reprocess_of,
        )
    )
    return row_id


def backoff_seconds(attempt: int, *, base: float = 1.0, cap: float = 900.0) -> float:
    """Exponential backoff with full jitter (as tenacity's ``wait_random_exponential``)."""
    from tenacity import wait_random_exponential

    wait = wait_random_exponential(multiplier=base, max=cap)

    class _State:
        attempt_number = attempt

    return float(wait(_State()))  # type: ignore[arg-type]


class Outbox:
    def __init__(self, engine: Engine, *, max_attempts: int = 8, lease_seconds: int = 60) -> None:
        self.engine = engine
        self.max_attempts = max_attempts
        self.lease_us = lease_seconds * 1_000_000
        self.is_postgres = engine.dialect.name == "postgresql"

    def claim(self, limit: int = 20) -> list[OutboxMessage]:
        """Take up to ``limit`` deliverable messages (at most one per destination)."""
        now = to_micros(now_utc())
        o = outbox_table
        earlier = aliased(outbox_table)
        with self.engine.begin() as conn:
            # leases of crashed workers run out: their messages become deliverable again
            conn.execute(
                update(o)
                .where(o.c.status == "sending", o.c.lease_until < now)
                .values(status="queued", lease_until=None)
            )
            blocked = exists().where(
                and_(
                    earlier.c.destination == o.c.destination,
                    earlier.c.status.in_(PENDING),
                    earlier.c.seq < o.c.seq,
                )
            )
            stmt = (
                select(o)
                .where(o.c.status == "queued", o.c.next_attempt <= now, ~blocked)
                .order_by(o.c.seq)
                .limit(limit)
            )
            if self.is_postgres:
                stmt = stmt.with_for_update(skip_locked=True, of=o)
            rows = conn.execute(stmt).all()
            seen: set[str] = set()
            mine = []
            for r in rows:
                if r.destination in seen:
                    continue
                seen.add(r.destination)
                mine.append(r)
            if mine:
                conn.execute(
                    update(o)
                    .where(o.c.id.in_([r.id for r in mine]))
                    .values(
                        status="sending", lease_until=now + self.lease_us, attempts=o.c.attempts + 1
                    )
                )
        return [
            OutboxMessage(
                r.id,
                r.msg_id,
                r.destination,
                r.transport,
                r.address,
                r.content_type,
                bytes(r.payload),
                r.kind,
                r.attempts + 1,
                r.expects_apprec,
                r.correlation_id,
            )
            for r in mine
        ]

    def delivered(self, message: OutboxMessage, *, acked: bool) -> None:
        """The transport took it; ``acked`` when the receiver confirmed (HTTP 2xx, EDI status)."""
        now = to_micros(now_utc())
        status = "transport-acked" if acked else "sent"
        if message.expects_apprec:
            status = "sent" if not acked else "transport-acked"
        with self.engine.begin() as conn:
            conn.execute(
                update(outbox_table)
                .where(outbox_table.c.id == message.id, outbox_table.c.status == "sending")
                .values(
                    status=status,
                    sent_at=now,
                    acked_at=now if acked else None,
                    lease_until=None,
                    last_error=None,
                )
            )

    def failed(self, message: OutboxMessage, error: str, *, permanent: bool) -> str:
        """Record a failed attempt: retry later with backoff, or dead-letter it."""
        now = to_micros(now_utc())
        dead = permanent or message.attempts >= self.max_attempts
        delay = backoff_seconds(message.attempts)
        with self.engine.begin() as conn:
            conn.execute(
                update(outbox_table)
                .where(outbox_table.c.id == message.id, outbox_table.c.status == "sending")
                .values(
                    status="dead" if dead else "queued",
                    next_attempt=now + int(delay * 1_000_000) + random.randint(0, 1000),
                    lease_until=None,
                    last_error=error[:2000],
                )
            )
        return "dead" if dead else "queued"

    def apprec(self, msg_id: str, status: str, errors: list[dict[str, Any]]) -> bool:
        """Close a message with the receiver's AppRec (status ``ok`` or ``rejected``)."""
        with self.engine.begin() as conn:
            result = conn.execute(
                update(outbox_table)
                .where(outbox_table.c.msg_id == msg_id)
                .values(
                    status="apprec-ok" if status == "ok" else "apprec-rejected",
                    apprec_status=status,
                    apprec_errors=orjson.dumps(errors) if errors else None,
                )
            )
        return bool(result.rowcount)

    def expire_apprecs(self) -> int:
        """Messages sent more than 96 hours ago with no AppRec: mark them for alerting."""
        cutoff = to_micros(now_utc()) - APPREC_DEADLINE_US
        with self.engine.begin() as conn:
            result = conn.execute(
                update(outbox_table)
                .where(
                    outbox_table.c.expects_apprec.is_(True),
                    outbox_table.c.status.in_(("sent", "transport-acked")),
                    outbox_table.c.sent_at < cutoff,
                )
                .values(status="no-apprec")
            )
        return int(result.rowcount or 0)

    def reprocess(self, row_id: str, *, destination: dict[str, str] | None = None) -> str:
        """Queue a message again as a new outbox row linked to the original (``reprocess_of``),
        to the same destination or to the one given. It gets a new message id — a receiver
        ignores a MsgId it has seen — and for KITH XML the MsgId inside the payload is replaced
        to match."""
        with self.engine.begin() as conn:
            row = conn.execute(select(outbox_table).where(outbox_table.c.id == row_id)).first()
            if row is None:
                raise KeyError(row_id)
            dest = destination or {}
            msg_id = new_id()
            payload = bytes(row.payload)
            if row.content_type.endswith("xml") and row.msg_id.encode() in payload:
                payload = payload.replace(row.msg_id.encode(), msg_id.encode())
            return enqueue(
                conn,
                event=row.event,
                kind=row.kind,
                destination=dest.get("destination", row.destination),
                transport=dest.get("transport", row.transport),
                address=dest.get("address", row.address),
                content_type=row.content_type,
                payload=payload,
                msg_id=msg_id,
                patient_id=row.patient_id,
                focus=row.focus,
                expects_apprec=row.expects_apprec,
                conversation_ref=row.conversation_ref,
                correlation_id=row.correlation_id,
                reprocess_of=row.id,
            )

    def depth(self) -> list[tuple[str, int, int | None]]:
        """(destination, undelivered count, oldest created µs) for metrics."""
        o = outbox_table
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(o.c.destination, func.count(), func.min(o.c.created))
                .where(o.c.status.in_(PENDING))
                .group_by(o.c.destination)
            ).all()
        return [(r[0], int(r[1]), r[2]) for r in rows]


def collect_metrics(services: object) -> None:
    """Fill the outbox gauges before a Prometheus scrape."""
    from interop.observability import (
        APPREC_TIMEOUTS,
        DEAD_LETTERS,
        OUTBOX_DEPTH,
        OUTBOX_OLDEST_SECONDS,
    )

    engine: Engine = services.engine  # type: ignore[attr-defined]
    now = to_micros(now_utc())
    OUTBOX_DEPTH.clear()
    OUTBOX_OLDEST_SECONDS.clear()
    for destination, count, oldest in Outbox(engine).depth():
        OUTBOX_DEPTH.labels(destination).set(count)
        if oldest is not None:
            OUTBOX_OLDEST_SECONDS.labels(destination).set((now - oldest) / 1e6)
    with engine.connect() as conn:
        counts: dict[str, int] = dict(
            conn.execute(
                select(outbox_table.c.status, func.count())
                .where(outbox_table.c.status.in_(("dead", "no-apprec")))
                .group_by(outbox_table.c.status)
            ).all()
        )
    DEAD_LETTERS.set(counts.get("dead", 0))
    APPREC_TIMEOUTS.set(counts.get("no-apprec", 0))
