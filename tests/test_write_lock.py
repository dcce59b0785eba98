"""The SQLite write lock: foreground writers go before background ones, a background writer
is paused (by the time it held the lock) only while foreground writers are active and is
never starved, and the lock is handed over only once the transaction has ended."""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, text
from sqlalchemy.exc import IntegrityError, OperationalError

from interop.store.db import create_db_engine, write_lock_of
from interop.store.unavailable import StoreUnavailable, unavailable_reason
from interop.store.write_lock import WriteLock, background_writes, in_background


def _start(fn: Any, *args: Any) -> threading.Thread:
    t = threading.Thread(target=fn, args=args, daemon=True)
    t.start()
    return t


def _wait_for(cond: Any, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.001)


def _take(lock: WriteLock, order: list[str], name: str, background: bool) -> None:
    lock.acquire(background=background)
    order.append(name)
    lock.release()


def _queue_both_then_release(lock: WriteLock) -> list[str]:
    """With the lock held: queue a background writer, then a foreground one, release, and
    return the order in which they took it."""
    order: list[str] = []
    bg = _start(_take, lock, order, "background", True)
    _wait_for(lambda: lock._bg_waiting == 1)
    fg = _start(_take, lock, order, "foreground", False)
    _wait_for(lambda: lock._fg_waiting == 1)
    lock.release()
    bg.join(5)
    fg.join(5)
    return order


def test_foreground_writers_go_first_while_a_background_writer_pauses() -> None:
    lock = WriteLock(ratio=1.0, quiet=60.0)  # foreground counts as active for a minute
    lock.acquire(background=True)
    time.sleep(0.3)
    lock.release()  # the background writer now pauses for ~300 ms
    lock.acquire()  # a foreground writer holds the lock
    assert _queue_both_then_release(lock) == ["foreground", "background"]


def test_a_background_writer_past_its_pause_goes_before_later_foreground_writers() -> None:
    lock = WriteLock(ratio=1.0, quiet=60.0)
    lock.acquire(background=True)
    time.sleep(0.01)
    lock.release()
    lock.acquire()  # a foreground writer holds the lock past the background's pause
    time.sleep(0.05)
    assert _queue_both_then_release(lock) == ["background", "foreground"]


def test_background_pauses_for_as_long_as_it_held_the_lock_while_foreground_is_active() -> None:
    lock = WriteLock(ratio=1.0, quiet=60.0)  # foreground counts as active for a minute
    lock.acquire(background=True)
    time.sleep(0.2)
    lock.release()
    lock.acquire()  # a foreground write
    lock.release()
    t0 = time.monotonic()
    lock.acquire(background=True)
    waited = time.monotonic() - t0
    lock.release()
    assert 0.1 <= waited < 2.0


def test_background_is_not_paused_when_foreground_is_idle() -> None:
    lock = WriteLock(ratio=1.0, quiet=0.01)
    lock.acquire()
    lock.release()
    lock.acquire(background=True)
    time.sleep(0.3)
    lock.release()
    time.sleep(0.02)  # the foreground write is more than ``quiet`` ago
    t0 = time.monotonic()
    lock.acquire(background=True)
    assert time.monotonic() - t0 < 0.1
    lock.release()


def test_background_gets_its_share_under_a_stream_of_foreground_writes() -> None:
    lock = WriteLock(ratio=1.0, quiet=0.05)
    stop = threading.Event()
    fg_writes = 0

    def foreground() -> None:
        nonlocal fg_writes
        while not stop.is_set():
            lock.acquire()
            time.sleep(0.001)
            fg_writes += 1
            lock.release()

    writers = [_start(foreground) for _ in range(3)]
    try:
        _wait_for(lambda: fg_writes > 10)
        waits = []
        for _ in range(5):
            t0 = time.monotonic()
            lock.acquire(background=True)
            waits.append(time.monotonic() - t0)
            time.sleep(0.02)
            lock.release()
    finally:
        stop.set()
        for w in writers:
            w.join(5)
    # each pause lasts about as long as the previous hold (20 ms), never indefinitely
    assert max(waits) < 1.0, waits
    assert fg_writes > 20


def test_the_pause_holds_back_only_background_writers() -> None:
    lock = WriteLock(ratio=1.0, quiet=60.0)
    lock.acquire(background=True)
    time.sleep(0.2)
    lock.release()  # background now owes a pause of ~200 ms while foreground is active
    lock.acquire()
    lock.release()
    t0 = time.monotonic()
    _start(lambda: (lock.acquire(), lock.release())).join(5)
    assert time.monotonic() - t0 < 0.1
    assert not lock.locked()
    assert lock.release() is False  # released twice: logged, changes nothing


def test_background_writes_marks_the_context() -> None:
    assert not in_background()
    with background_writes():
        assert in_background()
        seen: list[bool] = []
        t = _start(lambda: seen.append(in_background()))  # a new thread starts unmarked
        t.join(5)
        assert seen == [False]
    assert not in_background()


def test_the_lock_is_handed_over_only_after_the_transaction_ended(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """When the next writer gets the lock, the database is no longer locked by the previous
    one (it would otherwise meet SQLite's sleeping busy handler)."""
    path = tmp_path / "lock.db"
    free_at_release: list[bool] = []

    class ProbingLock(WriteLock):
        def release(self, owner: object | None = None) -> bool:
            probe = sqlite3.connect(path, timeout=0, isolation_level=None)
            try:
                probe.execute("BEGIN IMMEDIATE")
                probe.execute("ROLLBACK")
                free_at_release.append(True)
            except sqlite3.OperationalError:
                free_at_release.append(False)
            finally:
                probe.close()
            return super().release(owner)

    monkeypatch.setattr("interop.store.db.WriteLock", ProbingLock)
    engine = create_db_engine(f"sqlite:///{path}")
    try:
        with engine.begin() as conn:
            conn.execute(text("CREATE TABLE t (x INTEGER)"))
        with engine.begin() as conn:
            conn.execute(text("INSERT INTO t VALUES (1)"))
        with pytest.raises(ZeroDivisionError), engine.begin() as conn:
            conn.execute(text("INSERT INTO t VALUES (2)"))
            1 / 0  # noqa: B018 - rolls the transaction back
        assert free_at_release == [True, True, True]
        with engine.connect() as conn:
            assert conn.execute(text("SELECT x FROM t")).scalars().all() == [1]
    finally:
        engine.dispose()


def test_a_failed_commit_is_raised_as_sqlalchemy_would_and_frees_the_lock(tmp_path: Path) -> None:
    engine = create_db_engine(f"sqlite:///{tmp_path / 'fk.db'}")
    try:
        with engine.begin() as conn:
            conn.execute(text("CREATE TABLE p (id INTEGER PRIMARY KEY)"))
            conn.execute(
                text("CREATE TABLE c (pid INTEGER REFERENCES p(id) DEFERRABLE INITIALLY DEFERRED)")
            )
        # a deferred foreign key is only checked at COMMIT
        with pytest.raises(IntegrityError), engine.begin() as conn:
            conn.execute(text("INSERT INTO c VALUES (99)"))
        done = threading.Event()

        def write() -> None:
            with engine.begin() as conn:
                conn.execute(text("INSERT INTO p VALUES (99)"))
                conn.execute(text("INSERT INTO c VALUES (99)"))
            done.set()

        _start(write).join(10)
        assert done.is_set()  # the lock was handed over and the failed transaction ended
        with engine.connect() as conn:
            assert conn.execute(text("SELECT count(*) FROM c")).scalar() == 1
    finally:
        engine.dispose()


def test_foreground_writers_take_turns_in_arrival_order() -> None:
    """A writer that releases and at once asks again queues behind the waiting ones (without
    this, a polling loop kept the lock to itself and the others waited for seconds)."""
    lock = WriteLock()
    lock.acquire()
    order: list[str] = []
    started = threading.Event()

    def waiter(name: str) -> None:
        started.set()
        lock.acquire()
        order.append(name)
        lock.release()

    others = [threading.Thread(target=waiter, args=(n,)) for n in ("a", "b")]
    for t in others:
        started.clear()
        t.start()
        started.wait()
        time.sleep(0.05)  # each is waiting before the next one starts
    lock.release()
    lock.acquire()  # the releasing writer asks again at once: it goes after a and b
    order.append("again")
    lock.release()
    for t in others:
        t.join(timeout=5)
    assert order == ["a", "b", "again"]


@contextmanager
def _table_t(path: Path) -> Iterator[tuple[Engine, WriteLock]]:
    """An engine on a new database with a table ``t (x)``, and its write lock."""
    engine = create_db_engine(f"sqlite:///{path}")
    lock = write_lock_of(engine)
    assert lock is not None
    try:
        with engine.begin() as conn:
            conn.execute(text("CREATE TABLE t (x INTEGER)"))
        yield engine, lock
    finally:
        engine.dispose()


def test_a_connection_invalidated_mid_transaction_frees_the_lock(tmp_path: Path) -> None:
    """A write transaction whose connection is thrown away in the middle (SQLAlchemy
    invalidates a connection it finds broken) releases the lock when the pool throws the
    connection away: before, the commit/rollback events could no longer reach the flag on
    the invalidated connection and every later writer waited for ever."""
    with _table_t(tmp_path / "inv.db") as (engine, lock):
        conn = engine.connect()
        conn.begin()
        conn.execute(text("INSERT INTO t VALUES (1)"))
        assert lock.locked()
        conn.invalidate()  # as after a "closed database" error
        assert not lock.locked()
        conn.close()
        done = threading.Event()

        def write() -> None:
            with engine.begin() as c:
                c.execute(text("INSERT INTO t VALUES (2)"))
            done.set()

        _start(write).join(10)
        assert done.is_set()
        with engine.connect() as c:  # the invalidated transaction's row is not there
            assert c.execute(text("SELECT x FROM t")).scalars().all() == [2]


def test_a_release_by_a_writer_not_holding_the_lock_leaves_it_to_its_holder() -> None:
    lock = WriteLock()
    mine, other = object(), object()
    lock.acquire(owner=mine)
    assert lock.release(other) is False  # logged; the lock stays with its holder
    assert lock.locked()
    assert lock.release(mine) is True and not lock.locked()
    assert lock.release(mine) is False  # twice: nothing happens


def test_a_writer_waits_at_most_its_wait_then_the_store_is_unavailable() -> None:
    lock = WriteLock(wait=0.2)
    lock.acquire(owner="stuck")
    t0 = time.monotonic()
    with pytest.raises(StoreUnavailable, match="busy"):
        lock.acquire()
    assert 0.15 < time.monotonic() - t0 < 2.0
    assert lock.release("stuck")
    lock.acquire()  # free again: taken at once
    lock.release()


def test_a_failed_begin_is_a_store_error_and_releases_the_lock_once(tmp_path: Path) -> None:
    """BEGIN IMMEDIATE failing (another process holds the database beyond the busy wait; a
    replaced file) is raised as the database error it is — a 503 at the API — not as
    "release of an unheld write lock" (a 500: SQLAlchemy's handling of the failed statement
    had already released the lock through the rollback event, and the second release could
    have freed it under the writer that took it in between). The lock is free afterwards."""
    path = tmp_path / "busy.db"
    with _table_t(path) as (engine, lock):
        other = sqlite3.connect(path, isolation_level=None)  # another process writing
        other.execute("BEGIN IMMEDIATE")
        conn = engine.connect()
        conn.connection.dbapi_connection.execute("PRAGMA busy_timeout=50")  # type: ignore[union-attr]
        with pytest.raises(OperationalError) as raised, conn.begin():
            conn.execute(text("INSERT INTO t VALUES (1)"))
        assert unavailable_reason(raised.value) is not None  # a 503 at the API
        assert not lock.locked()
        conn.close()
        other.execute("ROLLBACK")
        other.close()
        with engine.begin() as c:
            c.execute(text("INSERT INTO t VALUES (2)"))
        assert not lock.locked()
