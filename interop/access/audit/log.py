"""Appending audit events: in the caller's transaction, or by group commit for request paths.

A read must not be answered before its audit event is durable, but a transaction per read is
what made audited reads slow. :meth:`AuditLog.record` therefore queues the event and waits: a
single writer task takes every event queued meanwhile (up to ``max_batch``) and appends them
to the chain in one transaction; each waiting request resumes once that transaction has
committed (or gets its error). Writes are audited by :meth:`AuditLog.append` inside the
write's own transaction, so a write and its audit commit together or not at all.

A batch waits a moment (at most :data:`GATHER_SECONDS`) for as many events as the batch before
it held: the requests that batch answered are on their way back with their next events. Taken
at once, sixteen clients' reads settled into batches of five on average, and a transaction's
own cost (BEGIN, the chain's head, COMMIT, the wake-ups) was most of an audited read's. A lone
reader (a batch of one before) never waits.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
import weakref
from dataclasses import dataclass
from typing import Any

from interop.access.audit.chain import append_events
from interop.access.audit.keys import Keyring, default_keyring
from interop.store.context import Door, WriteContext
from interop.store.repository import FhirStore, StoredResource, WriteTx

AUDIT_WRITE = WriteContext(None, Door.AUDIT)
"""The audit log's own transactions (the events name their actor; the write names none)."""


@dataclass(slots=True)
class _Pending:
    event: dict[str, Any]
    loop: asyncio.AbstractEventLoop
    future: asyncio.Future[None]


GATHER_SECONDS = 0.002
"""How long a batch waits at most for as many events as the batch before it (see above)."""

WRITER_IDLE_SECONDS = 2.0
"""The writer thread ends after this long without events (a new one starts with the next)."""


class AuditLog:
    """The audit log of one store (see :func:`audit_log`)."""

    def __init__(
        self, store: FhirStore, keyring: Keyring | None = None, *, max_batch: int = 500
    ) -> None:
        self.store = store
        self._keyring = keyring
        self.max_batch = max_batch
        self._pending: list[_Pending] = []
        self._ready = threading.Condition()
        self._writer: threading.Thread | None = None
        self._idle = False
        self._gathering = False
        self.commits = 0
        """transactions :meth:`record_now` committed (a batch is one)"""

    @property
    def keyring(self) -> Keyring:
        return self._keyring if self._keyring is not None else default_keyring()

    # ---- in an existing transaction -----------------------------------------------------
    def append(self, tx: WriteTx, event: dict[str, Any]) -> StoredResource:
        """Chain one event inside ``tx`` (it commits with the transaction)."""
        return append_events(tx, [event], self.keyring)[0]

    def append_many(self, tx: WriteTx, events: list[dict[str, Any]]) -> list[StoredResource]:
        return append_events(tx, events, self.keyring)

    # ---- on its own ---------------------------------------------------------------------
    def record_now(self, *events: dict[str, Any]) -> None:
        """Append events in a transaction of their own, now (for threads and commands)."""
        with self.store.write(AUDIT_WRITE) as tx:
            append_events(tx, list(events), self.keyring)
        self.commits += 1

    async def record(self, event: dict[str, Any]) -> None:
        """Append an event by group commit; returns once it is committed."""
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[None] = loop.create_future()
        with self._ready:
            self._pending.append(_Pending(event, loop, fut))
            if self._writer is None:
                self._writer = threading.Thread(
                    target=self._write_batches, name="audit-group-commit", daemon=True
                )
                self._writer.start()
            elif self._idle or self._gathering:
                self._ready.notify()
        await fut

    def _write_batches(self) -> None:
        """The writer thread: appends whatever has queued (up to ``max_batch``) in one
        transaction, hands each waiting request its outcome on its own event loop (one
        wake-up per loop and batch), and goes straight on to the next batch; it waits (and
        must be woken) only when nothing is queued, or when it gathers a batch."""
        last = 1
        while True:
            with self._ready:
                if not self._pending:
                    self._idle = True
                    self._ready.wait(WRITER_IDLE_SECONDS)
                    self._idle = False
                if not self._pending:
                    self._writer = None
                    return
                want = min(last, self.max_batch)
                deadline = time.monotonic() + GATHER_SECONDS
                while len(self._pending) < want:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        break
                    self._gathering = True
                    self._ready.wait(left)
                self._gathering = False
                batch = self._pending[: self.max_batch]
                del self._pending[: self.max_batch]
                last = len(batch)
            outcomes: list[tuple[_Pending, BaseException | None]]
            try:
                self.record_now(*(p.event for p in batch))
                outcomes = [(p, None) for p in batch]
            except Exception:  # noqa: BLE001 - retried one by one: one bad event fails alone
                outcomes = []
                for p in batch:
                    try:
                        self.record_now(p.event)
                    except Exception as exc:  # noqa: BLE001 - handed to the waiting request
                        outcomes.append((p, exc))
                    else:
                        outcomes.append((p, None))
            by_loop: dict[asyncio.AbstractEventLoop, list[tuple[_Pending, BaseException | None]]]
            by_loop = {}
            for p, error in outcomes:
                by_loop.setdefault(p.loop, []).append((p, error))
            for loop, settled in by_loop.items():
                with contextlib.suppress(RuntimeError):  # that loop has closed meanwhile
                    loop.call_soon_threadsafe(_settle_all, settled)


def _settle_all(settled: list[tuple[_Pending, BaseException | None]]) -> None:
    for p, error in settled:
        _settle(p, error)


def _settle(p: _Pending, error: BaseException | None) -> None:
    if p.future.done():
        return
    if error is None:
        p.future.set_result(None)
    else:
        p.future.set_exception(error)


_logs: weakref.WeakKeyDictionary[FhirStore, AuditLog] = weakref.WeakKeyDictionary()


def audit_log(store: FhirStore) -> AuditLog:
    """The store's audit log (one per store and process, so its events are batched together)."""
    log = _logs.get(store)
    if log is None:
        from interop.config import get_settings

        log = _logs.setdefault(store, AuditLog(store, max_batch=get_settings().audit_batch_max))
    return log
