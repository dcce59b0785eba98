"""Engine creation for SQLite (embedded default, WAL) and PostgreSQL (production)."""

from __future__ import annotations

import logging
import threading
import time
import weakref
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError, DisconnectionError

from interop.config import get_settings
from interop.store import wal_checkpoint
from interop.store.sqlite_file import DatabaseFile
from interop.store.write_lock import WriteLock, in_background

log = logging.getLogger(__name__)

_engines: dict[str, Engine] = {}
_lock = threading.Lock()


def normalise_url(url: str) -> str:
    """Accept ``postgresql://`` / ``postgres://`` and use the psycopg 3 driver."""
    if url.startswith("postgres://"):
        url = "postgresql://" + url[len("postgres://") :]
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url[len("postgresql://") :]
    return url


def is_sqlite(url: str) -> bool:
    return make_url(normalise_url(url)).get_backend_name() == "sqlite"


def _sqlite_pragmas(
    cache_mb: int, synchronous: str, autocheckpoint: int
) -> Callable[[Any, Any], None]:
    def on_connect(dbapi_conn: Any, _record: Any) -> None:
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute(f"PRAGMA synchronous={synchronous}")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute("PRAGMA busy_timeout=30000")
        cur.execute(f"PRAGMA cache_size=-{int(cache_mb) * 1024}")
        cur.execute("PRAGMA temp_store=MEMORY")
        cur.execute(f"PRAGMA wal_autocheckpoint={int(autocheckpoint)}")
        cur.close()

    return on_connect


def create_db_engine(url: str) -> Engine:
    url = normalise_url(url)
    u = make_url(url)
    if u.get_backend_name() == "sqlite":
        if u.database and u.database != ":memory:":
            Path(u.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(
            url,
            connect_args={"check_same_thread": False, "timeout": 30},
            pool_size=8,
            max_overflow=8,
        )
        settings = get_settings()
        event.listen(
            engine,
            "connect",
            _sqlite_pragmas(
                settings.sqlite_cache_mb,
                settings.sqlite_synchronous,
                wal_checkpoint.autocheckpoint_pages(settings.sqlite_checkpoint_seconds),
            ),
        )

        # Take the write lock at BEGIN so concurrent writers queue instead of failing on upgrade.
        @event.listens_for(engine, "connect")
        def _no_pysqlite_begin(dbapi_conn: Any, _record: Any) -> None:
            dbapi_conn.isolation_level = None

        # Readers (execution option ``readonly=True``) use a deferred BEGIN and never block.
        # Writers in this process queue on a lock before BEGIN IMMEDIATE: SQLite's own busy
        # handler sleeps and retries, which turns a short wait into a long tail (an MLLP ACK
        # behind a background ingest); a lock hands over as soon as the writer commits.
        # Writes inside ``background_writes()`` (the inbox processor) yield to the others.
        write_lock = _write_locks[engine] = WriteLock()
        # the file this engine's database is: a request finds it gone or replaced as a 503
        # (see interop.store.sqlite_file), checked before the write lock is taken
        db_file = _watch(engine, u.database)

        @event.listens_for(engine, "begin")
        def _begin_immediate(conn: Any) -> None:
            if db_file is not None:
                db_file.check()
            if conn.get_execution_options().get("readonly"):
                conn.exec_driver_sql("BEGIN")
                return
            # the lock is held by a token kept with the pooled connection: only that token
            # releases it, and the pool's events release it when the connection goes back
            # to the pool or is thrown away still holding it (see _release_left_behind)
            token = object()
            write_lock.acquire(background=in_background(), owner=token)
            conn.info[HOLDS_WRITE_LOCK] = token
            try:
                conn.exec_driver_sql("BEGIN IMMEDIATE")
            except Exception:
                # SQLAlchemy's handling of the failed statement may already have rolled back
                # and so released it (the rollback event): released here only if not — this
                # was the "release of an unheld write lock" 500 when BEGIN failed (another
                # process writing, the file replaced), and a second release could have freed
                # the lock under the writer that took it in between
                if _pop_token(conn) is token:
                    write_lock.release(token)
                raise

        # SQLAlchemy fires these events before it commits (rolls back) on the DBAPI
        # connection: end the transaction here, then hand the lock over, so that the next
        # writer's BEGIN IMMEDIATE does not find the database still locked and fall into
        # SQLite's sleeping busy handler. SQLAlchemy's own commit()/rollback() that follow
        # find no transaction open and do nothing. A failed COMMIT is raised as SQLAlchemy
        # would have raised it (IntegrityError, OperationalError, ...).
        def _commit_then_release(conn: Any) -> None:
            token = _pop_token(conn)
            if token is not None:
                dbapi_error = conn.dialect.loaded_dbapi.Error
                try:
                    conn.connection.dbapi_connection.commit()
                except dbapi_error as exc:
                    raise DBAPIError.instance("COMMIT", None, exc, dbapi_error) from exc
                finally:
                    write_lock.release(token)

        def _rollback_then_release(conn: Any) -> None:
            token = _pop_token(conn)
            if token is not None:
                try:
                    conn.connection.dbapi_connection.rollback()
                except Exception:  # noqa: BLE001, S110 - SQLAlchemy's own rollback reports it
                    pass
                finally:
                    write_lock.release(token)

        def _release_left_behind(_dbapi_conn: Any, record: Any, *_args: Any) -> None:
            """A pooled connection checked in, invalidated or closed while its record still
            holds the write lock (a transaction SQLAlchemy ended without our commit/rollback
            events reaching the token, e.g. after the connection was invalidated): the lock is
            released here, before the record's info can be cleared for a new connection —
            it is never left held for the next writer to wait on for ever."""
            token = record.info.pop(HOLDS_WRITE_LOCK, None) if record is not None else None
            if token is not None:
                log.warning("a database connection left the write lock held; released")
                write_lock.release(token)

        event.listen(engine, "commit", _commit_then_release)
        event.listen(engine, "rollback", _rollback_then_release)
        for pool_event in ("checkin", "invalidate", "close"):
            event.listen(engine, pool_event, _release_left_behind)

        if u.database and u.database != ":memory:":
            wal_checkpoint.start(
                engine,
                settings.sqlite_checkpoint_seconds,
                db_file.check if db_file is not None else None,
            )
        return engine
    engine = create_engine(url, pool_size=10, max_overflow=10)
    _ping_after_idle(engine)
    return engine


HOLDS_WRITE_LOCK = "holds_write_lock"
"""Pooled connection info key: the token of the write lock its transaction holds."""

_write_locks: weakref.WeakKeyDictionary[Engine, WriteLock] = weakref.WeakKeyDictionary()
_files: weakref.WeakKeyDictionary[Engine, DatabaseFile] = weakref.WeakKeyDictionary()


def write_lock_of(engine: Engine) -> WriteLock | None:
    """The in-process write lock of a SQLite engine (None for PostgreSQL)."""
    return _write_locks.get(engine)


def database_file_of(engine: Engine) -> DatabaseFile | None:
    """The watched database file of a file-backed SQLite engine."""
    return _files.get(engine)


def _watch(engine: Engine, database: str | None) -> DatabaseFile | None:
    if not database or database == ":memory:" or database.startswith("file:"):
        return None
    db_file = _files[engine] = DatabaseFile(database)

    @event.listens_for(engine, "do_connect")
    def _not_anew(*_args: Any) -> None:
        # once the service has its file, a connection never creates the path anew (SQLite
        # would: an empty database where the removed one was, reported as "replaced")
        db_file.check()

    @event.listens_for(engine, "connect")
    def _opened(_dbapi_conn: Any, _record: Any) -> None:
        db_file.opened()

    return db_file


def _pop_token(conn: Any) -> object | None:
    """The write-lock token of a connection's transaction, taken off it (None when it holds
    none, or when the connection was invalidated: its pool events release it then)."""
    try:
        info = conn.info
    except Exception:  # noqa: BLE001 - an invalidated connection has no info to reach
        return None
    token: object | None = info.pop(HOLDS_WRITE_LOCK, None)
    return token


PING_AFTER_IDLE_SECONDS = 5.0
"""A pooled PostgreSQL connection idle for longer is tested before it is handed out."""


def _ping_after_idle(engine: Engine) -> None:
    """Test a pooled connection before use only when it has been idle a while: the server
    may have closed it (a restart, an idle timeout) since. One in use a moment ago is not
    tested: ``pool_pre_ping`` tested every check-out, a round trip per transaction, which
    under load cost a sixth of the single-create throughput. A dead connection is
    replaced (SQLAlchemy retries the check-out on ``DisconnectionError``)."""

    @event.listens_for(engine, "checkin")
    def _idle_since(_dbapi_conn: Any, record: Any) -> None:
        record.info["idle_since"] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def _test_if_idle(dbapi_conn: Any, record: Any, _proxy: Any) -> None:
        since = record.info.get("idle_since")
        if since is None or time.monotonic() - since <= PING_AFTER_IDLE_SECONDS:
            return
        try:
            engine.dialect.do_ping(dbapi_conn)
        except engine.dialect.loaded_dbapi.Error as exc:
            if engine.dialect.is_disconnect(exc, dbapi_conn, None):
                raise DisconnectionError(f"a pooled connection was closed: {exc}") from exc
            raise


def get_engine(url: str) -> Engine:
    with _lock:
        engine = _engines.get(url)
        if engine is None:
            engine = create_db_engine(url)
            _engines[url] = engine
        return engine


def dispose_engines() -> None:
    with _lock:
        for engine in _engines.values():
            wal_checkpoint.stop(engine)
            engine.dispose()
        _engines.clear()
