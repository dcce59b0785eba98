"""audit chain links name their HMAC key

Links written from now on are ``HMAC-SHA256(key, previous link || event)`` under a key kept
outside the database; ``key_id`` names the key (its fingerprint, never the key). Earlier links
keep their plain SHA-256 hashes (``key_id`` empty); the first keyed link covers the last of
them, so they stay anchored.

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-06 03:30:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("audit_chain") as batch:
        batch.add_column(sa.Column("key_id", sa.String(length=32), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("audit_chain") as batch:
        batch.drop_column("key_id")
