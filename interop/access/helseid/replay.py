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


class JtiReplayGuard:
    def __init__(self, engine: Callable[[], Engine], clock: Callable[[], float] = time.time):
        self._engine = engine
        self._clock = clock
        self._next_prune = 0.0
        self._lock = threading.Lock()

    def first_use(self, jkt: str, jti: str, expires: int) -> bool:
        """Record the proof ``jti`` of the key ``jkt``; False when it was recorded before."""
        key = hashlib.sha256(f"{jkt}\x00{jti}".encode()).hexdigest()
        engine = self._engine()
        stmt = _INSERT[engine.dialect.name == "postgresql"]
        now = self._clock()
        prune = False
        with self._lock:
            if now >= self._next_prune:
                self._next_prune = now + PRUNE_EVERY_SECONDS
                prune = True
        with engine.begin() as conn:
            inserted = conn.execute(stmt, {"key": key, "expires": expires}).first() is not None
            if prune:
                conn.execute(delete(dpop_jti_table).where(dpop_jti_table.c.expires < int(now)))
        return inserted
