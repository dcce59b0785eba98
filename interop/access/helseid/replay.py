"""DPoP proof ids (``jti``) already used, shared by every API process through the database.

Remembering a proof is one small ``INSERT … ON CONFLICT DO NOTHING RETURNING``: no row returned
means the proof was used before (``rowcount`` is not reliable for this with every driver). A
row is needed only while a proof with its ``iat`` could still be accepted; older rows are
deleted now and then (at most once a minute per process, by an index on ``expires``), so the
table stays the size of a few minutes of traffic.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import Engine, delete
from sqlalchemy.dialects import postgresql, sqlite

from interop.store.schema import dpop_jti_table

PRUNE_EVERY_SECONDS = 60.0
WRITER_IDLE_SECONDS = 2.0
"""The writer thread ends after this long without proofs (a new one starts with the next)."""

_INSERT = {
    is_pg: dialect.insert(dpop_jti_table)
    .on_conflict_do_nothing(index_elements=["key"])
    .returning(dpop_jti_table.c.key)
    for is_pg, dialect in ((True, postgresql), (False, sqlite))
}
"""The one statement per proof, built once (PostgreSQL, and SQLite)."""


@dataclass(slots=True, eq=False)
class _Proof:
    key: str
    expires: int
    first: bool = False
    error: BaseException | None = None
    done: threading.Event | None = None
    """set for a request waiting in a thread (:meth:`JtiReplayGuard.first_use`)"""
    waiting: asyncio.Future[bool] | None = None
    """set for a request waiting on an event loop (:meth:`JtiReplayGuard.first_use_async`)"""


def _key(jkt: str, jti: str) -> str:
    return hashlib.sha256(f"{jkt}\x00{jti}".encode()).hexdigest()


def _settle(proofs: list[_Proof]) -> None:
    for proof in proofs:
        waiting = proof.waiting
        if waiting is None or waiting.done():
            continue
        if proof.error is not None:
            waiting.set_exception(proof.error)
        else:
            waiting.set_result(proof.first)


class JtiReplayGuard:
    """Records proofs by group commit: the proofs of requests that arrive while one
    transaction is being written go into the next one together (the first thread to find no
    transaction under way writes them all; the others wait for it), so a DPoP request costs a
    share of a transaction instead of one of its own."""

    def __init__(self, engine: Callable[[], Engine], clock: Callable[[], float] = time.time):
        self._engine = engine
        self._clock = clock
        self._next_prune = 0.0
        self._lock = threading.Lock()
        self._pending: list[_Proof] = []
        self._writing = False
        self._parked = False
        self._wake = threading.Condition(self._lock)

    def first_use(self, jkt: str, jti: str, expires: int) -> bool:
        """Record the proof ``jti`` of the key ``jkt``; False when it was recorded before."""
        proof = _Proof(_key(jkt, jti), expires, done=threading.Event())
        if self._queue(proof):
            self._write_while_pending()
        else:
            proof.done.wait()  # type: ignore[union-attr]
        if proof.error is not None:
            raise proof.error
        return proof.first

    async def first_use_async(self, jkt: str, jti: str, expires: int) -> bool:
        """:meth:`first_use` for the event loop: the request waits on its loop, not in a
        thread of its own (a thread per request made the threads queue for the interpreter
        lock), while a writer thread records the proofs queued meanwhile together."""
        proof = _Proof(_key(jkt, jti), expires)
        proof.waiting = asyncio.get_running_loop().create_future()
        if self._queue(proof):
            threading.Thread(target=self._writer, name="dpop-replay", daemon=True).start()
        return await proof.waiting

    def _queue(self, proof: _Proof) -> bool:
        """Queue a proof; True when the caller is to write (no writer is under way or
        waiting for work)."""
        with self._lock:
            self._pending.append(proof)
            if self._writing:
                return False
            self._writing = True
            if self._parked:  # the writer thread waits for work: it takes this
                self._wake.notify()
                return False
            return True

    def _writer(self) -> None:
        """The writer thread of the requests waiting on an event loop: writes while proofs
        queue, then waits up to ``WRITER_IDLE_SECONDS`` for more before it ends (a thread
        started per short burst cost more than the proofs' transaction)."""
        while True:
            self._write_while_pending()
            with self._lock:
                self._parked = True
                self._wake.wait(WRITER_IDLE_SECONDS)
                self._parked = False
                if not self._writing:  # nothing was handed over meanwhile
                    return

    def _write_while_pending(self) -> None:
        while True:
            with self._lock:
                batch, self._pending = self._pending, []
                if not batch:
                    self._writing = False
                    return
            try:
                recorded = self._record(batch)
                seen: set[str] = set()
                for proof in batch:  # the same proof twice in one batch: the first one wins
                    proof.first = proof.key in recorded and proof.key not in seen
                    seen.add(proof.key)
            except BaseException as exc:  # noqa: BLE001 - handed to every waiting request
                for proof in batch:
                    proof.error = exc
            finally:
                loops: dict[asyncio.AbstractEventLoop, list[_Proof]] = {}
                for proof in batch:
                    if proof.done is not None:
                        proof.done.set()
                    if proof.waiting is not None:
                        loops.setdefault(proof.waiting.get_loop(), []).append(proof)
                for loop, settled in loops.items():  # one wake-up per loop and batch
                    with contextlib.suppress(RuntimeError):  # that loop has closed meanwhile
                        loop.call_soon_threadsafe(_settle, settled)

    def _record(self, batch: list[_Proof]) -> set[str]:
        """Insert the batch's proofs in one transaction; the keys that were new."""
        engine = self._engine()
        stmt = _INSERT[engine.dialect.name == "postgresql"]
        now = self._clock()
        prune = False
        with self._lock:
            if now >= self._next_prune:
                self._next_prune = now + PRUNE_EVERY_SECONDS
                prune = True
        rows = [{"key": p.key, "expires": p.expires} for p in {p.key: p for p in batch}.values()]
        with engine.begin() as conn:
            recorded = (
                {r[0] for r in conn.execute(stmt, rows)}
                if len(rows) > 1
                else {r[0] for r in conn.execute(stmt, rows[0])}
            )
            if prune:
                conn.execute(delete(dpop_jti_table).where(dpop_jti_table.c.expires < int(now)))
        return recorded
