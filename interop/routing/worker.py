"""``interop worker``: delivers the outbox, processes the inbox, runs scheduled checks.

Several workers may run at once (on PostgreSQL): claims use ``SKIP LOCKED`` and leases, and
each destination's messages go out in order, one at a time.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING

from interop.routing.outbox import Outbox, OutboxMessage, Outcome
from interop.routing.transports import (
    Delivered,
    PermanentDeliveryError,
    TransientDeliveryError,
    Transport,
)

if TYPE_CHECKING:
    from sqlalchemy import Engine

    from interop.config import Settings

log = logging.getLogger("interop.worker")

PeriodicTask = tuple[str, float, Callable[[], object]]
"""(name, interval seconds, function)"""


class DeliveryWorker:
    """Claims runs of messages (see :meth:`Outbox.claim_runs`) and delivers them with a pool of
    threads, one destination per thread at a time, so destinations go out in parallel and each
    one's messages in order.

    Outcomes are recorded in batches: a thread adds each outcome to a shared list, and the list
    is written in one transaction when ``flush_seconds`` have passed since the last write (and
    at the end of every round). A worker killed in between has delivered at most that many
    seconds' worth of messages it did not record; their leases run out and they are delivered
    again (at-least-once: receivers deduplicate on the message id).

    A run is only continued while its lease has at least half its time left, so a delivery
    that starts never outlives the lease (transport timeouts are 30 s, the default lease 60 s).
    """

    def __init__(
        self,
        outbox: Outbox,
        transports: dict[str, Transport],
        *,
        concurrency: int = 4,
        batch: int = 32,
        run: int = 16,
        flush_seconds: float = 0.05,
    ) -> None:
        self.outbox = outbox
        self.transports = transports
        self.pool = ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="deliver")
        self.batch = batch
        """destinations per claim"""
        self.run = run
        """messages per destination per claim"""
        self.flush_seconds = flush_seconds
        self.periodic: list[PeriodicTask] = []
        self._last_run: dict[str, float] = {}
        self._pending: list[Outcome] = []
        self._pending_lock = threading.Lock()
        self._flush_lock = threading.Lock()
        self._last_flush = time.monotonic()

    def attempt(self, message: OutboxMessage) -> Outcome:
        """Hand one message to its transport; what became of it (not yet recorded)."""
        transport = self.transports.get(message.transport)
        if transport is None:
            return Outcome(
                message, "failed", f"no transport {message.transport!r} configured", True
            )
        try:
            result = transport.deliver(message)
        except PermanentDeliveryError as exc:
            log.warning("dead-lettering %s to %s: %s", message.msg_id, message.destination, exc)
            return Outcome(message, "failed", str(exc), True, exc.answers)
        except TransientDeliveryError as exc:
            log.info(
                "delivery of %s failed (attempt %d): %s", message.msg_id, message.attempts, exc
            )
            return Outcome(message, "failed", str(exc), False, exc.answers)
        except Exception as exc:  # noqa: BLE001 - an unexpected failure is retried, not lost
            log.exception("transport %s crashed on %s", message.transport, message.msg_id)
            return Outcome(message, "failed", f"{type(exc).__name__}: {exc}", False)
        if isinstance(result, Delivered):
            return Outcome(message, "acked" if result.acked else "sent", answers=result.answers)
        return Outcome(message, "acked" if result else "sent")

    def deliver_one(self, message: OutboxMessage) -> str:
        """Deliver one claimed message and record the outcome now; returns its new status."""
        outcome = self.attempt(message)
        state = self.outbox.settle([outcome])[message.id]
        return "delivered" if outcome.result in ("acked", "sent") else state

    def deliver_run(self, run: list[OutboxMessage], claimed_at: float) -> int:
        """Deliver one destination's run in order; stop at the first failure, or when the
        lease is half gone, and put the rest back. Returns how many were tried."""
        budget = self.outbox.lease_seconds / 2
        tried = 0
        for message in run:
            if time.monotonic() - claimed_at > budget:
                break
            outcome = self.attempt(message)
            tried += 1
            self._record([outcome])
            if outcome.result == "failed":
                break
        if tried < len(run):
            self._record([Outcome(m, "unsent") for m in run[tried:]])
        return tried

    def _record(self, outcomes: list[Outcome]) -> None:
        with self._pending_lock:
            self._pending.extend(outcomes)
        if time.monotonic() - self._last_flush >= self.flush_seconds:
            self.flush(block=False)

    def flush(self, *, block: bool = True) -> None:
        """Write the outcomes gathered so far (one transaction)."""
        if not self._flush_lock.acquire(blocking=block):
            return  # another thread is writing; the next one picks these up
        try:
            with self._pending_lock:
                outcomes, self._pending = self._pending, []
                self._last_flush = time.monotonic()
            if outcomes:
                try:
                    self.outbox.settle(outcomes)
                except Exception:
                    # keep them for the next write; until then the rows stay `sending`
                    with self._pending_lock:
                        self._pending[:0] = outcomes
                    if block:
                        raise
                    log.exception("recording %d outcome(s) failed; will retry", len(outcomes))
        finally:
            self._flush_lock.release()

    def run_once(self) -> int:
        """Claim and deliver one batch (destinations in parallel); returns how many messages
        were tried."""
        claimed_at = time.monotonic()
        runs = self.outbox.claim_runs(self.batch, self.run)
        tried = 0
        if runs:
            try:
                tried = sum(self.pool.map(self.deliver_run, runs, [claimed_at] * len(runs)))
            finally:
                self.flush()
        now = time.monotonic()
        for name, interval, fn in self.periodic:
            if now - self._last_run.get(name, 0.0) >= interval:
                self._last_run[name] = now
                try:
                    fn()
                except Exception:  # noqa: BLE001 - a failing check must not stop delivery
                    log.exception("periodic task %s failed", name)
        return tried

    def run_forever(self, stop: threading.Event, idle: float = 0.2) -> None:
        while not stop.is_set():
            try:
                n = self.run_once()
            except Exception:  # noqa: BLE001 - database hiccup: wait and retry
                log.exception("delivery round failed")
                n = 0
            if n == 0:
                stop.wait(idle)


def audit_head_export(engine: Engine, settings: Settings) -> PeriodicTask | None:
    """The periodic job exporting the audit chain's head (see
    :mod:`interop.access.audit.heads`): every ``INTEROP_AUDIT_HEAD_EXPORT_SECONDS``, to
    ``INTEROP_AUDIT_HEAD_FILE`` and the log. None when the interval is 0."""
    if settings.audit_head_export_seconds <= 0:
        return None
    from interop.access.audit.heads import export_head

    head_file = settings.audit_head_file
    if head_file is None:
        log.warning(
            "INTEROP_AUDIT_HEAD_FILE is not set: the audit chain's head goes to the log only"
        )
    return (
        "audit-head-export",
        settings.audit_head_export_seconds,
        lambda: export_head(engine, head_file),
    )
