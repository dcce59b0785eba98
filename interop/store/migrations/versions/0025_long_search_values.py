"""search index: a token or reference longer than its column is indexed whole (by digest)

Before this revision a reference's target or canonical was cut to its first 255 characters
(and a longer token was stored as given on SQLite, refused by PostgreSQL), so two canonicals
with the same first 255 characters matched each other's searches. Now such a value is
indexed as :func:`interop.fhir.searchparams.index_value` forms it: its first characters, ``~``
and the SHA-256 of the whole value, 255 characters. This revision re-indexes the token and
reference rows of the resources that hold a value 255 characters or longer (the rows of the
rest are unchanged). The downgrade leaves them so: code before this revision cannot find a
value that long (it looks for its first 255 characters), but never matches another by it.
No table changes.

Revision ID: 0025
Revises: 0024
Create Date: 2026-12-07 05:10:00
"""

from __future__ import annotations

from typing import Any

import orjson
import sqlalchemy as sa
from alembic import op

revision = "0025"
down_revision = "0024"
branch_labels = None
depends_on = None

WIDTH = 255
_AUDIT = "AuditEvent"


def _tables() -> tuple[Any, Any, Any]:
    resource = sa.table(
        "resource",
        sa.column("res_type"),
        sa.column("res_id"),
        sa.column("deleted"),
        sa.column("content", sa.LargeBinary),
    )
    token = sa.table(
        "search_token",
        sa.column("res_type"),
        sa.column("res_id"),
        sa.column("param"),
        sa.column("system"),
        sa.column("code"),
    )
    reference = sa.table(
        "search_reference",
        sa.column("res_type"),
        sa.column("res_id"),
        sa.column("param"),
        sa.column("target"),
    )
    return resource, token, reference


def upgrade() -> None:
    """Replace the token and reference rows of every resource holding a value of 255
    characters or more by the rows of its current content."""
    from interop.fhir.searchparams import extract

    conn = op.get_bind()
    resource, token, reference = _tables()
    length = sa.func.length
    keys = conn.execute(
        sa.union(
            sa.select(token.c.res_type, token.c.res_id).where(
                sa.or_(length(token.c.code) >= WIDTH, length(token.c.system) >= WIDTH)
            ),
            sa.select(reference.c.res_type, reference.c.res_id).where(
                length(reference.c.target) >= WIDTH
            ),
        )
    ).all()
    for res_type, res_id in keys:
        if res_type == _AUDIT:
            continue
        row = conn.execute(
            sa.select(resource.c.content).where(
                resource.c.res_type == res_type,
                resource.c.res_id == res_id,
                resource.c.deleted == sa.false(),
            )
        ).first()
        if row is None:
            continue
        entries = extract(orjson.loads(bytes(row.content)))
        key = {"res_type": res_type, "res_id": res_id}
        for t in (token, reference):
            conn.execute(sa.delete(t).where(t.c.res_type == res_type, t.c.res_id == res_id))
        tokens = [{**key, "param": p, "system": sy, "code": c} for p, sy, c in entries.tokens]
        refs = [{**key, "param": p, "target": t} for p, t in entries.references]
        if tokens:
            conn.execute(sa.insert(token), tokens)
        if refs:
            conn.execute(sa.insert(reference), refs)


def downgrade() -> None:
    pass
