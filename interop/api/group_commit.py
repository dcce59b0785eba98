"""Group commit for single-resource creates arriving concurrently over HTTP.

Each ``POST /fhir/{type}`` would otherwise pay for its own transaction (BEGIN, a dozen
statements, COMMIT). Requests that arrive while a write is in progress are collected and
written together with one multi-row insert per table, in one transaction, per acting actor.
If that shared transaction fails (a duplicate identifier, say), every request in it is retried
on its own, so one client's error never becomes another client's failure.

A batch waits a moment (at most :data:`GATHER_SECONDS`) for as many requests as the batch
before it held: the clients that batch answered are on their way back with their next
requests. Without the wait, eight clients settle into batches of seven and one (the eighth
arrives while the seven are written), and a transaction of one costs nearly what one of
seven does. A lone client (a batch of one before) never waits.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

from starlette.concurrency import run_in_threadpool

from interop.store.context import Door, WriteContext
from interop.store.repository import FhirStore, StoredResource

GATHER_SECONDS = 0.005
"""How long a batch waits at most for the requests the batch before it had (see above)."""


@dataclass
class _Pending:
    resource: dict[str, Any]
    actor: Any
    future: asyncio.Future[StoredResource]


class GroupCommitter:
    def __init__(self, store: FhirStore, *, max_batch: int = 100) -> None:
        self.store = store
        self.max_batch = max_batch
        self._queue: asyncio.Queue[_Pending] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task[None] | None = None

    def _ensure(self) -> asyncio.Queue[_Pending]:
        loop = asyncio.get_running_loop()
        if self._queue is None or self._loop is not loop or self._task is None or self._task.done():
            self._queue = asyncio.Queue()
            self._loop = loop
            self._task = loop.create_task(self._run(self._queue))
        return self._queue

    async def create(self, resource: dict[str, Any], actor: Any) -> StoredResource:
        queue = self._ensure()
        fut: asyncio.Future[StoredResource] = asyncio.get_running_loop().create_future()
        await queue.put(_Pending(resource, actor, fut))
        return await fut

    async def _run(self, queue: asyncio.Queue[_Pending]) -> None:
        loop = asyncio.get_running_loop()
        last = 1
        while True:
            first = await queue.get()
            batch = [first]
            deadline = loop.time() + GATHER_SECONDS
            want = min(last, self.max_batch)
            while len(batch) < self.max_batch:
                if not queue.empty():
                    batch.append(queue.get_nowait())
                elif len(batch) < want and loop.time() < deadline:
                    await asyncio.sleep(GATHER_SECONDS / 8)
                else:
                    break
            last = len(batch)
            groups: dict[int, list[_Pending]] = {}
            for p in batch:
                groups.setdefault(id(p.actor), []).append(p)
            for items in groups.values():
                try:
                    results: list[StoredResource] | None = await run_in_threadpool(
                        self._write, items
                    )
                except Exception:  # noqa: BLE001 - retried one by one below
                    results = None
                if results is not None:
                    for p, r in zip(items, results, strict=True):
                        if not p.future.done():
                            p.future.set_result(r)
                    continue
                for p in items:
                    try:
                        single: list[StoredResource] = await run_in_threadpool(self._write, [p])
                        if not p.future.done():
                            p.future.set_result(single[0])
                    except Exception as exc:  # noqa: BLE001 - handed to the waiting request
                        if not p.future.done():
                            p.future.set_exception(exc)

    def _write(self, items: list[_Pending]) -> list[StoredResource]:
        with self.store.write(WriteContext(items[0].actor, Door.FHIR)) as tx:
            return tx.create_many([(p.resource, None) for p in items], validate=False)
