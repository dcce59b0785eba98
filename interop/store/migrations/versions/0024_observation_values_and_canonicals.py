"""search index: Observation's other values and links, compartment links, canonicals

Observation gains R4's ``value-concept``, ``value-string``, ``value-date``,
``data-absent-reason``, ``component-value-concept``, ``component-data-absent-reason``,
``component-code-value-concept`` (the composite's rows per component), ``encounter``, ``focus``,
``part-of``, ``specimen`` and ``method``; Patient ``link`` and CarePlan ``performer`` (links of
the Patient CompartmentDefinition); QuestionnaireResponse ``questionnaire`` and CarePlan
``instantiates-canonical``; and every reference parameter now indexes a canonical (a string,
``url|version``), which it skipped before. The rows are backfilled from the resources already
stored (an Observation only when its bytes hold one of the elements); new writes index them
directly. No table changes.

Revision ID: 0024
Revises: 0023
Create Date: 2026-12-07 02:20:00
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import orjson
import sqlalchemy as sa
from alembic import op

revision = "0024"
down_revision = "0023"
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
NEW = {
    "Observation": (
        "encounter",
        "focus",
        "part-of",
        "specimen",
        "method",
        "value-concept",
        "value-string",
        "value-date",
        "data-absent-reason",
        "component-value-concept",
        "component-data-absent-reason",
        "component-code-value-concept",
    ),
    "Patient": ("link",),
    "CarePlan": ("performer", "instantiates-canonical"),
    "QuestionnaireResponse": ("questionnaire",),
}
"""The parameters this revision adds, per type."""
_OBSERVATION_MARKS = tuple(
    f'"{e}"'.encode()
    for e in (
        "encounter",
        "focus",
        "partOf",
        "specimen",
        "method",
        "valueCodeableConcept",
        "valueString",
        "valueDateTime",
        "valuePeriod",
        "dataAbsentReason",
    )
)
"""An Observation without any of these elements gets no new row (most: measurements)."""


def _resources(conn: sa.Connection, res_type: str) -> Iterator[sa.Row[Any]]:
    """The type's current resources, a batch at a time in id order."""
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


def _base(param: str) -> str:
    """The parameter of an index row (``value-string:exact``, ``…-concept$1#0``)."""
    return param.partition("$")[0].partition(":")[0]


def _rows(conn: sa.Connection) -> Iterator[tuple[str, dict[str, Any]]]:
    """(table kind, row) of every row this revision adds."""
    from interop.fhir.searchparams import (
        CANONICAL_MAX,
        definitions,
        extract,
        supported_types,
        values,
    )

    for res_type in supported_types():
        if res_type == "AuditEvent":  # stored lean (store.audit_rows)
            continue
        new = NEW.get(res_type, ())
        # the type's other reference parameters: their canonicals (strings) are new rows
        canonical = [
            (name, p, tuple(f'"{path[-1]}"'.encode() for path in p.paths if path))
            for name, p in definitions(res_type).items()
            if p.type == "reference" and p.index == "generic" and name not in new
        ]
        for row in _resources(conn, res_type):
            content = bytes(row.content)
            key = {"res_type": res_type, "res_id": row.res_id}
            resource: dict[str, Any] | None = None
            if new and (res_type != "Observation" or any(m in content for m in _OBSERVATION_MARKS)):
                resource = orjson.loads(content)
                entries = extract(resource)
                for kind, (_table, cols) in _TABLES.items():
                    for found in getattr(entries, kind):
                        if _base(found[0]) in new:
                            yield kind, {**key, **dict(zip(cols, found, strict=True))}
            for name, p, marks in canonical:
                if not any(m in content for m in marks):
                    continue
                if resource is None:
                    resource = orjson.loads(content)
                for v in values(resource, p):
                    if isinstance(v, str) and v:
                        yield "references", {**key, "param": name, "target": v[:CANONICAL_MAX]}


def _tables() -> dict[str, Any]:
    return {
        kind: sa.table(name, sa.column("res_type"), sa.column("res_id"), *map(sa.column, cols))
        for kind, (name, cols) in _TABLES.items()
    }


def upgrade() -> None:
    conn = op.get_bind()
    tables = _tables()
    pending: dict[str, list[dict[str, Any]]] = {kind: [] for kind in _TABLES}
    for kind, row in _rows(conn):
        pending[kind].append(row)
        if len(pending[kind]) >= BATCH:
            conn.execute(sa.insert(tables[kind]), pending[kind])
            pending[kind].clear()
    for kind, batch in pending.items():
        if batch:
            conn.execute(sa.insert(tables[kind]), batch)


def downgrade() -> None:
    conn = op.get_bind()
    tables = _tables()
    doomed = list(_rows(conn))
    for kind, row in doomed:
        t = tables[kind]
        conn.execute(sa.delete(t).where(*[t.c[k] == v for k, v in row.items()]))
