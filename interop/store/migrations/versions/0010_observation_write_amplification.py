"""fewer index rows per stored Observation

* An Observation's Patient subject is indexed once, as ``observation_index.patient_id``: the
  ``patient`` and ``subject`` rows it also had in ``search_reference`` (no query read them)
  are deleted; a subject that is not a Patient keeps its ``subject`` row.
* ``ix_obs_patient_time`` becomes a partial index on (patient_id, effective) over the primary
  rows only (every query that uses it asks for ``is_primary``); the constant ``is_primary``
  ends its key so that SQLite still counts it as covering where the old index was.

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-29 05:40:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

_reference = sa.table(
    "search_reference",
    sa.column("res_type", sa.String),
    sa.column("res_id", sa.String),
    sa.column("param", sa.String),
    sa.column("target", sa.String),
)
_observation = sa.table(
    "observation_index",
    sa.column("res_id", sa.String),
    sa.column("patient_id", sa.String),
    sa.column("is_primary", sa.Boolean),
)


def upgrade() -> None:
    r = _reference.c
    op.execute(
        sa.delete(_reference).where(
            r.res_type == "Observation",
            sa.or_(
                r.param == "patient",
                sa.and_(r.param == "subject", sa.func.substr(r.target, 1, 8) == "Patient/"),
            ),
        )
    )
    op.drop_index("ix_obs_patient_time", table_name="observation_index")
    op.create_index(
        "ix_obs_patient_time",
        "observation_index",
        ["patient_id", "effective", "is_primary"],
        sqlite_where=sa.text("is_primary = 1"),
        postgresql_where=sa.text("is_primary"),
    )
    if op.get_bind().dialect.name == "postgresql":
        op.execute("ANALYZE search_reference")
        op.execute("ANALYZE observation_index")


def downgrade() -> None:
    op.drop_index("ix_obs_patient_time", table_name="observation_index")
    op.create_index(
        "ix_obs_patient_time", "observation_index", ["patient_id", "is_primary", "effective"]
    )
    o = _observation.c
    for param in ("patient", "subject"):
        op.execute(
            sa.insert(_reference).from_select(
                ["res_type", "res_id", "param", "target"],
                sa.select(
                    sa.literal("Observation"),
                    o.res_id,
                    sa.literal(param),
                    sa.literal("Patient/") + o.patient_id,
                ).where(o.is_primary == sa.true(), o.patient_id.is_not(None)),
            )
        )
