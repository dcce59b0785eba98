"""Engine creation for SQLite (embedded default, WAL) and PostgreSQL (production)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError, DisconnectionError

from interop.config import get_settings
from interop.store import wal_checkpoint
from interop.store.write_lock import WriteLock, in_background

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
        write_lock = WriteLock()

        @event.listens_for(engine, "begin")
        def _begin_immediate(conn: Any) -> None:
            if conn.get_execution_options().get("readonly"):
                conn.exec_driver_sql("BEGIN")
                return
            write_lock.acquire(background=in_background())
            conn.info["holds_write_lock"] = True
            try:
                conn.exec_driver_sql("BEGIN IMMEDIATE")
            except Exception:
                conn.info.pop("holds_write_lock", None)
                write_lock.release()
                raise

        # SQLAlchemy fires these events before it commits (rolls back) on the DBAPI
        # connection: end the transaction here, then hand the lock over, so that the next
        # writer's BEGIN IMMEDIATE does not find the database still locked and fall into
        # SQLite's sleeping busy handler. SQLAlchemy's own commit()/rollback() that follow
        # find no transaction open and do nothing. A failed COMMIT is raised as SQLAlchemy
        # would have raised it (IntegrityError, OperationalError, ...).
        def _commit_then_release(conn: Any) -> None:
            if conn.info.get("holds_write_lock"):
                dbapi_error = conn.dialect.loaded_dbapi.Error
                try:
                    conn.connection.dbapi_connection.commit()
                except dbapi_error as exc:
                    raise DBAPIError.instance("COMMIT", None, exc, dbapi_error) from exc
                finally:
                    conn.info.pop("holds_write_lock", None)
                    write_lock.release()

        def _rollback_then_release(conn: Any) -> None:
            if conn.info.get("holds_write_lock"):
                try:
                    conn.connection.dbapi_connection.rollback()
                except Exception:  # noqa: BLE001, S110 - SQLAlchemy's own rollback reports it
                    pass
                finally:
                    conn.info.pop("holds_write_lock", None)
                    write_lock.release()

        event.listen(engine, "commit", _commit_then_release)
        event.listen(engine, "rollback", _rollback_then_release)

        if u.database and u.database != ":memory:":
            wal_checkpoint.start(engine, settings.sqlite_checkpoint_seconds)
        return engine
    engine = create_engine(url, pool_size=10, max_overflow=10)
    _ping_after_idle(engine)
    return engine


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
