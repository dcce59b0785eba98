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

from interop.routing.outbox import Outbox, OutboxMessage
from interop.routing.transports import (
    PermanentDeliveryError,
    TransientDeliveryError,
    Transport,
    default_transports,
)

log = logging.getLogger("interop.worker")

PeriodicTask = tuple[str, float, Callable[[], object]]
"""(name, interval seconds, function)"""


class DeliveryWorker:
    def __init__(
        self,
        outbox: Outbox,
        transports: dict[str, Transport] | None = None,
        *,
        concurrency: int = 4,
        batch: int = 32,
    ) -> None:
        self.outbox = outbox
        self.transports = transports or default_transports()
        self.pool = ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="deliver")
        self.batch = batch
        self.periodic: list[PeriodicTask] = []
        self._last_run: dict[str, float] = {}

    def deliver_one(self, message: OutboxMessage) -> str:
        transport = self.transports.get(message.transport)
        if transport is None:
            return self.outbox.failed(
                message, f"no transport {message.transport!r} configured", permanent=True
            )
        try:
            acked = transport.deliver(message)
        except PermanentDeliveryError as exc:
            log.warning("dead-lettering %s to %s: %s", message.msg_id, message.destination, exc)
            return self.outbox.failed(message, str(exc), permanent=True)
        except TransientDeliveryError as exc:
            state = self.outbox.failed(message, str(exc), permanent=False)
            log.info("delivery of %s failed (%s), now %s", message.msg_id, exc, state)
            return state
        except Exception as exc:  # noqa: BLE001 - an unexpected failure is retried, not lost
            log.exception("transport %s crashed on %s", message.transport, message.msg_id)
            return self.outbox.failed(message, f"{type(exc).__name__}: {exc}", permanent=False)
        self.outbox.delivered(message, acked=acked)
        return "delivered"

    def run_once(self) -> int:
        """Claim and deliver one batch (destinations in parallel); returns how many."""
        messages = self.outbox.claim(self.batch)
        if messages:
            list(self.pool.map(self.deliver_one, messages))
        now = time.monotonic()
        for name, interval, fn in self.periodic:
            if now - self._last_run.get(name, 0.0) >= interval:
                self._last_run[name] = now
                try:
                    fn()
                except Exception:  # noqa: BLE001 - a failing check must not stop delivery
                    log.exception("periodic task %s failed", name)
        return len(messages)

    def run_forever(self, stop: threading.Event, idle: float = 0.2) -> None:
        while not stop.is_set():
            try:
                n = self.run_once()
            except Exception:  # noqa: BLE001 - database hiccup: wait and retry
                log.exception("delivery round failed")
                n = 0
            if n == 0:
                stop.wait(idle)
