"""emergency access (nødrett): time-limited openings of a patient's record, with a reason

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-06 04:30:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "emergency_access",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("actor_id", sa.String(length=200), nullable=False),
        sa.Column("actor_role", sa.String(length=20), nullable=False),
        sa.Column("actor_hpr", sa.String(length=20), nullable=True),
        sa.Column("actor_orgnr", sa.String(length=20), nullable=True),
        sa.Column("actor_name", sa.String(length=200), nullable=True),
        sa.Column("patient_id", sa.String(length=64), nullable=False),
        sa.Column("reason", sa.String(length=1000), nullable=False),
        sa.Column("start", sa.BigInteger(), nullable=False),
        sa.Column("end", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_emergency_access_actor_id", "emergency_access", ["actor_id"])
    op.create_index("ix_emergency_access_patient_id", "emergency_access", ["patient_id"])
    op.create_index("ix_emergency_access_start", "emergency_access", ["start"])


def downgrade() -> None:
    op.drop_index("ix_emergency_access_start", table_name="emergency_access")
    op.drop_index("ix_emergency_access_patient_id", table_name="emergency_access")
    op.drop_index("ix_emergency_access_actor_id", table_name="emergency_access")
    op.drop_table("emergency_access")
