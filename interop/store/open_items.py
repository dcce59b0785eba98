"""Several patients' open work items (open Tasks, active Flags) in one statement, as a write
transaction sees them: what triage reads before it judges a batch of readings.

An item belongs to a patient by its ``patient`` reference index row and is open by its
``status`` token row. The rows come back with the item's type and patient; the caller checks
the status it parses (the statement on PostgreSQL tests the statuses of all the types at once).

On PostgreSQL the statement takes each (type, patient) pair from an array and looks up its
items by key, so that no plan depends on what the statistics say about a type. The planner
estimated a type that appeared after the last ANALYZE (the first Tasks of a new deployment, or
of the bench's fresh data set) at one row, chose to scan every item of that type once per
reference row, and a batch of 100 patients took 1.2–1.8 s instead of 10 ms until autovacuum
caught up; it also drove the status test from every open Task of the type. With the keys
from the array (``unnest``) and each step behind ``OFFSET 0`` (the patient's references, then
each item by its own key), the only plans left are index look-ups by the full key."""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from typing import Any

from sqlalchemy import Connection, and_, select, union_all

from interop.store.pg_arrays import array_literal
from interop.store.schema import reference_table, resource_table, token_table

CHUNK = 500
"""Patients per statement."""

_PG_SQL = (
    "SELECT k.res_type, k.target, ref.res_id, x.content "
    "FROM unnest(%s::text[], %s::text[]) AS k(res_type, target) "
    "CROSS JOIN LATERAL ("
    f" SELECT r.res_id FROM {reference_table.name} r"
    " WHERE r.res_type = k.res_type AND r.param = 'patient' AND r.target = k.target OFFSET 0"
    ") ref "
    "CROSS JOIN LATERAL ("
    f" SELECT res.content FROM {resource_table.name} res"
    " WHERE res.res_type = k.res_type AND res.res_id = ref.res_id AND res.deleted IS false"
    f" AND EXISTS (SELECT 1 FROM {token_table.name} t WHERE t.res_type = k.res_type"
    " AND t.res_id = ref.res_id AND t.param = 'status' AND t.code = ANY(%s::text[]))"
    " OFFSET 0"
    ") x"
)


LOCK_CLASS = 7301
"""The first key of the patients' advisory locks (their own key space: the audit chain's lock
is a one-key lock)."""
_PG_LOCK_SQL = (
    f"SELECT count(pg_advisory_xact_lock({LOCK_CLASS}, k)) FROM "
    "(SELECT DISTINCT hashtext(p) AS k FROM unnest(%s::text[]) AS p ORDER BY 1 OFFSET 0) s"
)


def of_patients(
    conn: Connection,
    open_statuses: Mapping[str, Collection[str]],
    patient_ids: Sequence[str],
) -> list[tuple[str, str, str, Any]]:
    """(type, patient id, item id, content) of each item of a type in ``open_statuses`` that
    refers to one of the patients and whose status token is open (on PostgreSQL: open for any
    of the types; the caller checks its own type's statuses). On PostgreSQL the patients are
    locked for the rest of the transaction first: the caller updates what it read."""
    out: list[tuple[str, str, str, Any]] = []
    if conn.dialect.name == "postgresql" and patient_ids:
        # read for update: another transaction (another API process) judging a reading of the
        # same patient waits here until this one commits, then reads the Tasks and Flags as
        # this one left them; without it both updated the same Task and one create failed
        # with 409 "changed concurrently". Locks are taken in one order (no deadlock).
        # SQLite has one writer at a time already.
        conn.exec_driver_sql(_PG_LOCK_SQL, (array_literal(sorted(set(patient_ids)), "text"),))
    for i in range(0, len(patient_ids), CHUNK):
        targets = [f"Patient/{pid}" for pid in patient_ids[i : i + CHUNK]]
        if conn.dialect.name == "postgresql":
            types = [t for t in open_statuses for _ in targets]
            codes = sorted({c for statuses in open_statuses.values() for c in statuses})
            rows = conn.exec_driver_sql(
                _PG_SQL,
                (
                    array_literal(types, "text"),
                    array_literal(targets * len(open_statuses), "text"),
                    array_literal(codes, "text"),
                ),
            ).all()
            out.extend((rtype, target[8:], rid, c) for rtype, target, rid, c in rows)
        else:
            rows = conn.execute(_per_type_union(open_statuses, targets)).all()
            out.extend((rtype, target[8:], rid, c) for rtype, rid, target, c in rows)
    return out


def _per_type_union(open_statuses: Mapping[str, Collection[str]], targets: list[str]) -> Any:
    """SQLite: one query per type, joined by UNION ALL; each finds the patients' reference
    rows by their index and checks the status by a correlated look-up on the item's own id,
    so that the cost does not grow with the patients' closed history."""
    t, r, res = token_table.c, reference_table.c, resource_table.c
    per_type = []
    for rtype, statuses in open_statuses.items():
        open_status = (
            select(t.res_id)
            .where(
                t.res_type == r.res_type,
                t.res_id == r.res_id,
                t.param == "status",
                t.code.in_(list(statuses)),
            )
            .exists()
        )
        per_type.append(
            select(r.res_type, r.res_id, r.target, res.content)
            .select_from(
                reference_table.join(
                    resource_table, and_(res.res_type == r.res_type, res.res_id == r.res_id)
                )
            )
            .where(
                r.res_type == rtype,
                r.param == "patient",
                r.target.in_(targets),
                res.deleted.is_(False),
                open_status,
            )
        )
    return union_all(*per_type)
