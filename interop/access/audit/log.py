"""Appending audit events: in the caller's transaction, or by group commit for request paths.

A read must not be answered before its audit event is durable, but a transaction per read is
what made audited reads slow. :meth:`AuditLog.record` therefore queues the event and waits: a
single writer task takes every event queued meanwhile (up to ``max_batch``) and appends them
to the chain in one transaction; each waiting request resumes once that transaction has
committed (or gets its error). Writes are audited by :meth:`AuditLog.append` inside the
write's own transaction, so a write and its audit commit together or not at all.
"""

from __future__ import annotations

import asyncio
import weakref
from dataclasses import dataclass
from typing import Any

from starlette.concurrency import run_in_threadpool

from interop.access.audit.chain import append_events
from interop.access.audit.keys import Keyring, default_keyring
from interop.store.context import Door, WriteContext
from interop.store.repository import FhirStore, StoredResource, WriteTx

AUDIT_WRITE = WriteContext(None, Door.AUDIT)
"""The audit log's own transactions (the events name their actor; the write names none)."""


@dataclass
class _Pending:
    event: dict[str, Any]
    future: asyncio.Future[None]


class AuditLog:
    """The audit log of one store (see :func:`audit_log`)."""

    def __init__(
        self, store: FhirStore, keyring: Keyring | None = None, *, max_batch: int = 500
    ) -> None:
        self.store = store
        self._keyring = keyring
        self.max_batch = max_batch
        self._queue: asyncio.Queue[_Pending] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task[None] | None = None
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
        if self._queue is None or self._loop is not loop or self._task is None or self._task.done():
            self._queue = asyncio.Queue()
            self._loop = loop
            self._task = loop.create_task(self._run(self._queue))
        fut: asyncio.Future[None] = loop.create_future()
        await self._queue.put(_Pending(event, fut))
        await fut

    async def _run(self, queue: asyncio.Queue[_Pending]) -> None:
        while True:
            batch = [await queue.get()]
            while len(batch) < self.max_batch and not queue.empty():
                batch.append(queue.get_nowait())
            try:
                await run_in_threadpool(self.record_now, *(p.event for p in batch))
            except Exception:  # noqa: BLE001 - retried one by one: one bad event fails alone
                for p in batch:
                    try:
                        await run_in_threadpool(self.record_now, p.event)
                    except Exception as exc:  # noqa: BLE001 - handed to the waiting request
                        _settle(p, exc)
                    else:
                        _settle(p, None)
            else:
                for p in batch:
                    _settle(p, None)


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
