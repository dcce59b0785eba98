"""PostgreSQL COPYs left to the server (``ServerWrites``): they run in order while the caller
works, their first error is raised when they are finished, and a queue abandoned in any
state leaves a connection that rolls back cleanly."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import Connection, func, select, text
from sqlalchemy.exc import IntegrityError

from interop.store.schema import unique_identifier_table
from interop.store.server_writes import ServerWrites

STATEMENT = (
    'COPY "unique_identifier" (res_type, "system", "value", res_id) FROM STDIN (FORMAT BINARY)'
)
TYPES = ["text", "text", "text", "text"]
SYSTEM = "urn:test:queued"


def _rows(first: int, n: int, pad: str = "") -> list[tuple[str, str, str, str]]:
    return [("Observation", SYSTEM, f"{i}{pad}", f"obs-{i}") for i in range(first, first + n)]


@pytest.fixture
def conn(services: Any, backend: str) -> Iterator[Connection]:
    if backend != "postgresql":
        pytest.skip("COPYs left to the server are PostgreSQL's")
    with services.engine.connect() as c:
        c.begin()  # as a WriteTx's: SQLAlchemy's transaction, nothing sent to the server yet
        yield c


def _stored(services: Any) -> int:
    with services.engine.connect() as c:
        return int(
            c.execute(
                select(func.count())
                .select_from(unique_identifier_table)
                .where(unique_identifier_table.c.system == SYSTEM)
            ).scalar_one()
        )


def _queue(conn: Connection) -> ServerWrites:
    driver = conn.connection.driver_connection
    assert driver is not None
    return ServerWrites(driver)


def test_queued_copies_run_in_order_while_the_caller_works(services: Any, conn: Connection) -> None:
    queue = _queue(conn)
    for k in range(5):
        queue.copy(STATEMENT, TYPES, _rows(k * 1000, 1000))
    while not queue.pump():  # the caller's work would go here; pump never blocks
        pass
    queue.finish()
    conn.commit()
    assert _stored(services) == 5000


def test_the_queue_opens_the_transaction_it_writes_in(services: Any, conn: Connection) -> None:
    queue = _queue(conn)  # the driver has sent nothing yet: no BEGIN on the server
    queue.copy(STATEMENT, TYPES, _rows(0, 10))
    queue.finish()
    conn.rollback()
    assert _stored(services) == 0


def test_the_first_error_is_raised_at_finish_and_the_rest_is_dropped(
    services: Any, conn: Connection
) -> None:
    class Taken(Exception):
        pass

    def taken(exc: IntegrityError) -> Taken:
        return Taken(str(exc.orig))

    queue = _queue(conn)
    queue.copy(STATEMENT, TYPES, _rows(0, 100))
    queue.copy(STATEMENT, TYPES, _rows(50, 100), taken)  # 50..99 are the first one's
    queue.copy(STATEMENT, TYPES, _rows(500, 100))
    with pytest.raises(Taken, match="unique"):
        queue.finish()
    conn.rollback()
    assert conn.execute(text("SELECT 1")).scalar_one() == 1
    assert _stored(services) == 0


def test_an_error_without_a_translation_is_sqlalchemys(conn: Connection) -> None:
    queue = _queue(conn)
    queue.copy(STATEMENT, TYPES, _rows(0, 10) + _rows(0, 1))
    with pytest.raises(IntegrityError):
        queue.finish()
    conn.rollback()


def _hold(services: Any, sql: str) -> tuple[Connection, threading.Timer]:
    """Another transaction that holds what ``sql`` takes, released (rolled back) after a
    moment from a timer thread."""
    other = services.engine.connect()
    other.execute(text(sql))
    timer = threading.Timer(0.5, other.rollback)
    return other, timer


def _cancel_while_held(
    services: Any, conn: Connection, hold: str, rows: list[Any], stage: str
) -> None:
    """Queue a COPY of ``rows`` while another transaction holds what ``hold`` takes, cancel
    it at ``stage`` once the other transaction lets go, and check that the connection rolls
    back clean with nothing stored."""
    other, timer = _hold(services, hold)
    try:
        queue = _queue(conn)
        queue.copy(STATEMENT, TYPES, rows)
        for _ in range(20):
            assert not queue.pump()
            time.sleep(0.005)
        assert queue.stage == stage
        timer.start()
        queue.cancel()
    finally:
        timer.join()
        other.close()
    conn.rollback()
    assert conn.execute(text("SELECT 1")).scalar_one() == 1
    assert _stored(services) == 0


def test_cancel_while_the_copy_waits_to_start(services: Any, conn: Connection) -> None:
    # the COPY waits for the table lock: the server has not answered it yet
    _cancel_while_held(
        services,
        conn,
        "LOCK TABLE unique_identifier IN ACCESS EXCLUSIVE MODE",
        _rows(0, 10),
        "starting",
    )


def test_cancel_while_the_data_is_being_sent(services: Any, conn: Connection) -> None:
    # the other transaction holds an uncommitted claim that the COPY's first row collides
    # with: the server waits on it and stops reading, so the rest of the data stays queued
    _cancel_while_held(
        services,
        conn,
        'INSERT INTO unique_identifier (res_type, "system", "value", res_id) '
        f"VALUES ('Observation', '{SYSTEM}', '0{'x' * 200}', 'held')",
        _rows(0, 60_000, pad="x" * 200),  # ~16 MB
        "sending",
    )
