"""Bulk writes, one implementation per database backend, behind one small interface.

The store writes rows in batches: a transaction Bundle's or an ingest message's creates, the
new versions of a batch's Tasks, group-committed single creates. How a batch is best sent
depends on the database: SQLite inserts with the driver's ``executemany`` (no round trips
to save); PostgreSQL sends a small batch as one statement of data-modifying CTEs (one round
trip) and a large one by COPY, a statement per table (a long statement costs more to send
and parse than the round trips it saves). :class:`BulkWriter` is what the repository sees;
:func:`bulk_writer` picks the implementation for a connection.

A writer queues operations and runs them at :meth:`BulkWriter.flush`. The operations of one
flush must not depend on each other: PostgreSQL may run them as one statement, where each
sees the database as it was before the flush (a delete never removes a row the same flush
inserts).
"""

from __future__ import annotations

from sqlalchemy import Connection

from interop.store.backends.base import BulkWriter, Flushed, OnConflict
from interop.store.backends.postgresql import PostgresWriter
from interop.store.backends.sqlite import SqliteWriter

__all__ = ["BulkWriter", "Flushed", "OnConflict", "bulk_writer"]


def bulk_writer(conn: Connection) -> BulkWriter:
    """The writer for ``conn``'s backend."""
    if conn.dialect.name == "postgresql":
        return PostgresWriter(conn)
    return SqliteWriter(conn)
