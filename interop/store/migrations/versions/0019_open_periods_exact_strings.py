"""search index: open effectivePeriods, and string values as written for ``:exact``

An Observation whose ``effectivePeriod`` has a start and no end is ongoing: its index end is
now open (as the generic date index already wrote it), so ``date=ge…`` finds it and ``eb``
does not. String parameters get a second row per value with the text as written (param
``<name>:exact``), for case- and accent-sensitive ``:exact`` searches. Both are backfilled for
the resources already stored; new writes index them directly.

Revision ID: 0019
Revises: 0020
Create Date: 2026-12-06 09:00:00
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import orjson
import sqlalchemy as sa
from alembic import op

revision = "0019"
down_revision = "0020"
branch_labels = None
depends_on = None

OPEN_END = 2**62
BATCH = 1000
EXACT = ":exact"


def _resources(conn: sa.Connection, res_type: str) -> Iterator[sa.Row[Any]]:
    """The current resources of a type, streamed (a large store is never held in memory)."""
    r = sa.table(
        "resource",
        sa.column("res_type"),
        sa.column("res_id"),
        sa.column("deleted"),
        sa.column("content", sa.LargeBinary),
    )
    stmt = sa.select(r.c.res_id, r.c.content).where(
        r.c.res_type == res_type, r.c.deleted == sa.false()
    )
    # on the statement, not the connection (which would stay in streaming mode for alembic)
    result = conn.execute(stmt.execution_options(stream_results=True, yield_per=BATCH))
    for part in result.partitions(BATCH):
        yield from part


def upgrade() -> None:
    conn = op.get_bind()
    o = sa.table(
        "observation_index",
        sa.column("res_id"),
        sa.column("effective"),
        sa.column("effective_end", sa.BigInteger),
    )
    ongoing: list[str] = []
    for row in _resources(conn, "Observation"):
        content = bytes(row.content)
        if b'"effectivePeriod"' not in content:
            continue
        period = orjson.loads(content).get("effectivePeriod")
        if isinstance(period, dict) and "start" in period and "end" not in period:
            ongoing.append(row.res_id)
    for i in range(0, len(ongoing), BATCH):
        conn.execute(
            sa.update(o)
            .where(o.c.res_id.in_(ongoing[i : i + BATCH]))
            .values(effective_end=OPEN_END)
        )

    from interop.fhir.searchparams import definitions, extract, supported_types

    s = sa.table(
        "search_string",
        sa.column("res_type"),
        sa.column("res_id"),
        sa.column("param"),
        sa.column("value"),
    )
    for res_type in supported_types():
        if not any(p.type == "string" for p in definitions(res_type).values()):
            continue
        rows: list[dict[str, str]] = []
        for row in list(_resources(conn, res_type)):
            resource = orjson.loads(bytes(row.content))
            for param, value in extract(resource).strings:
                if param.endswith(EXACT):
                    rows.append(
                        {"res_type": res_type, "res_id": row.res_id, "param": param, "value": value}
                    )
            if len(rows) >= BATCH:
                conn.execute(sa.insert(s), rows)
                rows = []
        if rows:
            conn.execute(sa.insert(s), rows)


def downgrade() -> None:
    s = sa.table("search_string", sa.column("param"))
    op.execute(sa.delete(s).where(s.c.param.like(f"%{EXACT}")))
    o = sa.table("observation_index", sa.column("effective"), sa.column("effective_end"))
    op.execute(
        sa.update(o).where(o.c.effective_end == OPEN_END).values(effective_end=o.c.effective)
    )
