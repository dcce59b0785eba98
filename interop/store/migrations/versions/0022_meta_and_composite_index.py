"""search index: meta tags, profiles and security labels; composites of the generic types

``_tag``, ``_profile`` and ``_security`` (R4 parameters of every resource) become token rows,
so searches by them and ``$meta`` of a type or the server read the index instead of the
resources; and the composites of the generic types (Group ``characteristic-value``,
DocumentReference ``relationship``, the conformance types' ``context-type-value`` and
``context-type-quantity`` …) get their components' rows under the composite's key
(``interop.fhir.searchparams.composite_key``). Both are backfilled from the resources already
stored; new writes index them directly. No table changes.

Revision ID: 0022
Revises: 0021
Create Date: 2026-12-06 21:10:00
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import orjson
import sqlalchemy as sa
from alembic import op

revision = "0022"
down_revision = "0021"
branch_labels = None
depends_on = None

BATCH = 1000
_TABLES = {
    "tokens": ("search_token", ("param", "system", "code")),
    "references": ("search_reference", ("param", "target")),
    "dates": ("search_date", ("param", "start", "end")),
    "strings": ("search_string", ("param", "value")),
    "quantities": ("search_quantity", ("param", "system", "code", "low", "high")),
}
_META = ("_tag", "_profile", "_security")
_MARKS = (b'"tag"', b'"profile"', b'"security"')


def _resources(conn: sa.Connection, res_type: str) -> Iterator[sa.Row[Any]]:
    """The type's current resources, a batch at a time in id order (never all in memory: a
    store of a million Observations is read through too)."""
    r = sa.table(
        "resource",
        sa.column("res_type"),
        sa.column("res_id"),
        sa.column("deleted"),
        sa.column("content", sa.LargeBinary),
    )
    after = ""
    while True:
        batch = conn.execute(
            sa.select(r.c.res_id, r.c.content)
            .where(r.c.res_type == res_type, r.c.deleted == sa.false(), r.c.res_id > after)
            .order_by(r.c.res_id)
            .limit(BATCH)
        ).all()
        if not batch:
            return
        yield from batch
        after = batch[-1].res_id


def _new(param: str, composites: tuple[str, ...]) -> bool:
    """Whether an index row is one this migration adds (the others are there already)."""
    return param in _META or param.startswith(composites)


def upgrade() -> None:
    from interop.fhir.searchparams import (
        composite_key,
        composite_plan,
        extract,
        supported_types,
    )

    conn = op.get_bind()
    tables = {
        kind: sa.table(name, sa.column("res_type"), sa.column("res_id"), *map(sa.column, cols))
        for kind, (name, cols) in _TABLES.items()
    }
    for res_type in supported_types():
        if res_type == "AuditEvent":  # stored lean, without a meta (store.audit_rows)
            continue
        composites = tuple(
            composite_key(name, i)
            for name, _roots, comps in composite_plan(res_type)
            for i in range(len(comps))
        )
        rows: dict[str, list[dict[str, Any]]] = {kind: [] for kind in _TABLES}
        for row in _resources(conn, res_type):
            content = bytes(row.content)
            if not composites and not any(m in content for m in _MARKS):
                continue
            entries = extract(orjson.loads(content))
            for kind, (_name, cols) in _TABLES.items():
                for values in getattr(entries, kind):
                    if _new(values[0], composites):
                        rows[kind].append(
                            {
                                "res_type": res_type,
                                "res_id": row.res_id,
                                **dict(zip(cols, values, strict=True)),
                            }
                        )
            if sum(len(v) for v in rows.values()) >= BATCH:
                _flush(conn, tables, rows)
        _flush(conn, tables, rows)


def _flush(
    conn: sa.Connection, tables: dict[str, Any], rows: dict[str, list[dict[str, Any]]]
) -> None:
    for kind, batch in rows.items():
        if batch:
            conn.execute(sa.insert(tables[kind]), batch)
            batch.clear()


def downgrade() -> None:
    conn = op.get_bind()
    for name, _cols in _TABLES.values():
        t = sa.table(name, sa.column("param"))
        conn.execute(sa.delete(t).where(sa.or_(t.c.param.in_(_META), t.c.param.like("%$_#%"))))
