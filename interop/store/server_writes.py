"""PostgreSQL COPYs that the server runs while this process goes on working.

A bulk ingest on PostgreSQL alternates between building rows (this process) and storing them
(the server). Waiting for each COPY to end leaves one of the two idle at any time. A
:class:`ServerWrites` queue instead sends each COPY without waiting: the rows are formatted at
once (by psycopg's C code, into bytes), and the statement, the data and the end of each COPY
go out as the connection can take them, from :meth:`ServerWrites.pump`, which the builder
calls between rows and which never blocks. :meth:`ServerWrites.finish` waits for the rest and
raises the first error, as a SQLAlchemy exception like the one a plain COPY would raise.

The queue owns the connection while it has work: nothing else may use the connection until
:meth:`finish` (or :meth:`cancel`) has returned (``WriteTx.conn`` sees to that).
"""

from __future__ import annotations

import io
import select
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import pq
from psycopg.copy import Copy, FileWriter
from sqlalchemy.exc import DBAPIError, IntegrityError

SEND_BLOCK = 256 * 1024
"""Bytes handed to libpq at a time (it queues them and sends what the socket takes)."""

_SENT_QUERY, _SENDING_DATA, _ENDED = range(3)


@dataclass
class _Job:
    statement: str
    data: bytes
    failure: Callable[[IntegrityError], BaseException] | None
    state: int | None = None
    """None until the statement is sent, then one of the states above."""
    sent: int = 0
    completed: bool = False
    """The server reported the COPY done (its end of results is still to be read)."""


class ServerWrites:
    """COPYs queued on one psycopg connection, run by the server in order."""

    def __init__(self, driver: psycopg.Connection[Any]) -> None:
        self._driver = driver
        self._pgconn = driver.pgconn
        self._jobs: deque[_Job] = deque()
        self._error: BaseException | None = None

    @property
    def stage(self) -> str | None:
        """Where the first queued COPY is: ``queued``, ``starting`` (sent, the server's
        answer not in), ``sending`` (data still to go), ``ending`` (its result not in), or
        None when nothing is queued."""
        if not self._jobs:
            return None
        state = self._jobs[0].state
        return "queued" if state is None else ("starting", "sending", "ending")[state]

    def copy(
        self,
        statement: str,
        types: list[str],
        rows: Sequence[Sequence[Any]],
        failure: Callable[[IntegrityError], BaseException] | None = None,
    ) -> None:
        """Queue ``statement`` (a ``COPY … FROM STDIN (FORMAT BINARY)``) with ``rows`` in
        ``types``. ``failure`` turns a key violation into the exception :meth:`finish`
        raises."""
        buffer = io.BytesIO()
        with (
            self._driver.cursor() as cursor,
            Copy(cursor, binary=True, writer=FileWriter(buffer)) as copy,
        ):
            copy.set_types(types)
            for row in rows:
                copy.write_row(row)
        if not self._jobs and self._pgconn.transaction_status == pq.TransactionStatus.IDLE:
            self._begin()
        self._jobs.append(_Job(statement, buffer.getvalue(), failure))
        self.pump()

    def pump(self) -> bool:
        """Move the queued COPYs on as far as the connection allows without waiting; True
        when every one has ended."""
        pg = self._pgconn
        while self._jobs:
            job = self._jobs[0]
            if job.state is None:
                pg.send_query(job.statement.encode())
                job.state = _SENT_QUERY
            if job.state == _SENT_QUERY:
                if not self._ready():
                    return False
                res = pg.get_result()
                if res is None or res.status != pq.ExecStatus.COPY_IN:
                    self._fail(job, res)
                    continue
                job.state = _SENDING_DATA
            if job.state == _SENDING_DATA:
                view = memoryview(job.data)
                while job.sent < len(view):
                    block = view[job.sent : job.sent + SEND_BLOCK]
                    if not pg.put_copy_data(block):
                        pg.flush()
                        return False
                    job.sent += len(block)
                    if pg.flush():
                        return False
                if not pg.put_copy_end():
                    return False
                job.state = _ENDED
            # ended: the COPY's result, then the end of its results
            if not self._ready():
                return False
            res = pg.get_result()
            if res is None and job.completed:
                self._jobs.popleft()
            elif res is None or res.status != pq.ExecStatus.COMMAND_OK:
                self._fail(job, res)
            else:
                job.completed = True
        return True

    def finish(self) -> None:
        """Wait until every queued COPY has ended; raise the first error."""
        try:
            while not self.pump():
                self._wait()
        finally:
            self._jobs.clear()
        if self._error is not None:
            error, self._error = self._error, None
            raise error

    def cancel(self) -> None:
        """Abandon the queue (the transaction is being rolled back): end a COPY in progress
        with an error and read the server's answers, so that the connection can roll back."""
        pg = self._pgconn
        job = self._jobs[0] if self._jobs else None
        self._jobs.clear()
        self._error = None
        if job is None or job.state is None:
            return
        if job.state == _SENT_QUERY:
            res = self._result()
            if res is None or res.status != pq.ExecStatus.COPY_IN:
                self._drain()
                return
            job.state = _SENDING_DATA
        if job.state == _SENDING_DATA:
            pg.put_copy_end(b"abandoned: the transaction is rolled back")
        self._drain()

    # ---- internals ----------------------------------------------------------------------
    def _begin(self) -> None:
        """Open the transaction the driver would open before its first statement (it opens
        one when it finds the connection idle, as it finds it after this)."""
        if self._driver.autocommit:
            return
        res = self._pgconn.exec_(b"BEGIN")
        if res.status != pq.ExecStatus.COMMAND_OK:
            raise psycopg.errors.error_from_result(res, encoding=self._driver.info.encoding)

    def _ready(self) -> bool:
        """All output sent and the next result in, without waiting."""
        pg = self._pgconn
        if pg.flush():
            return False
        pg.consume_input()
        return not pg.is_busy()

    def _wait(self) -> None:
        """Wait until the connection can take output or has input."""
        pg = self._pgconn
        sock = pg.socket
        select.select([sock], [sock] if pg.flush() else [], [], 1.0)

    def _result(self) -> Any:
        """The next result, waiting for it."""
        while not self._ready():
            self._wait()
        return self._pgconn.get_result()

    def _drain(self) -> None:
        """Read results up to the end of the current statement's."""
        while self._result() is not None:
            pass

    def _fail(self, job: _Job, res: Any) -> None:
        """The job's COPY failed (or did not start): keep its error, read the rest of the
        server's answer and drop the queue (the transaction is aborted)."""
        if res is None:
            exc: Exception = psycopg.OperationalError(self._pgconn.get_error_message())
        else:
            exc = psycopg.errors.error_from_result(res, encoding=self._driver.info.encoding)
            self._drain()
        wrapped = DBAPIError.instance(job.statement, None, exc, psycopg.Error)
        failure = job.failure
        error = failure(wrapped) if failure and isinstance(wrapped, IntegrityError) else wrapped
        if self._error is None:
            self._error = error
        self._jobs.clear()
