"""PostgreSQL's :class:`~interop.store.backends.BulkWriter`: one statement for a small batch,
COPY for a large one.

Every statement is a round trip to the server. A small batch (a group commit of single
creates, a Bundle's Tasks) goes as one statement of data-modifying CTEs, each table's rows
as one array per column (``unnest``): the statement's text depends on which tables get rows,
not on how many, so the driver and the server reuse its parse and plan, and each column is
one array literal (:mod:`interop.store.pg_arrays`). Past :data:`SMALL_WRITE_ROWS` rows a
long statement costs more to build, send and parse than the round trips it saves, and each
table's rows go by a binary COPY (formatted by psycopg's C code, the JSON sent as it is),
the other operations as a statement each.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import psycopg
from sqlalchemy import Table
from sqlalchemy.dialects import postgresql
from sqlalchemy.exc import DBAPIError

from interop.store.backends.base import BulkWriter, Flushed
from interop.store.pg_arrays import array_literal

SMALL_WRITE_ROWS = 400
"""Up to this many rows (all tables together: about 60 Observations with their index rows),
a flush of inserts is one statement; more go by COPY, a statement per table. Measured
(docs/benchmarks.md, session 11): one statement is 10-25 % faster per created Observation
up to 32 of them (200 rows), even at 64 (400 rows), 14 % slower at 128 and 58 % at 256."""
SMALL_VERSIONS_ROWS = 1000
"""The same for a flush that also deletes or updates (new versions: their index rows are
replaced, the rows before kept in the history): split, it takes a statement per operation
and only the index rows go by COPY, so one statement pays longer. Measured on new versions
of Flags (about 5 rows each): one statement 6-22 % faster up to 128 of them (640 rows),
5 % slower at 256."""

_TYPE_NAMES = {
    "VARCHAR": "text",
    "TEXT": "text",
    "BIGINT": "int8",
    "INTEGER": "int4",
    "SMALLINT": "int2",
    "BOOLEAN": "bool",
    "FLOAT": "float8",
    "DOUBLE PRECISION": "float8",
    "BYTEA": "bytea",
}
_TYPES: dict[tuple[str, tuple[str, ...]], list[str]] = {}


def column_types(table: Table, columns: tuple[str, ...]) -> list[str]:
    """PostgreSQL type names of ``columns`` (each value is sent in its column's own form: a
    binary COPY's bytes as they are, an array parameter typed)."""
    key = (table.name, columns)
    types = _TYPES.get(key)
    if types is None:
        dialect = postgresql.dialect()
        types = _TYPES[key] = [
            _TYPE_NAMES[table.c[c].type.compile(dialect=dialect).split("(")[0]] for c in columns
        ]
    return types


def _quoted(columns: Sequence[str]) -> str:
    return ", ".join('"' + c + '"' for c in columns)


def _arrays(types: list[str]) -> str:
    return ", ".join(f"%s::{t}[]" for t in types)


def _array_params(rows: Sequence[tuple[Any, ...]], types: list[str]) -> list[str]:
    """One array literal per column of ``rows``."""
    return [
        array_literal(column, t) for column, t in zip(zip(*rows, strict=True), types, strict=True)
    ]


class PostgresWriter(BulkWriter):
    """Queued operations, run at :meth:`flush` as one statement or one per operation."""

    def flush(self) -> Flushed:
        ops, rows = self._take()
        if not ops:
            return Flushed()
        versions = any(op[0] != "insert" for op in ops)
        if rows <= (SMALL_VERSIONS_ROWS if versions else SMALL_WRITE_ROWS):
            return self._one_statement(ops)
        out = Flushed()
        for op in ops:
            if op[0] == "insert" and op[4] == "error":
                self._copy(op[1], op[2], op[3])
                continue
            part, params = _statement(op)
            if op[0] == "insert" and op[4] == "report":
                got = self._conn.exec_driver_sql(part, tuple(params)).all()
                out.skipped = _not_returned(op[3], got)
            elif op[0] == "update":
                out.updated = len(self._conn.exec_driver_sql(part, tuple(params)).all())
            else:
                self._conn.exec_driver_sql(part, tuple(params))
        return out

    def _one_statement(self, ops: list[tuple[Any, ...]]) -> Flushed:
        parts: list[str] = []
        params: list[Any] = []
        tail = " SELECT 1"
        for n, op in enumerate(ops):
            part, op_params = _statement(op)
            parts.append(f"w{n} AS ({part})")
            params.extend(op_params)
            if op[0] == "update":
                tail = f" SELECT count(*) FROM w{n}"
            elif op[0] == "insert" and op[4] == "report":
                tail = f" SELECT {_quoted(op[2])} FROM w{n}"
        got = self._conn.exec_driver_sql("WITH " + ", ".join(parts) + tail, tuple(params)).all()
        out = Flushed()
        for op in ops:
            if op[0] == "update":
                out.updated = int(got[0][0])
            elif op[0] == "insert" and op[4] == "report":
                out.skipped = _not_returned(op[3], got)
        return out

    def _copy(
        self, table: Table, columns: tuple[str, ...], rows: Sequence[tuple[Any, ...]]
    ) -> None:
        """COPY the rows in, inside the transaction. Driver errors are raised as SQLAlchemy's
        (an :class:`~sqlalchemy.exc.IntegrityError` for a taken key), as an INSERT's are."""
        statement = f'COPY "{table.name}" ({_quoted(columns)}) FROM STDIN (FORMAT BINARY)'
        driver = self._conn.connection.driver_connection
        try:
            with driver.cursor() as cur, cur.copy(statement) as copy:  # type: ignore[union-attr]
                copy.set_types(column_types(table, columns))
                for row in rows:
                    copy.write_row(row)
        except psycopg.Error as exc:
            raise DBAPIError.instance(statement, None, exc, psycopg.Error) from exc


def _statement(op: tuple[Any, ...]) -> tuple[str, list[Any]]:
    """The statement (without ``WITH``) for one queued operation, and its parameters."""
    kind, table = op[0], op[1]
    if kind == "delete":
        _, _, column, values, where = op
        types = column_types(table, (*where, column))
        n = len(values)
        arrays = [*([v] * n for v in where.values()), values]
        return _sql(op), [array_literal(a, t) for a, t in zip(arrays, types, strict=True)]
    if kind == "insert":
        return _sql(op), _array_params(op[3], column_types(table, op[2]))
    return _sql(op), _array_params(op[4], column_types(table, op[2] + op[3]))


_SQL: dict[tuple[Any, ...], str] = {}


def _sql(op: tuple[Any, ...]) -> str:
    """The text of an operation's statement (kept: a batch's statements are the same few)."""
    kind, table = op[0], op[1]
    shape = (
        kind,
        table.name,
        op[2],
        tuple(op[4]) if kind == "delete" else op[3 if kind == "update" else 4],
    )
    sql = _SQL.get(shape)
    if sql is not None:
        return sql
    if kind == "delete":
        # every column of the key from arrays, not ``res_type = 'Task'``: statistics taken
        # before the first resources of a type were written estimate that at one row, and
        # the planner then scanned every index row of the type for each update (39 ms
        # against 0.3 ms for 7 Tasks)
        _, _, column, _, where = op
        key = (*where, column)
        types = column_types(table, key)
        if where:
            sql = (
                f'DELETE FROM "{table.name}" AS t USING unnest({_arrays(types)}) '
                f"AS k({_quoted(key)}) WHERE " + " AND ".join(f't."{c}" = k."{c}"' for c in key)
            )
        else:
            sql = f'DELETE FROM "{table.name}" WHERE "{column}" = ANY(%s::{types[0]}[])'
    elif kind == "insert":
        _, _, columns, _, on_conflict = op
        types = column_types(table, columns)
        sql = f'INSERT INTO "{table.name}" ({_quoted(columns)}) SELECT * FROM unnest({_arrays(types)})'
        if on_conflict != "error":
            sql += " ON CONFLICT DO NOTHING"
        if on_conflict == "report":
            sql += f" RETURNING {_quoted(columns)}"
    else:
        _, _, columns, key, _ = op
        types = column_types(table, columns + key)
        names = _quoted([*columns, *(f"k_{k}" for k in key)])
        sets = ", ".join(f'"{c}" = v."{c}"' for c in columns)
        match = " AND ".join(f'r."{k}" = v."k_{k}"' for k in key)
        sql = (
            f'UPDATE "{table.name}" AS r SET {sets} FROM unnest({_arrays(types)}) '
            f"AS v({names}) WHERE {match} RETURNING 1"
        )
    _SQL[shape] = sql
    return sql


def _not_returned(
    rows: Sequence[tuple[Any, ...]], returned: Sequence[Any]
) -> list[tuple[Any, ...]]:
    """The rows an ``ON CONFLICT DO NOTHING RETURNING`` insert did not return."""
    written = {tuple(r) for r in returned}
    return [row for row in rows if tuple(row) not in written]
