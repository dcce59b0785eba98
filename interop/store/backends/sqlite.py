"""SQLite's :class:`~interop.store.backends.BulkWriter`: the driver's ``executemany``.

SQLite runs in this process: a statement costs no round trip, and a prepared INSERT run for
each row (in the driver's C code) is the cheapest way in. The operations run one after the
other, in the order they were queued.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import Table

from interop.store.backends.base import BulkWriter, Flushed, OnConflict

IN_CHUNK = 500
"""Values per ``IN (…)`` list of a delete (well below SQLite's limit of bound variables)."""

_SQL: dict[tuple[Any, ...], str] = {}


def _quoted(columns: Sequence[str]) -> str:
    return ", ".join('"' + c + '"' for c in columns)


def _insert_sql(table: Table, columns: tuple[str, ...], on_conflict: OnConflict) -> str:
    key = ("insert", table.name, columns, on_conflict != "error")
    sql = _SQL.get(key)
    if sql is None:
        marks = ", ".join("?" for _ in columns)
        sql = f'INSERT INTO "{table.name}" ({_quoted(columns)}) VALUES ({marks})'
        if on_conflict != "error":
            sql += " ON CONFLICT DO NOTHING"
        _SQL[key] = sql
    return sql


class SqliteWriter(BulkWriter):
    """Queued operations, each run by one ``executemany`` (a delete: one statement per
    :data:`IN_CHUNK` values) at :meth:`flush`."""

    def flush(self) -> Flushed:
        ops, _ = self._take()
        out = Flushed()
        for op in ops:
            if op[0] == "insert":
                _, table, columns, rows, on_conflict = op
                written = self._conn.exec_driver_sql(
                    _insert_sql(table, columns, on_conflict), list(rows)
                ).rowcount
                if on_conflict == "report" and written < len(rows):
                    out.skipped = self._not_there(table, columns, rows)
            elif op[0] == "delete":
                self._delete(*op[1:])
            else:
                out.updated = self._update(*op[1:])
        return out

    def _delete(
        self, table: Table, column: str, values: Sequence[Any], where: dict[str, Any]
    ) -> None:
        fixed = "".join(f'"{c}" = ? AND ' for c in where)
        for i in range(0, len(values), IN_CHUNK):
            chunk = tuple(values[i : i + IN_CHUNK])
            marks = ", ".join("?" * len(chunk))
            self._conn.exec_driver_sql(
                f'DELETE FROM "{table.name}" WHERE {fixed}"{column}" IN ({marks})',
                (*where.values(), *chunk),
            )

    def _update(
        self,
        table: Table,
        columns: tuple[str, ...],
        key: tuple[str, ...],
        rows: Sequence[tuple[Any, ...]],
    ) -> int:
        if not rows:
            return 0
        sets = ", ".join(f'"{c}" = ?' for c in columns)
        match = " AND ".join(f'"{k}" = ?' for k in key)
        sql = f'UPDATE "{table.name}" SET {sets} WHERE {match}'
        return int(self._conn.exec_driver_sql(sql, list(rows)).rowcount)

    def _not_there(
        self, table: Table, columns: tuple[str, ...], rows: Sequence[tuple[Any, ...]]
    ) -> list[tuple[Any, ...]]:
        """The rows not in ``table`` as they are (a skipped row's key is held by another)."""
        match = " AND ".join(f'"{c}" IS ?' for c in columns)
        sql = f'SELECT 1 FROM "{table.name}" WHERE {match} LIMIT 1'
        return [row for row in rows if self._conn.exec_driver_sql(sql, tuple(row)).first() is None]
