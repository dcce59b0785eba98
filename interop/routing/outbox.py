"""The outbox (*Guaranteed Delivery* with a *Dead Letter Channel*).

:func:`enqueue` writes a message in the caller's transaction, so the data and the message
that announces it commit together or not at all. :class:`Outbox` claims deliverable messages
for a worker: for each destination whose oldest undelivered message is due, that message and
the ones right after it, to be sent one at a time in order (per-destination order); with
``FOR UPDATE SKIP LOCKED`` on PostgreSQL so several workers never take the same message, and a
lease so a crashed worker's messages return to the queue.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any

import orjson
from sqlalchemy import Connection, Engine, and_, func, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from interop.fhir.dates import now_utc, to_micros
from interop.metrics import (
    APPREC_TIMEOUTS,
    DEAD_LETTERS,
    OUTBOX_DEPTH,
    OUTBOX_OLDEST_SECONDS,
)
from interop.metrics import correlation_id as cid_var
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
    lease_until: int | None = None
    """The claim's lease (µs); recording an outcome only touches the row while it still
    carries this lease, so a worker whose lease ran out cannot change another's claim."""


def _next_seq(conn: Connection) -> int:
    """The next outbox sequence number; the counter row stays locked until the caller's
    transaction ends, so sequence order is commit order."""
    for _ in range(2):
        result = conn.execute(
            update(counter_table)
            .where(counter_table.c.name == "outbox")
            .values(value=counter_table.c.value + 1)
            .returning(counter_table.c.value)
        ).scalar()
        if result is not None:
            return int(result)
        # the very first message: create the counter. Several first messages may race here
        # (a plain INSERT made all but one fail on the primary key); ON CONFLICT waits for the
        # winner's commit and then the UPDATE above sees its row.
        insert_ = pg_insert if conn.dialect.name == "postgresql" else sqlite_insert
        conn.execute(insert_(counter_table).values(name="outbox", value=0).on_conflict_do_nothing())
    raise RuntimeError("the outbox counter could not be created")


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


def mark_dead(conn: Connection, row_id: str, reason: str) -> None:
    """Dead-letter a message just enqueued that cannot be delivered as it is (no route, no
    address): it stays visible (``interop outbox dead``, metrics) and can be reprocessed to a
    destination an operator names."""
    conn.execute(
        update(outbox_table)
        .where(outbox_table.c.id == row_id)
        .values(status="dead", last_error=reason[:2000])
    )


def backoff_seconds(attempt: int, *, base: float = 1.0, cap: float = 900.0) -> float:
    """Exponential backoff with "equal jitter": half of ``base · 2^attempt`` (at most
    ``cap``) fixed, the other half random. Full jitter (anything from zero) let a failed
    delivery be retried at once, now and then, against a receiver that had just answered
    503."""
    ceiling = min(cap, base * 2 ** max(attempt, 0))
    return ceiling / 2 + random.uniform(0, ceiling / 2)


@dataclass(frozen=True, slots=True)
class Outcome:
    """What became of one claimed message, recorded by :meth:`Outbox.settle`.

    ``result`` is ``"acked"`` (the receiver confirmed it), ``"sent"`` (the transport took it
    without a confirmation), ``"failed"`` (``error`` says why; ``permanent`` dead-letters it at
    once) or ``"unsent"`` (never tried: it goes back to the queue, its attempt not counted).
    """

    message: OutboxMessage
    result: str
    error: str = ""
    permanent: bool = False
    answers: list[dict[str, Any]] | None = None
    """The receiver's answer per entry, when it gave one (kept as the row's ``answers``)."""


class Outbox:
    def __init__(
        self, engine: Engine, *, max_attempts: int = 8, lease_seconds: float | None = None
    ) -> None:
        if lease_seconds is None:
            from interop.config import get_settings

            lease_seconds = get_settings().outbox_lease_seconds
        self.engine = engine
        self.max_attempts = max_attempts
        self.lease_seconds = float(lease_seconds)
        self.lease_us = int(lease_seconds * 1_000_000)
        self.is_postgres = engine.dialect.name == "postgresql"

    def claim(self, limit: int = 20) -> list[OutboxMessage]:
        """Take up to ``limit`` deliverable messages (at most one per destination)."""
        return [run[0] for run in self.claim_runs(limit, 1)]

    def claim_runs(self, destinations: int = 32, run: int = 16) -> list[list[OutboxMessage]]:
        """Take the next messages of up to ``destinations`` destinations, up to ``run`` each.

        A destination is deliverable when its oldest undelivered message is queued and due; a
        run is that message and the queued, due messages right after it, in ``seq`` order. The
        caller delivers a run in order, one at a time, and stops at the first failure (the rest
        go back with :meth:`settle`), so each destination's messages still go out in order and
        a later one never overtakes an earlier one that failed. Destinations with the oldest
        waiting message come first.

        On PostgreSQL the rows are locked with ``FOR UPDATE SKIP LOCKED``: a row another worker
        is claiming at the same moment is skipped, and a run is cut where its rows stop being
        ours, so two workers never share a destination.
        """
        now = to_micros(now_utc())
        lease = now + self.lease_us
        o = outbox_table
        with self.engine.begin() as conn:
            # leases of crashed workers run out: their messages become deliverable again
            conn.execute(
                update(o)
                .where(o.c.status == "sending", o.c.lease_until < now)
                .values(status="queued", lease_until=None)
            )
            # the first `run` undelivered messages of every destination (one pass over the
            # undelivered rows, however long the queue)
            rn = func.row_number().over(partition_by=o.c.destination, order_by=o.c.seq)
            heads = (
                select(
                    o.c.id, o.c.destination, o.c.seq, o.c.status, o.c.next_attempt, rn.label("rn")
                )
                .where(o.c.status.in_(PENDING))
                .subquery()
            )
            window = conn.execute(
                select(
                    heads.c.id,
                    heads.c.destination,
                    heads.c.seq,
                    heads.c.status,
                    heads.c.next_attempt,
                )
                .where(heads.c.rn <= run)
                .order_by(heads.c.destination, heads.c.seq)
            ).all()
            candidates: dict[str, list[str]] = {}
            first_seq: dict[str, int] = {}
            blocked: set[str] = set()
            for r in window:
                if r.destination in blocked:
                    continue
                if r.status != "queued" or r.next_attempt > now:
                    blocked.add(r.destination)  # in flight, waiting for a retry, or the run ends
                    continue
                candidates.setdefault(r.destination, []).append(r.id)
                first_seq.setdefault(r.destination, r.seq)
            chosen = sorted(candidates, key=first_seq.__getitem__)[:destinations]
            if not chosen:
                return []
            ids = [i for d in chosen for i in candidates[d]]
            stmt = select(o).where(o.c.id.in_(ids), o.c.status == "queued", o.c.next_attempt <= now)
            if self.is_postgres:
                stmt = stmt.with_for_update(skip_locked=True)
            got = {r.id: r for r in conn.execute(stmt)}
            runs: list[list[Any]] = []
            for d in chosen:
                rows = []
                for i in candidates[d]:
                    if i not in got:
                        break  # another worker has it, or it changed since the window was read
                    rows.append(got[i])
                if rows:
                    runs.append(rows)
            mine = [r.id for rows in runs for r in rows]
            if mine:
                conn.execute(
                    update(o)
                    .where(o.c.id.in_(mine))
                    .values(status="sending", lease_until=lease, attempts=o.c.attempts + 1)
                )
        return [
            [
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
                    lease,
                )
                for r in rows
            ]
            for rows in runs
        ]

    def settle(self, outcomes: list[Outcome]) -> dict[str, str]:
        """Record what became of claimed messages, all in one transaction; returns each
        message's new status by row id. Only rows still ``sending`` under the claim's lease
        change (a message whose lease ran out and that another worker took is left to it)."""
        if not outcomes:
            return {}
        now = to_micros(now_utc())
        o = outbox_table
        states: dict[str, str] = {}
        by_status: dict[tuple[str, int | None], list[str]] = {}
        unsent: dict[int | None, list[str]] = {}
        failures: list[tuple[Outcome, str, int]] = []
        for oc in outcomes:
            m = oc.message
            if oc.result in ("acked", "sent"):
                status = "transport-acked" if oc.result == "acked" else "sent"
                by_status.setdefault((status, m.lease_until), []).append(m.id)
            elif oc.result == "unsent":
                status = "queued"
                unsent.setdefault(m.lease_until, []).append(m.id)
            else:
                status = "dead" if oc.permanent or m.attempts >= self.max_attempts else "queued"
                delay = backoff_seconds(m.attempts)
                failures.append(
                    (oc, status, now + int(delay * 1_000_000) + random.randint(0, 1000))
                )
            states[m.id] = status

        def ours(lease: int | None) -> Any:
            sending = o.c.status == "sending"
            return sending if lease is None else and_(sending, o.c.lease_until == lease)

        with self.engine.begin() as conn:
            for oc in outcomes:  # while the rows are still ``sending`` under this claim
                if oc.answers is not None:
                    conn.execute(
                        update(o)
                        .where(o.c.id == oc.message.id, ours(oc.message.lease_until))
                        .values(answers=orjson.dumps(oc.answers))
                    )
            for (status, lease), ids in by_status.items():
                acked = status == "transport-acked"
                conn.execute(
                    update(o)
                    .where(o.c.id.in_(ids), ours(lease))
                    .values(
                        status=status,
                        sent_at=now,
                        acked_at=now if acked else None,
                        lease_until=None,
                        last_error=None,
                    )
                )
            for oc, status, next_attempt in failures:
                conn.execute(
                    update(o)
                    .where(o.c.id == oc.message.id, ours(oc.message.lease_until))
                    .values(
                        status=status,
                        next_attempt=next_attempt,
                        lease_until=None,
                        last_error=oc.error[:2000],
                    )
                )
            for lease, ids in unsent.items():
                conn.execute(
                    update(o)
                    .where(o.c.id.in_(ids), ours(lease))
                    .values(status="queued", lease_until=None, attempts=o.c.attempts - 1)
                )
        return states

    def delivered(self, message: OutboxMessage, *, acked: bool) -> None:
        """The transport took it; ``acked`` when the receiver confirmed (HTTP 2xx, EDI status)."""
        self.settle([Outcome(message, "acked" if acked else "sent")])

    def failed(self, message: OutboxMessage, error: str, *, permanent: bool) -> str:
        """Record a failed attempt: retry later with backoff, or dead-letter it."""
        return self.settle([Outcome(message, "failed", error, permanent)])[message.id]

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
        to match. What may not be sent again so (a message held for a former GP, a KITH
        message to an Endpoint not its named receiver's) raises
        :class:`~interop.routing.reprocess_guard.CannotReprocess`."""
        from interop.routing.reprocess_guard import check_reprocess
        from interop.store.repository import FhirStore

        with self.engine.begin() as conn:
            row = conn.execute(select(outbox_table).where(outbox_table.c.id == row_id)).first()
            if row is None:
                raise KeyError(row_id)
            dest = destination or {}
            check_reprocess(
                FhirStore(self.engine), conn, row, dest.get("destination", row.destination)
            )
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
