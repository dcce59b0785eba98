"""The hot read path: one prepared ``SELECT`` by primary key on a raw DB-API connection.

SQLAlchemy's per-statement overhead (connection checkout, compilation cache, result proxies)
is several times the cost of the query itself for a primary-key read, so ``GET
/fhir/{type}/{id}`` uses a thread-local raw connection in autocommit mode instead. Writes keep
using SQLAlchemy transactions.
"""

from __future__ import annotations

import contextlib
import sqlite3
import threading
from typing import Any

from sqlalchemy import Engine

_SQL = "SELECT version, last_updated, deleted, content FROM resource WHERE res_type = {p} AND res_id = {p}"


class FastReader:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.dialect = engine.dialect.name
        self._local = threading.local()
        self._sql = _SQL.format(p="?" if self.dialect == "sqlite" else "%s")

    def _connect(self) -> Any:  # sqlite3 or psycopg connection
        url = self.engine.url
        if self.dialect == "sqlite":
            conn = sqlite3.connect(
                url.database or ":memory:", check_same_thread=False, isolation_level=None
            )
            conn.execute("PRAGMA busy_timeout=30000")
            return conn
        import psycopg

        return psycopg.connect(
            host=url.host,
            port=url.port,
            user=url.username,
            password=url.password,
            dbname=url.database,
            autocommit=True,
            prepare_threshold=0,
        )

    def get(self, res_type: str, res_id: str) -> tuple[int, int, bool, bytes] | None:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._local.conn = self._connect()
        try:
            row = conn.execute(self._sql, (res_type, res_id)).fetchone()
        except Exception:
            # a broken connection (server restart): drop it and try once more
            self._local.conn = None
            with contextlib.suppress(Exception):
                conn.close()
            conn = self._local.conn = self._connect()
            row = conn.execute(self._sql, (res_type, res_id)).fetchone()
        if row is None:
            return None
        return int(row[0]), int(row[1]), bool(row[2]), bytes(row[3])
