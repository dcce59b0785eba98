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
_ONE = "SELECT " + _COLUMNS + " FROM resource WHERE res_type = {p} AND res_id = {p}"
_MANY_PG = "SELECT " + _COLUMNS + " FROM resource WHERE res_type = %s AND res_id = ANY(%s)"
_MANY_SQLITE = "SELECT " + _COLUMNS + " FROM resource WHERE res_type = ? AND res_id IN ({marks})"
_AUDIT_COLUMNS = "res_id, 1, recorded, 0, content"
_AUDIT_ONE = (
    "SELECT " + _AUDIT_COLUMNS + " FROM audit_chain WHERE content IS NOT NULL AND res_id = {p}"
)
_AUDIT_MANY_PG = (
    "SELECT " + _AUDIT_COLUMNS + " FROM audit_chain WHERE content IS NOT NULL AND res_id = ANY(%s)"
)
_AUDIT_MANY_SQLITE = (
    "SELECT "
    + _AUDIT_COLUMNS
    + " FROM audit_chain WHERE content IS NOT NULL AND res_id IN ({marks})"
)
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
        mark = "?" if self.dialect == "sqlite" else "%s"
        self._one = _ONE.format(p=mark)
        self._audit_one = _AUDIT_ONE.format(p=mark)

    def _connect(self) -> Any:  # sqlite3 or psycopg connection
        """A connection with the engine's own settings: its URL's options (``sslmode``,
        ``sslrootcert``, ``application_name`` …) on PostgreSQL, and the engine's connect hooks
        (the SQLite pragmas) — only in autocommit, outside the pool, because a primary-key read
        needs no transaction and a checkout per read cost more than the read (measured)."""
        url = self.engine.url
        if self.dialect == "sqlite":
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
        if res_type == AUDIT_EVENT:
            row = self._run(lambda c: c.execute(self._audit_one, (res_id,)).fetchone())
        else:
            row = self._run(lambda c: c.execute(self._one, (res_type, res_id)).fetchone())
        return None if row is None else _row(row)

    def _audit_many(self, ids: list[str]) -> Callable[[Any], list[Any]]:
        return _audit_select_in(self.dialect, ids)

    def get_many(self, res_type: str, res_ids: Sequence[str]) -> dict[str, Row]:
        """The current version of each id that exists (deleted ones included, flagged)."""
        ids = list(dict.fromkeys(res_ids))
        if len(ids) == 1:
            one = self.get(res_type, ids[0])
            return {} if one is None else {ids[0]: one}
        rows: list[Any] = []
        if res_type == AUDIT_EVENT:
            for i in range(0, len(ids), _SQLITE_MAX_BATCH):
                rows.extend(self._run(self._audit_many(ids[i : i + _SQLITE_MAX_BATCH])))
        elif self.dialect == "sqlite":
            for i in range(0, len(ids), _SQLITE_MAX_BATCH):
                chunk = ids[i : i + _SQLITE_MAX_BATCH]
                rows.extend(self._run(_select_in(res_type, chunk)))
        else:
            rows = self._run(lambda c: c.execute(_MANY_PG, (res_type, ids)).fetchall())
        return {str(r[0]): _row(r) for r in rows}


def _audit_select_in(dialect: str, ids: list[str]) -> Callable[[Any], list[Any]]:
    if dialect == "sqlite":
        sql = _AUDIT_MANY_SQLITE.format(marks=",".join("?" * len(ids)))
        return lambda conn: list(conn.execute(sql, ids).fetchall())
    return lambda conn: list(conn.execute(_AUDIT_MANY_PG, (ids,)).fetchall())


def _select_in(res_type: str, ids: list[str]) -> Callable[[Any], list[Any]]:
    sql = _MANY_SQLITE.format(marks=",".join("?" * len(ids)))
    return lambda conn: list(conn.execute(sql, (res_type, *ids)).fetchall())


def _row(r: Any) -> Row:
    return int(r[1]), int(r[2]), bool(r[3]), bytes(r[4])


class ReadBatcher:
    """Primary-key reads awaited on the event loop, fetched together per loop turn.

    Each event loop has its own pending batch (a process may run several loops in
    threads, e.g. an MLLP listener beside the API): a batch is only ever touched, flushed
    and answered on the loop, and so the thread, that its reads came from."""

    def __init__(
        self, reader: FastReader, companion: Callable[[FastReader], int] | None = None
    ) -> None:
        self.reader = reader
        self.companion = companion
        """A small read made once per flush, after the rows (the care-relations generation),
        handed to every read of that flush with :meth:`get_with`."""
        self._batches: weakref.WeakKeyDictionary[
            asyncio.AbstractEventLoop,
            dict[tuple[str, str], list[asyncio.Future[tuple[Row | None, int | None]]]],
        ] = weakref.WeakKeyDictionary()
        self._lock = threading.Lock()

    async def get(self, res_type: str, res_id: str) -> Row | None:
        return (await self.get_with(res_type, res_id))[0]

    async def get_with(self, res_type: str, res_id: str) -> tuple[Row | None, int | None]:
        """The row, and the companion value read after it in the same flush (None when there
        is no companion or its read failed)."""
        loop = asyncio.get_running_loop()
        with self._lock:
            pending = self._batches.get(loop)
            first = pending is None
            if pending is None:
                pending = self._batches[loop] = {}
        fut: asyncio.Future[tuple[Row | None, int | None]] = loop.create_future()
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
        results: list[tuple[str, list[str], dict[str, Row] | None, BaseException | None]] = []
        for res_type, ids in by_type.items():
            try:
                results.append((res_type, ids, self.reader.get_many(res_type, ids), None))
            except Exception as exc:  # noqa: BLE001 - handed to every waiting request
                results.append((res_type, ids, None, exc))
        extra: int | None = None
        if self.companion is not None:
            try:
                extra = self.companion(self.reader)
            except Exception:  # noqa: BLE001 - the caller reads it again itself
                extra = None
        for res_type, ids, found, failure in results:
            for res_id in ids:
                for fut in pending[(res_type, res_id)]:
                    if fut.done():
                        continue
                    if failure is not None:
                        fut.set_exception(failure)
                    else:
                        fut.set_result((found.get(res_id) if found is not None else None, extra))
