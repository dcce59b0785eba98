"""Array literals read back by PostgreSQL as the values they were made from, for any text
(quotes, backslashes, braces, commas, spaces, NULL-like words, any Unicode), numbers,
booleans, bytes and NULLs."""

from __future__ import annotations

import math
import os
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import ARRAY, Connection, Text, bindparam, cast, func, select
from sqlalchemy.types import NullType

from interop.store.pg_arrays import array_literal

PG_URL = os.environ.get("INTEROP_TEST_PG_URL")
pytestmark = pytest.mark.skipif(not PG_URL, reason="needs PostgreSQL (INTEROP_TEST_PG_URL)")

TEXT = st.text(st.characters(blacklist_characters="\x00", blacklist_categories=("Cs",)))
TRICKY = st.sampled_from(["", "NULL", "null", '"', "\\", "{}", "a,b", " x ", "\\x00", "\n\t"])
VALUES: dict[str, Any] = {
    "text": st.one_of(TEXT, TRICKY),
    "int8": st.integers(min_value=-(2**63), max_value=2**63 - 1),
    "int4": st.integers(min_value=-(2**31), max_value=2**31 - 1),
    "float8": st.floats(allow_nan=False, allow_infinity=False),
    "bool": st.booleans(),
    "bytea": st.binary(max_size=64),
}


@pytest.fixture(scope="module")
def conn() -> Iterator[Connection]:
    from interop.store.db import create_db_engine

    assert PG_URL is not None
    engine = create_db_engine(PG_URL)
    with engine.connect() as c:
        yield c
    engine.dispose()


def _round_trip(conn: Connection, values: list[Any], pg_type: str) -> list[Any]:
    driver = conn.connection.driver_connection
    assert driver is not None
    with driver.cursor() as cur:
        cur.execute(f"SELECT unnest(%s::{pg_type}[])", (array_literal(values, pg_type),))
        return [row[0] for row in cur.fetchall()]


@pytest.mark.parametrize("pg_type", sorted(VALUES))
def test_values_come_back_as_they_were(conn: Connection, pg_type: str) -> None:
    @settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(st.lists(st.one_of(st.none(), VALUES[pg_type]), max_size=12))
    def check(values: list[Any]) -> None:
        got = _round_trip(conn, values, pg_type)
        if pg_type == "float8":
            assert all(
                (a is None and b is None) or (a is not None and math.isclose(a, b, rel_tol=0))
                for a, b in zip(values, got, strict=True)
            )
        elif pg_type == "bytea":
            assert [None if b is None else bytes(b) for b in got] == values
        else:
            assert got == values

    check()


def test_one_of_matches_exactly_its_values_as_one_untyped_array(conn: Connection) -> None:
    """``one_of`` on PostgreSQL: a column is one of the listed values, whatever they hold —
    and the list goes as one untyped parameter read into ``text[]``, so that PostgreSQL
    makes it an array constant it tests by hash (typed as text, ``%s::VARCHAR`` was
    converted per execution and searched value by value for every row)."""
    from sqlalchemy import column, table
    from sqlalchemy.dialects.postgresql import psycopg

    from interop.store.value_lists import one_of

    probe = table("p", column("v"))
    sql = str(
        select(probe.c.v).where(one_of(conn, probe.c.v, ["a"])).compile(dialect=psycopg.dialect())
    )
    assert "AS TEXT[]" in sql and "::VARCHAR AS TEXT[]" not in sql

    @settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(st.lists(VALUES["text"], max_size=8), st.lists(VALUES["text"], max_size=8))
    def check(listed: list[str], others: list[str]) -> None:
        stored = list(dict.fromkeys(listed + others))
        rows = select(
            func.unnest(
                cast(bindparam("s", array_literal(stored, "text"), type_=NullType()), ARRAY(Text))
            ).column_valued("v")
        ).subquery()
        got = conn.execute(select(rows.c.v).where(one_of(conn, rows.c.v, listed))).scalars().all()
        assert sorted(got) == sorted(v for v in stored if v in set(listed))

    check()
