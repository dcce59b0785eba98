"""search index: quantities and numbers of the generic types

The official R4 quantity and number parameters of the types without an index of their own
(Condition ``onset-age``, Encounter ``length``, RiskAssessment ``probability``, Invoice
``totalgross`` …) get a table, ``search_quantity``, backfilled from the resources already
stored; new writes index them directly. (An Observation's quantities stay in its own index.)

Revision ID: 0021
Revises: 0019
Create Date: 2026-12-06 18:30:00
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import orjson
import sqlalchemy as sa
from alembic import op

revision = "0021"
down_revision = "0019"
branch_labels = None
depends_on = None

BATCH = 1000


def _id_column() -> sa.Column[int]:
    return sa.Column(
        "row_id",
        sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
        primary_key=True,
        autoincrement=True,
    )


def _resources(conn: sa.Connection, res_type: str) -> Iterator[sa.Row[Any]]:
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
    result = conn.execute(stmt.execution_options(stream_results=True, yield_per=BATCH))
    for part in result.partitions(BATCH):
        yield from part


def upgrade() -> None:
    op.create_table(
        "search_quantity",
        _id_column(),
        sa.Column("res_type", sa.String(64), nullable=False),
        sa.Column("res_id", sa.String(64), nullable=False),
        sa.Column("param", sa.String(64), nullable=False),
        sa.Column("system", sa.String(255), nullable=False),
        sa.Column("code", sa.String(64), nullable=False),
        sa.Column("low", sa.Float(), nullable=False),
        sa.Column("high", sa.Float(), nullable=False),
    )
    op.create_index("ix_quantity_lookup", "search_quantity", ["res_type", "param", "low"])
    op.create_index("ix_quantity_resource", "search_quantity", ["res_type", "res_id"])

    from interop.fhir.searchparams import extract, has_quantities, supported_types

    conn = op.get_bind()
    q = sa.table(
        "search_quantity",
        *(sa.column(c) for c in ("res_type", "res_id", "param", "system", "code")),
        sa.column("low", sa.Float),
        sa.column("high", sa.Float),
    )
    for res_type in supported_types():
        if not has_quantities(res_type):
            continue
        rows: list[dict[str, Any]] = []
        for row in list(_resources(conn, res_type)):
            resource = orjson.loads(bytes(row.content))
            for param, system, code, low, high in extract(resource).quantities:
                rows.append(
                    {
                        "res_type": res_type,
                        "res_id": row.res_id,
                        "param": param,
                        "system": system,
                        "code": code,
                        "low": low,
                        "high": high,
                    }
                )
            if len(rows) >= BATCH:
                conn.execute(sa.insert(q), rows)
                rows = []
        if rows:
            conn.execute(sa.insert(q), rows)


def downgrade() -> None:
    op.drop_index("ix_quantity_resource", table_name="search_quantity")
    op.drop_index("ix_quantity_lookup", table_name="search_quantity")
    op.drop_table("search_quantity")
