"""A column matching any of many values, as one bound parameter.

``column IN (…)`` with hundreds of values is compiled anew for every length (SQLAlchemy renders
one placeholder per value, psycopg converts the long query text, and neither can reuse a cached
statement), which cost a worklist request more than the queries themselves. One parameter keeps
the statement's text the same whatever the number of values: a text array on PostgreSQL
(``= ANY(%s::text[])``, parsed by the server), a JSON array on SQLite (``IN (SELECT value FROM
json_each(?))``); both reach the column's index value by value."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import orjson
from sqlalchemy import ColumnElement, Connection, Text, any_, bindparam, cast, func, select
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.types import NullType

from interop.store.pg_arrays import array_literal


def pg_text_array(values: Sequence[str]) -> ColumnElement[Any]:
    """PostgreSQL: ``values`` as one ``text[]`` parameter (untyped, see :func:`one_of`)."""
    return cast(bindparam(None, array_literal(list(values), "text"), type_=NullType()), ARRAY(Text))


def one_of(
    conn: Connection, column: ColumnElement[str], values: Sequence[str]
) -> ColumnElement[bool]:
    """``column`` is one of ``values`` (strings), as one parameter on either backend."""
    if conn.dialect.name == "postgresql":
        # untyped: ``CAST(%s AS TEXT[])`` reads the parameter straight into an array constant,
        # which PostgreSQL then tests by hash; typed as text it is ``%s::VARCHAR`` converted to
        # an array at run time and searched value by value for every row (a worklist's 500
        # patients against 4,670 open Tasks: 250 ms against 23 ms)
        return column == any_(pg_text_array(values))
    listed = func.json_each(bindparam(None, orjson.dumps(list(values)).decode(), type_=Text))
    return column.in_(select(listed.table_valued("value").c.value).scalar_subquery())


def one_of_sql(conn: Connection, values: Sequence[str]) -> tuple[str, str]:
    """For SQL written for the driver (``conn.exec_driver_sql``): the test that a column is one
    of ``values``, to put after the column, and its one parameter. The statement's text stays
    the same whatever the number of values, and SQLAlchemy compiles nothing (an expanding
    ``IN`` was rendered anew for every batch of a write: about a tenth of a create's own time
    went to building the cache keys and texts of two such look-ups)."""
    if conn.dialect.name == "postgresql":
        return "= ANY(%s::text[])", array_literal(list(values), "text")
    return "IN (SELECT value FROM json_each(?))", orjson.dumps(list(values)).decode()
