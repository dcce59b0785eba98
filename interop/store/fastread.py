"""The hot read path: primary-key ``SELECT``s on a raw DB-API connection, batched per loop turn.

SQLAlchemy's per-statement overhead (connection checkout, compilation cache, result proxies)
is several times the cost of the query itself for a primary-key read, so ``GET
/fhir/{type}/{id}`` uses a thread-local raw connection in autocommit mode instead. Writes keep
using SQLAlchemy transactions.

On PostgreSQL each read is also a round trip to the server, during which the single event loop
would otherwise wait. :class:`ReadBatcher` collects the reads that arrive in the same turn of
the event loop and fetches them with one ``res_id = ANY(...)`` statement, so sixteen
concurrent clients cost one round trip instead of sixteen (the DataLoader pattern). A lone
read is still one statement, with no added delay: the batch is flushed as soon as the loop
has run the callbacks that were ready.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import threading
import weakref
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from sqlalchemy import Engine

from interop.store.db import database_file_of

Row = tuple[int, int, bool, bytes]
"""version, last_updated (epoch µs), deleted, stored JSON bytes"""

_COLUMNS = "res_id, version, last_updated, deleted, content"
_AUDIT_COLUMNS = "res_id, 1, recorded, 0, content"
AUDIT_EVENT = "AuditEvent"
"""AuditEvents are rows of the audit chain, not of ``resource`` (see ``store.audit_rows``)."""
_SQLITE_MAX_BATCH = 200
"""Ids per SQLite statement (each distinct count is its own cached statement)."""

T = TypeVar("T")


class FastReader:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.dialect = engine.dialect.name
        self._local = threading.local()
        self._file = database_file_of(engine)
        self._statements: dict[tuple[bool, str | None, int], str] = {}

    def _connect(self) -> Any:  # sqlite3 or psycopg connection
        """A connection with the engine's own settings: its URL's options (``sslmode``,
        ``sslrootcert``, ``application_name`` …) on PostgreSQL, and the engine's connect hooks
        (the SQLite pragmas) — only in autocommit, outside the pool, because a primary-key read
        needs no transaction and a checkout per read cost more than the read (measured)."""
        url = self.engine.url
        if self.dialect == "sqlite":
            if self._file is not None:
                self._file.check()  # never a new empty file where the database was
            conn = sqlite3.connect(
                url.database or ":memory:", check_same_thread=False, isolation_level=None
            )
            self.engine.pool.dispatch.connect(conn, None)  # the pragmas pooled connections get
            conn.isolation_level = None
            return conn
        import psycopg

        options: dict[str, Any] = {k: v for k, v in url.query.items() if isinstance(v, str)}
        return psycopg.connect(
            host=url.host,
            port=url.port,
            user=url.username,
            password=url.password,
            dbname=url.database,
            autocommit=True,
            prepare_threshold=0,
            **options,
        )

    def scalar(self, sql: str, params: Sequence[Any] = ()) -> Any:
        """One value of a small query (``?`` placeholders; given as ``%s`` on PostgreSQL)."""
        if self.dialect != "sqlite":
            sql = sql.replace("?", "%s")
        row = self._run(lambda c: c.execute(sql, tuple(params)).fetchone())
        return None if row is None else row[0]

    def _run(self, query: Callable[[Any], T]) -> T:
        if self._file is not None:
            self._file.check()  # the SQLite file removed or replaced: a 503, never its rows
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._local.conn = self._connect()
        try:
            return query(conn)
        except Exception:
            # a broken connection (server restart): drop it and try once more
            self._local.conn = None
            with contextlib.suppress(Exception):
                conn.close()
            conn = self._local.conn = self._connect()
            return query(conn)

    def get(self, res_type: str, res_id: str) -> Row | None:
        found = self.get_many_with(res_type, [res_id])
        return found[res_id][0] if found else None

    def get_many(self, res_type: str, res_ids: Sequence[str]) -> dict[str, Row]:
        """The current version of each id that exists (deleted ones included, flagged)."""
        return {k: v[0] for k, v in self.get_many_with(res_type, res_ids).items()}

    def get_many_with(
        self, res_type: str, res_ids: Sequence[str], companion: str | None = None
    ) -> dict[str, tuple[Row, Any]]:
        """:meth:`get_many`, each row with the value of ``companion`` (a one-value query) read
        by the same statement, so as of the same moment as the row (None for AuditEvents,
        which are rows of the audit chain, and without a companion)."""
        ids = list(dict.fromkeys(res_ids))
        if not ids:
            return {}
        if res_type == AUDIT_EVENT:
            companion = None
        rows: list[Any] = []
        step = _SQLITE_MAX_BATCH if self.dialect == "sqlite" else len(ids)
        for i in range(0, len(ids), step):
            sql, params = self._select(res_type, ids[i : i + step], companion)
            rows.extend(self._run(_fetch_all(sql, params)))
        return {str(r[0]): (_row(r), r[5] if companion else None) for r in rows}

    def _select(
        self, res_type: str, ids: list[str], companion: str | None
    ) -> tuple[str, tuple[Any, ...]]:
        """The statement reading ``ids`` (with the companion's value as a sixth column)."""
        sqlite = self.dialect == "sqlite"
        key = (res_type == AUDIT_EVENT, companion, len(ids) if sqlite else min(len(ids), 2))
        sql = self._statements.get(key)
        if sql is None:
            mark = "?" if sqlite else "%s"
            if len(ids) == 1:
                where = f"res_id = {mark}"
            elif sqlite:
                where = "res_id IN (" + ",".join("?" * len(ids)) + ")"
            else:
                where = "res_id = ANY(%s)"
            if res_type == AUDIT_EVENT:
                sql = f"SELECT {_AUDIT_COLUMNS} FROM audit_chain WHERE content IS NOT NULL AND {where}"
            else:
                extra = f", ({companion})" if companion else ""
                sql = f"SELECT {_COLUMNS}{extra} FROM resource WHERE res_type = {mark} AND {where}"
            self._statements[key] = sql
        if len(ids) == 1 or sqlite:
            values: tuple[Any, ...] = tuple(ids)
        else:
            values = (ids,)
        return sql, values if res_type == AUDIT_EVENT else (res_type, *values)


def _fetch_all(sql: str, params: tuple[Any, ...]) -> Callable[[Any], list[Any]]:
    return lambda conn: list(conn.execute(sql, params).fetchall())


def _row(r: Any) -> Row:
    return int(r[1]), int(r[2]), bool(r[3]), bytes(r[4])


class ReadBatcher:
    """Primary-key reads awaited on the event loop, fetched together per loop turn.

    Each event loop has its own pending batch (a process may run several loops in
    threads, e.g. an MLLP listener beside the API): a batch is only ever touched, flushed
    and answered on the loop, and so the thread, that its reads came from."""

    def __init__(self, reader: FastReader, companion: str | None = None) -> None:
        self.reader = reader
        self.companion = companion
        """A one-value query read by each flush's statement beside the rows (the
        care-relations generation), handed to every read it answers with :meth:`get_with`."""
        self._batches: weakref.WeakKeyDictionary[
            asyncio.AbstractEventLoop,
            dict[tuple[str, str], list[asyncio.Future[tuple[Row | None, Any]]]],
        ] = weakref.WeakKeyDictionary()
        self._lock = threading.Lock()

    async def get(self, res_type: str, res_id: str) -> Row | None:
        return (await self.get_with(res_type, res_id))[0]

    async def get_with(self, res_type: str, res_id: str) -> tuple[Row | None, Any]:
        """The row, and the companion's value as of the row (None when there is no row or
        no companion)."""
        loop = asyncio.get_running_loop()
        with self._lock:
            pending = self._batches.get(loop)
            first = pending is None
            if pending is None:
                pending = self._batches[loop] = {}
        fut: asyncio.Future[tuple[Row | None, Any]] = loop.create_future()
        pending.setdefault((res_type, res_id), []).append(fut)
        if first:
            loop.call_soon(self._flush, loop)
        return await fut

    def _flush(self, loop: asyncio.AbstractEventLoop) -> None:
        with self._lock:
            pending = self._batches.pop(loop, {})
        by_type: dict[str, list[str]] = {}
        for res_type, res_id in pending:
            by_type.setdefault(res_type, []).append(res_id)
        for res_type, ids in by_type.items():
            try:
                found = self.reader.get_many_with(res_type, ids, self.companion)
            except Exception as exc:  # noqa: BLE001 - handed to every waiting request
                for res_id in ids:
                    for fut in pending[(res_type, res_id)]:
                        if not fut.done():
                            fut.set_exception(exc)
                continue
            for res_id in ids:
                answer = found.get(res_id, (None, None))
                for fut in pending[(res_type, res_id)]:
                    if not fut.done():
                        fut.set_result(answer)
