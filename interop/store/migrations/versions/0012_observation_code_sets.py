"""one observation index row per code, with the id of its codings

The observation index had a row for every coding of an Observation's code and of each
component's: 19 rows for a Withings weight, pulse and blood pressure (LOINC, SNOMED CT,
MDC and the vendor's own code each). It now has one row per code (the Observation's and each
component's) carrying the first coding and ``code_set``, the id of all its codings, which
the new ``code_set`` table lists; a search by any coding finds the sets that hold it, then
their rows. 19 rows become 5.

The index is rebuilt from the stored Observations (the codings are in the JSON); each
row keeps the patient and effective time of the row it replaces, which were derived with
the server's time zone. The rebuild reads every Observation once: on the two-core benchmark
machine about a minute per million on SQLite and four to six on PostgreSQL, during which
the first start after the upgrade waits (run ``interop migrate`` first).

Revision ID: 0012
Revises: 0011
Create Date: 2026-11-29 10:30:00
"""

from __future__ import annotations

from typing import Any

import orjson
import sqlalchemy as sa
import sqlmodel
from alembic import op

from interop.store.indexer import OBSERVATION_COLUMNS, Codings, observation_rows

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None

BATCH = 2000

_CODE_SET = sa.table(
    "code_set",
    sa.column("set_id", sa.BigInteger),
    sa.column("ord", sa.Integer),
    sa.column("system", sa.String),
    sa.column("code", sa.String),
)


def _string(n: int) -> Any:
    return sqlmodel.sql.sqltypes.AutoString(length=n)


def _observation_table(name: str, *, code_set: bool) -> sa.Table:
    """The observation index as 0012 makes it (``code_set``) or as it was before."""
    return sa.Table(
        name,
        sa.MetaData(),
        sa.Column(
            "row_id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("res_id", _string(64), nullable=False),
        sa.Column("patient_id", _string(64), nullable=True),
        sa.Column("system", _string(255), nullable=False),
        sa.Column("code", _string(255), nullable=False),
        *([sa.Column("code_set", sa.BigInteger(), nullable=False)] if code_set else []),
        sa.Column("is_primary", sa.Boolean(), nullable=False),
        sa.Column("is_component", sa.Boolean(), nullable=False),
        sa.Column("effective", sa.BigInteger(), nullable=True),
        sa.Column("effective_end", sa.BigInteger(), nullable=True),
        sa.Column("value", sa.Float(), nullable=True),
        sa.Column("unit", _string(64), nullable=True),
        sa.Column("status", _string(32), nullable=False),
        sa.Column("category", _string(64), nullable=True),
        sa.Column("zone", _string(16), nullable=True),
        sa.PrimaryKeyConstraint("row_id"),
    )


_EFFECTIVE = OBSERVATION_COLUMNS.index("effective")
assert OBSERVATION_COLUMNS[_EFFECTIVE + 1] == "effective_end"


def _insert(bind: Any, table: str, rows: list[tuple[Any, ...]]) -> None:
    """Rows in ``OBSERVATION_COLUMNS`` order: COPY on PostgreSQL, executemany on SQLite."""
    columns = ", ".join(f'"{c}"' for c in OBSERVATION_COLUMNS)
    if bind.dialect.name == "postgresql":
        driver = bind.connection.driver_connection
        with driver.cursor() as cur, cur.copy(f'COPY "{table}" ({columns}) FROM STDIN') as copy:
            for row in rows:
                copy.write_row(row)
        return
    marks = ", ".join("?" for _ in OBSERVATION_COLUMNS)
    bind.exec_driver_sql(f'INSERT INTO "{table}" ({columns}) VALUES ({marks})', rows)


def upgrade() -> None:
    bind = op.get_bind()
    op.create_table(
        "code_set",
        sa.Column("set_id", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("ord", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("system", _string(255), nullable=False),
        sa.Column("code", _string(255), nullable=False),
        sa.PrimaryKeyConstraint("set_id", "ord"),
    )
    op.create_index("ix_code_set_code", "code_set", ["code", "system"])

    new = _observation_table("observation_index_rebuilt", code_set=True)
    new.create(bind)
    old = sa.table(
        "observation_index",
        *(sa.column(c) for c in ("res_id", "patient_id", "effective", "effective_end")),
        sa.column("is_primary", sa.Boolean),
    )
    resource = sa.table(
        "resource",
        sa.column("res_type", sa.String),
        sa.column("res_id", sa.String),
        sa.column("deleted", sa.Boolean),
        sa.column("content", sa.LargeBinary),
    )
    o, r = old.c, resource.c
    sets: dict[int, Codings] = {}
    after = ""
    while True:
        # the Observations in id order (the resource key), then their old rows (by res_id):
        # two plain index look-ups per batch on either database
        batch = bind.execute(
            sa.select(r.res_id, r.content)
            .where(r.res_type == "Observation", r.res_id > after, r.deleted == sa.false())
            .order_by(r.res_type, r.res_id)
            .limit(BATCH)
        ).all()
        if not batch:
            break
        after = batch[-1][0]
        primary = {
            row.res_id: row
            for row in bind.execute(
                sa.select(o.res_id, o.patient_id, o.effective, o.effective_end, o.is_primary).where(
                    o.res_id.in_([b[0] for b in batch])
                )
            )
            if row.is_primary
        }
        rows: list[tuple[Any, ...]] = []
        for res_id, content in batch:
            was = primary.get(res_id)
            if was is None:
                continue  # not indexed before (a resource written outside the store): as it was
            obs = orjson.loads(content)
            for row in observation_rows(obs, res_id, was.patient_id, "UTC", sets):
                # the times as the server's zone made them (a date without a time of day)
                rows.append(
                    (*row[:_EFFECTIVE], was.effective, was.effective_end, *row[_EFFECTIVE + 2 :])
                )
        if rows:
            _insert(bind, new.name, rows)
    members = [
        {"set_id": set_id, "ord": i, "system": system, "code": code}
        for set_id, codings in sets.items()
        for i, (system, code) in enumerate(codings)
    ]
    if members:
        bind.execute(sa.insert(_CODE_SET), members)

    _rename_rebuilt(bind)
    op.create_index(
        "ix_obs_patient_set_time", "observation_index", ["patient_id", "code_set", "effective"]
    )
    op.create_index("ix_obs_set_time", "observation_index", ["code_set", "effective"])
    _create_patient_time_and_resource_indexes()
    if bind.dialect.name == "postgresql":
        op.execute("ANALYZE observation_index")
        op.execute("ANALYZE code_set")


def _create_patient_time_and_resource_indexes() -> None:
    """The two indexes the layouts before and after 0012 share."""
    op.create_index(
        "ix_obs_patient_time",
        "observation_index",
        ["patient_id", "effective", "is_primary"],
        sqlite_where=sa.text("is_primary = 1"),
        postgresql_where=sa.text("is_primary"),
    )
    op.create_index("ix_obs_resource", "observation_index", ["res_id"])


def _rename_rebuilt(bind: Any) -> None:
    op.drop_table("observation_index")
    op.rename_table("observation_index_rebuilt", "observation_index")
    if bind.dialect.name == "postgresql":
        # the key's sequence and constraint keep the names they were made with otherwise
        op.execute(
            "ALTER SEQUENCE observation_index_rebuilt_row_id_seq "
            "RENAME TO observation_index_row_id_seq"
        )
        op.execute(
            "ALTER TABLE observation_index RENAME CONSTRAINT observation_index_rebuilt_pkey "
            "TO observation_index_pkey"
        )


def downgrade() -> None:
    """Back to a row per coding: each row once for every coding of its set, the primary
    row's first coding primary."""
    bind = op.get_bind()
    old = _observation_table("observation_index_rebuilt", code_set=False)
    old.create(bind)
    current = _observation_table("observation_index", code_set=True)
    o, cs = current.c, _CODE_SET.c
    names = ["res_id", "patient_id", "system", "code", "is_primary", "is_component"]
    names += ["effective", "effective_end", "value", "unit", "status", "category", "zone"]
    rows = (
        sa.select(
            o.res_id,
            o.patient_id,
            cs.system,
            cs.code,
            sa.and_(o.is_primary == sa.true(), cs.ord == 0),
            o.is_component,
            o.effective,
            o.effective_end,
            o.value,
            o.unit,
            o.status,
            o.category,
            o.zone,
        )
        .select_from(current.join(_CODE_SET, cs.set_id == o.code_set))
        .order_by(o.row_id, cs.ord)
    )
    bind.execute(sa.insert(old).from_select(names, rows))
    _rename_rebuilt(bind)
    op.create_index("ix_obs_code_time", "observation_index", ["code", "effective"])
    op.create_index(
        "ix_obs_patient_code_time", "observation_index", ["patient_id", "code", "effective"]
    )
    _create_patient_time_and_resource_indexes()
    op.drop_index("ix_code_set_code", table_name="code_set")
    op.drop_table("code_set")
