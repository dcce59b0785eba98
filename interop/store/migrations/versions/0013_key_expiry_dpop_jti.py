"""API keys that expire; DPoP proof ids seen (replay check across API processes)

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-06 03:30:00
"""

from __future__ import annotations

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("actor", schema=None) as batch_op:
        batch_op.add_column(sa.Column("expires", sa.BigInteger(), nullable=True))
    op.create_table(
        "dpop_jti",
        sa.Column("key", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("expires", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("key"),
    )
    op.create_index("ix_dpop_jti_expires", "dpop_jti", ["expires"])


def downgrade() -> None:
    op.drop_index("ix_dpop_jti_expires", table_name="dpop_jti")
    op.drop_table("dpop_jti")
    with op.batch_alter_table("actor", schema=None) as batch_op:
        batch_op.drop_column("expires")
