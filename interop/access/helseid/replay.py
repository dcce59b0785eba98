"""DPoP proof ids (``jti``) already used, shared by every API process through the database.

Remembering a proof is one small ``INSERT … ON CONFLICT DO NOTHING RETURNING``: no row returned
means the proof was used before (``rowcount`` is not reliable for this with every driver). A
row is needed only while a proof with its ``iat`` could still be accepted; older rows are
deleted now and then (at most once a minute per process, by an index on ``expires``), so the
table stays the size of a few minutes of traffic.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from sqlalchemy import Engine, delete
from sqlalchemy.dialects import postgresql, sqlite

from interop.store.schema import dpop_jti_table

PRUNE_EVERY_SECONDS = 60.0

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
    done: threading.Event = field(default_factory=threading.Event)


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

    def first_use(self, jkt: str, jti: str, expires: int) -> bool:
        """Record the proof ``jti`` of the key ``jkt``; False when it was recorded before."""
        proof = _Proof(hashlib.sha256(f"{jkt}\x00{jti}".encode()).hexdigest(), expires)
        with self._lock:
            self._pending.append(proof)
            leader = not self._writing
            self._writing = True
        if leader:
            self._write_while_pending()
        else:
            proof.done.wait()
        if proof.error is not None:
            raise proof.error
        return proof.first

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
                for proof in batch:
                    proof.done.set()

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
