"""outbox: the receiver's answer per entry

A message the receiver answers entry by entry (a PMD upload's ``batch-response``) keeps those
answers on its outbox row, ``answers`` (JSON: per entry its id, status, the receiver's location
of what it stored, or the reason it refused), shown by the message API and ``outbox show``.

Revision ID: 0023
Revises: 0022
Create Date: 2026-12-07 00:10:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0023"
down_revision = "0022"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("outbox", schema=None) as batch_op:
        batch_op.add_column(sa.Column("answers", sa.LargeBinary(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("outbox", schema=None) as batch_op:
        batch_op.drop_column("answers")
