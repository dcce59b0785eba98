"""The ingest pipeline's look-ups and records in the store: which business identifiers are
claimed (and by which resource), whose subject a stored resource has, and which messages were
processed before (their reports). The pipeline orchestrates; the SQL is here."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from sqlalchemy import and_, insert, or_, select

from interop.store.schema import (
    ingest_message_table,
    resource_table,
    token_table,
    unique_identifier_table,
)


def subjects_of(conn: Any, res_type: str, ids: Iterable[str]) -> dict[str, str | None]:
    """Resource id → the Patient id its row is indexed under (its subject), for ``ids``."""
    wanted = list(dict.fromkeys(ids))
    out: dict[str, str | None] = {}
    r = resource_table
    for i in range(0, len(wanted), 500):
        for row in conn.execute(
            select(r.c.res_id, r.c.patient_id).where(
                r.c.res_type == res_type, r.c.res_id.in_(wanted[i : i + 500])
            )
        ):
            out[row.res_id] = row.patient_id
    return out


def find_identifiers(
    conn: Any, keys: Iterable[tuple[str, str, str]]
) -> dict[tuple[str, str, str], str]:
    """(resource type, system, value) → id for the claimed business identifiers among
    ``keys``, in one statement per 500 (what :meth:`FhirStore.find_by_identifier` answers
    for each)."""
    groups: dict[tuple[str, str], list[str]] = {}
    for rtype, system, value in dict.fromkeys(keys):
        groups.setdefault((rtype, system), []).append(value)
    out: dict[tuple[str, str, str], str] = {}
    if not groups:
        return out
    # plain driver SQL: SQLAlchemy's compilation of long IN lists cost more than the look-up
    statements: list[tuple[str, list[Any]]] = []
    if conn.dialect.name == "postgresql":
        # one statement for every group, each value list an array parameter: no long IN list
        # for the server to parse and plan
        where = " OR ".join(
            '(res_type = %s AND "system" = %s AND "value" = ANY(%s))' for _ in groups
        )
        params = [x for (rtype, system), vs in groups.items() for x in (rtype, system, vs)]
        statements.append((where, params))
    else:
        clauses = [
            (rtype, system, values[i : i + 500])
            for (rtype, system), values in groups.items()
            for i in range(0, len(values), 500)
        ]
        while clauses:
            # several groups in one statement, up to about 500 values
            take: list[tuple[str, str, list[str]]] = []
            n = 0
            while clauses and (not take or n + len(clauses[0][2]) <= 500):
                take.append(clauses.pop(0))
                n += len(take[-1][2])
            where = " OR ".join(
                f'(res_type = ? AND "system" = ? AND "value" IN ({", ".join("?" * len(chunk))}))'
                for _, _, chunk in take
            )
            statements.append(
                (where, [x for rtype, system, chunk in take for x in (rtype, system, *chunk)])
            )
    for where, args in statements:
        for rtype, system, value, res_id in conn.exec_driver_sql(
            f'SELECT res_type, "system", "value", res_id FROM "{unique_identifier_table.name}" '
            f"WHERE {where}",
            tuple(args),
        ):
            out[(rtype, system, value)] = res_id
    return out


def processed_reports(
    conn: Any, ids: Mapping[str, Sequence[str]]
) -> dict[tuple[str, str], bytes | None]:
    """(source, message id) → the stored report, for the messages among ``ids`` (message ids
    by source) processed before."""
    t = ingest_message_table
    conds = [
        and_(t.c.source == source, t.c.message_id.in_(list(values[i : i + 500])))
        for source, values in ids.items()
        for i in range(0, len(values), 500)
    ]
    if not conds:
        return {}
    return {
        (row.source, row.message_id): row.report
        for row in conn.execute(select(t.c.source, t.c.message_id, t.c.report).where(or_(*conds)))
    }


def record_processed(
    conn: Any, *, new: Sequence[dict[str, Any]], again: Sequence[dict[str, Any]]
) -> None:
    """Record processed messages (rows of ``ingest_message``): ``new`` ones inserted, ones
    recorded before (processed ``again``) given their new report."""
    t = ingest_message_table
    if new:
        conn.execute(insert(t), list(new))
    for row in again:
        conn.execute(
            t.update()
            .where(t.c.source == row["source"], t.c.message_id == row["message_id"])
            .values(received=row["received"], report=row["report"])
        )


def patients_by_identifier(
    conn: Any, wanted: Mapping[str, Sequence[str]]
) -> dict[tuple[str, str], str]:
    """(system, value) → the id of the (not deleted) Patient with that identifier, for the
    values wanted by system, in one statement."""
    tok, res = token_table, resource_table
    conds = [
        and_(tok.c.system == system, tok.c.code.in_(list(values[i : i + 500])))
        for system, values in wanted.items()
        for i in range(0, len(values), 500)
    ]
    found: dict[tuple[str, str], str] = {}
    if not conds:
        return found
    for row in conn.execute(
        select(tok.c.system, tok.c.code, tok.c.res_id)
        .join(res, (res.c.res_type == tok.c.res_type) & (res.c.res_id == tok.c.res_id))
        .where(
            tok.c.res_type == "Patient",
            tok.c.param == "identifier",
            or_(*conds),
            res.c.deleted.is_(False),
        )
    ):
        found.setdefault((row.system, row.code), row.res_id)
    return found
