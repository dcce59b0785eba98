"""audit events stored lean: one row per event in the chain, one per patient it names

Every read by a GP or a nurse writes an AuditEvent before it is answered. Stored as a generic
FHIR resource an event cost a resource row and about eleven generic index rows; from this
revision it is one ``audit_chain`` row (its link, the columns the log is searched by, and the
event's JSON) and one ``audit_patient`` row per patient it names. The events stored before
are moved over, and their resource, history and index rows removed.

Revision ID: 0020
Revises: 0016
Create Date: 2026-12-06 09:00:00
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import sqlalchemy as sa
from alembic import op

revision = "0020"
down_revision = "0016"
branch_labels = None
depends_on = None

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _columns(event: dict[str, Any]) -> dict[str, Any]:
    """The look-up columns of one stored event (as ``interop.store.audit_rows`` writes them)."""
    agents = [a for a in event.get("agent") or [] if isinstance(a, dict)]
    actor_id = next((a.get("altId") for a in agents if a.get("altId")), None)
    what = None
    patients: dict[str, None] = {}
    for n, entity in enumerate(event.get("entity") or []):
        target = entity.get("what") or {} if isinstance(entity, dict) else {}
        ref = target.get("reference")
        if n == 0:
            what = ref if isinstance(ref, str) else target.get("display")
        if isinstance(ref, str) and ref.startswith("Patient/"):
            patients[ref.split("/", 1)[1]] = None
    recorded = 0
    text = event.get("recorded") or (event.get("meta") or {}).get("lastUpdated")
    if isinstance(text, str):
        try:
            t = datetime.fromisoformat(text)
            if t.tzinfo is None:
                t = t.replace(tzinfo=UTC)
            recorded = (t - _EPOCH) // timedelta(microseconds=1)
        except ValueError:
            recorded = 0
    return {
        "recorded": recorded,
        "action": event.get("action") if isinstance(event.get("action"), str) else None,
        "outcome": event.get("outcome") if isinstance(event.get("outcome"), str) else None,
        "actor_id": str(actor_id)[:200] if actor_id is not None else None,
        "what": what[:255] if isinstance(what, str) else None,
        "patients": list(patients),
    }


def upgrade() -> None:
    with op.batch_alter_table("audit_chain") as batch:
        batch.add_column(sa.Column("recorded", sa.BigInteger(), nullable=True))
        batch.add_column(sa.Column("action", sa.String(length=1), nullable=True))
        batch.add_column(sa.Column("outcome", sa.String(length=2), nullable=True))
        batch.add_column(sa.Column("actor_id", sa.String(length=200), nullable=True))
        batch.add_column(sa.Column("what", sa.String(length=255), nullable=True))
        batch.add_column(sa.Column("content", sa.LargeBinary(), nullable=True))
    op.create_table(
        "audit_patient",
        sa.Column("patient_id", sa.String(length=64), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("recorded", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("patient_id", "seq"),
    )
    conn = op.get_bind()
    chain = sa.table(
        "audit_chain",
        sa.column("seq", sa.Integer()),
        sa.column("res_id", sa.String()),
        sa.column("recorded", sa.BigInteger()),
        sa.column("action", sa.String()),
        sa.column("outcome", sa.String()),
        sa.column("actor_id", sa.String()),
        sa.column("what", sa.String()),
        sa.column("content", sa.LargeBinary()),
    )
    resource = sa.table(
        "resource",
        sa.column("res_type", sa.String()),
        sa.column("res_id", sa.String()),
        sa.column("content", sa.LargeBinary()),
    )
    named = sa.table(
        "audit_patient",
        sa.column("patient_id", sa.String()),
        sa.column("seq", sa.Integer()),
        sa.column("recorded", sa.BigInteger()),
    )
    moved = conn.execute(
        sa.select(chain.c.seq, resource.c.content)
        .select_from(
            chain.join(
                resource,
                sa.and_(resource.c.res_type == "AuditEvent", resource.c.res_id == chain.c.res_id),
            )
        )
        .order_by(chain.c.seq)
    ).all()
    update = (
        chain.update()
        .where(chain.c.seq == sa.bindparam("s"))
        .values(
            content=sa.bindparam("c"),
            recorded=sa.bindparam("r"),
            action=sa.bindparam("a"),
            outcome=sa.bindparam("o"),
            actor_id=sa.bindparam("i"),
            what=sa.bindparam("w"),
        )
    )
    for start in range(0, len(moved), 2000):
        updates: list[dict[str, Any]] = []
        patients: list[dict[str, Any]] = []
        for seq, content in moved[start : start + 2000]:
            cols = _columns(orjson.loads(bytes(content)))
            updates.append(
                {
                    "s": seq,
                    "c": bytes(content),
                    "r": cols["recorded"],
                    "a": cols["action"],
                    "o": cols["outcome"],
                    "i": cols["actor_id"],
                    "w": cols["what"],
                }
            )
            patients.extend(
                {"patient_id": p, "seq": seq, "recorded": cols["recorded"]}
                for p in cols["patients"]
            )
        conn.execute(update, updates)
        if patients:
            conn.execute(named.insert(), patients)
    for table in (
        "search_token",
        "search_reference",
        "search_date",
        "search_string",
        "resource_history",
        "resource",
    ):
        conn.execute(sa.text(f"DELETE FROM {table} WHERE res_type = 'AuditEvent'"))
    op.create_index("ux_audit_chain_res_id", "audit_chain", ["res_id"], unique=True)
    op.create_index(
        "ix_audit_chain_created",
        "audit_chain",
        ["what", "actor_id"],
        sqlite_where=sa.text("action = 'C'"),
        postgresql_where=sa.text("action = 'C'"),
    )


def downgrade() -> None:
    # the events go back to being resource rows (without their generic index rows: rebuild
    # those by re-indexing if AuditEvents must be searched on the older revision)
    op.execute(
        "INSERT INTO resource (res_type, res_id, version, patient_id, last_updated, deleted, "
        "content) SELECT 'AuditEvent', res_id, 1, NULL, recorded, false, content "
        "FROM audit_chain WHERE content IS NOT NULL"
    )
    op.drop_index("ix_audit_chain_created", table_name="audit_chain")
    op.drop_index("ux_audit_chain_res_id", table_name="audit_chain")
    op.drop_table("audit_patient")
    with op.batch_alter_table("audit_chain") as batch:
        for name in ("content", "what", "actor_id", "outcome", "action", "recorded"):
            batch.drop_column(name)
