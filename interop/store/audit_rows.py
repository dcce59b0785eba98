"""Where AuditEvents are stored: one narrow row per event in ``audit_chain`` (its link, the
columns the look-ups need, and the event's JSON as served) and one ``audit_patient`` row per
patient it names.

A read is audited before it is answered, so every read by a GP or a nurse writes an event.
Stored as a generic FHIR resource, an event cost a resource row and about eleven index rows
in six B-trees (type, action, outcome, actor, entities, patients, date); here it costs one
row appended at the end of the chain and one short row per patient. The FHIR AuditEvent is
still what ``GET /fhir/AuditEvent/{id}`` and searches return: the JSON is kept whole, and the
searches the log is used for (by patient, resource, actor, action, outcome, time) are
answered from these columns by :func:`search`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
from sqlalchemy import ColumnElement, Connection, func, or_, select
from sqlalchemy.exc import DBAPIError

from interop.fhir.dates import fhir_range, from_micros
from interop.fhir.outcome import FhirError, Issue, error
from interop.fhir.searchparams import reference_target
from interop.store.backends import bulk_writer
from interop.store.schema import audit_chain_table, audit_patient_table
from interop.store.search_values import (
    DATE_MODIFIERS,
    date_condition,
    date_values,
    decode_cursor,
    encode_cursor,
)

AUDIT_EVENT = "AuditEvent"
SEARCHABLE = ("_id", "_lastUpdated", "patient", "entity", "altid", "action", "outcome", "date")
"""The AuditEvent search parameters served (any other is refused, never ignored)."""
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICRO = timedelta(microseconds=1)
_SORTS = {"_lastUpdated": "seq", "date": "seq", "_id": "res_id"}


@dataclass(frozen=True, slots=True)
class AuditRow:
    """One event ready to store (see :func:`row_for`)."""

    seq: int
    res_id: str
    prev_hash: str
    hash: str
    key_id: str | None
    recorded: int
    action: str | None
    outcome: str | None
    actor_id: str | None
    what: str | None
    content: bytes
    patients: tuple[str, ...]


def recorded_micros(event: dict[str, Any], zone: str = "UTC") -> int:
    """The event's ``recorded`` as epoch µs (the instant, to the microsecond)."""
    text = event.get("recorded")
    if not isinstance(text, str):
        raise ValueError("an AuditEvent needs recorded")
    try:
        t = datetime.fromisoformat(text)
    except ValueError:
        return fhir_range(text, zone)[0]
    if t.tzinfo is None:
        return fhir_range(text, zone)[0]
    return (t - _EPOCH) // _MICRO


def event_columns(
    event: dict[str, Any],
) -> tuple[str | None, str | None, str | None, str | None, tuple[str, ...]]:
    """action, outcome, actor id (the requesting agent's ``altId``), what (the first entity)
    and the Patient ids the event names (every entity that is a Patient)."""
    agents = event.get("agent") or []
    actor_id = next(
        (a.get("altId") for a in agents if isinstance(a, dict) and a.get("altId")), None
    )
    what: str | None = None
    patients: dict[str, None] = {}
    for n, entity in enumerate(event.get("entity") or []):
        if not isinstance(entity, dict):
            continue
        target = entity.get("what") or {}
        ref = target.get("reference") if isinstance(target, dict) else None
        if n == 0 and isinstance(target, dict):
            what = ref if isinstance(ref, str) else target.get("display")
        if isinstance(ref, str):  # as the FHIR ``patient`` parameter: any entity a Patient
            ref = reference_target(ref)
            if ref.startswith("Patient/"):
                patients[ref.split("/", 1)[1]] = None
    action, outcome = event.get("action"), event.get("outcome")
    return (
        action if isinstance(action, str) else None,
        outcome if isinstance(outcome, str) else None,
        str(actor_id)[:200] if actor_id is not None else None,
        what[:255] if isinstance(what, str) else None,
        tuple(patients),
    )


def served(event: dict[str, Any], res_id: str, recorded: int) -> bytes:
    """The event's JSON as stored and served: its id and meta first (like every resource)."""
    meta = {"versionId": "1", "lastUpdated": format_instant_ms(recorded)}
    body = {"resourceType": AUDIT_EVENT, "id": res_id, "meta": meta}
    body.update((k, v) for k, v in event.items() if k not in ("id", "meta", "resourceType"))
    return orjson.dumps(body)


def format_instant_ms(micros: int) -> str:
    return from_micros(micros).isoformat(timespec="milliseconds").replace("+00:00", "Z")


CHAIN_COLUMNS = (
    "seq",
    "res_id",
    "prev_hash",
    "hash",
    "key_id",
    "recorded",
    "action",
    "outcome",
    "actor_id",
    "what",
    "content",
)
PATIENT_COLUMNS = ("patient_id", "seq", "recorded")
MAX_PARAMETERS = 999
"""Values in one INSERT at most (SQLite's smallest limit); a larger batch takes several."""
_HEAD_SQL = "SELECT seq, hash FROM audit_chain ORDER BY seq DESC LIMIT 1"


def head(conn: Connection, lock_key: int | None = None) -> tuple[int, str] | None:
    """(seq, link) of the newest event, or None for an empty chain.

    ``lock_key`` (PostgreSQL): take the advisory transaction lock that serialises appends
    first, in the same round trip: the two statements go as one simple query and run one
    after the other, each with a snapshot of its own, so the head is read after the lock is
    granted and sees every append committed before."""
    if lock_key is None:
        rows = _run(conn, _HEAD_SQL, (), fetch=True)
    else:
        rows = _run(
            conn, f"SELECT pg_advisory_xact_lock({int(lock_key)}); {_HEAD_SQL}", None, fetch=True
        )
    return None if not rows else (int(rows[0][0]), str(rows[0][1]))


def insert(conn: Connection, rows: list[AuditRow]) -> None:
    """Store events: on SQLite one multi-row INSERT per table, written as SQL text and run by
    the driver (SQLAlchemy's compilation and an executemany per table cost several times what
    SQLite itself spends on the rows); on PostgreSQL through the bulk writer."""
    if not rows:
        return
    chain = [
        (
            r.seq,
            r.res_id,
            r.prev_hash,
            r.hash,
            r.key_id,
            r.recorded,
            r.action,
            r.outcome,
            r.actor_id,
            r.what,
            r.content,
        )
        for r in rows
    ]
    patients = [(p, r.seq, r.recorded) for r in rows for p in r.patients]
    if conn.dialect.name == "postgresql":
        # the bulk writer: one array per column, both tables in one statement (a COPY each
        # for a large batch). A VALUES list of a placeholder per value was a new query text
        # for every batch size, and psycopg parsed it anew each time: 3.3 ms for the 100
        # events of a transaction Bundle, more than PostgreSQL spent storing them
        writer = bulk_writer(conn)
        writer.insert_rows(audit_chain_table, CHAIN_COLUMNS, chain)
        writer.insert_rows(audit_patient_table, PATIENT_COLUMNS, patients)
        writer.flush()
        return
    _insert_values(conn, "audit_chain", CHAIN_COLUMNS, chain)
    _insert_values(conn, "audit_patient", PATIENT_COLUMNS, patients)


def _values_sql(table: str, columns: tuple[str, ...], n: int) -> str:
    one = "(" + ", ".join("?" for _ in columns) + ")"
    return f"INSERT INTO {table} ({', '.join(columns)}) VALUES " + ", ".join([one] * n)


def _insert_values(  # SQLite
    conn: Connection, table: str, columns: tuple[str, ...], rows: list[tuple[Any, ...]]
) -> None:
    per = MAX_PARAMETERS // len(columns)
    for start in range(0, len(rows), per):
        chunk = rows[start : start + per]
        _run(
            conn,
            _values_sql(table, columns, len(chunk)),
            tuple(v for row in chunk for v in row),
        )


def _run(
    conn: Connection, sql: str, params: tuple[Any, ...] | None, *, fetch: bool = False
) -> list[Any]:
    """One statement on the transaction's driver connection, past SQLAlchemy's execution
    machinery (tens of µs a statement, more than SQLite spends on a few rows); a driver error
    is raised as SQLAlchemy raises it."""
    dbapi_error = conn.dialect.loaded_dbapi.Error
    try:
        cursor = conn.connection.cursor()
        try:
            cursor.execute(sql, params)
            if not fetch:
                return []
            if params is None:  # several statements (PostgreSQL): the last one's rows
                while cursor.nextset():
                    pass
            return list(cursor.fetchall())
        finally:
            cursor.close()
    except dbapi_error as exc:
        raise DBAPIError.instance(sql, params, exc, dbapi_error) from exc


def get(conn: Connection, res_id: str) -> tuple[int, bytes] | None:
    """(recorded, JSON) of one event, or None."""
    a = audit_chain_table.c
    row = conn.execute(
        select(a.recorded, a.content).where(a.res_id == res_id, a.content.is_not(None))
    ).first()
    return None if row is None else (int(row.recorded or 0), bytes(row.content))


def created_by(conn: Connection, reference: str, actor_id: str) -> bool:
    """Whether the log shows ``actor_id`` created ``reference`` (``Observation/…``)."""
    a = audit_chain_table.c
    return (
        conn.execute(
            select(a.seq)
            .where(a.action == "C", a.what == reference[:255], a.actor_id == actor_id)
            .limit(1)
        ).first()
        is not None
    )


def _codes(values: list[str]) -> list[str]:
    """Token values without a system (``|R`` and ``R`` are the same code)."""
    return [v.rpartition("|")[2] for v in values]


def _references(values: list[str], prefix: str | None = None) -> list[str]:
    out = []
    for v in values:
        ref = reference_target(v.strip())
        if prefix and "/" not in ref:
            ref = f"{prefix}/{ref}"
        out.append(ref)
    return out


def search(
    conn: Connection,
    params: list[tuple[str, str]],
    *,
    count: int,
    max_count: int,
    total_limit: int,
    zone: str,
    strict: bool,
) -> dict[str, Any]:
    """An AuditEvent search: the matching events newest or oldest first, a page at a time.
    Returns the parts of a search result: ``rows``, ``total``, ``next_cursor``, ``warnings``,
    ``summary_count``. A parameter the log cannot answer is refused (400), never ignored."""

    a = audit_chain_table.c
    conds: list[ColumnElement[bool]] = [a.content.is_not(None)]
    warnings: list[Issue] = []
    sort, descending, summary_count, total_mode = "_lastUpdated", False, False, "accurate"
    cursor: tuple[Any, str] | None = None
    for key, raw in params:
        name, _, modifier = key.partition(":")
        if name == "_count":
            try:
                count = max(0, min(int(raw), max_count))
            except ValueError:
                raise error(400, "invalid", f"_count {raw!r} is not a number") from None
            continue
        if name == "_sort":
            s = raw.split(",")[0].strip()
            descending, sort = s.startswith("-"), s.lstrip("-")
            if sort not in _SORTS:
                raise error(
                    400,
                    "not-supported",
                    f"_sort={raw!r} is not supported for AuditEvent; use _id, _lastUpdated or date",
                )
            continue
        if name == "_summary":
            if raw == "count":
                summary_count = True
            elif raw != "false":
                warnings.append(
                    Issue("warning", "not-supported", f"_summary={raw} was ignored", (key,))
                )
            continue
        if name == "_total":
            total_mode = raw
            continue
        if name == "_cursor":
            cursor = decode_cursor(raw)
            continue
        if name in ("_format", "_pretty"):
            continue
        dated = name in ("date", "_lastUpdated") and modifier in DATE_MODIFIERS
        if name not in SEARCHABLE or (modifier and not dated):
            msg = (
                f"search parameter {key!r} is not supported for AuditEvent; the audit log is "
                f"searched by {', '.join(SEARCHABLE)}"
            )
            if name.startswith("_") and name not in ("_id", "_lastUpdated") and not strict:
                warnings.append(Issue("warning", "not-supported", msg + " (ignored)", (key,)))
                continue
            raise FhirError(400, [Issue("error", "not-supported", msg, (key,))])
        values = [v for v in raw.split(",") if v != ""]
        if not values:
            continue
        if dated:
            values = date_values(key, modifier, values)
        if name == "_id":
            conds.append(a.res_id.in_(values))
        elif name == "patient":
            p = audit_patient_table.c
            ids = [r.split("/", 1)[1] if "/" in r else r for r in _references(values, "Patient")]
            conds.append(a.seq.in_(select(p.seq).where(p.patient_id.in_(ids))))
        elif name == "entity":
            conds.append(a.what.in_([r[:255] for r in _references(values)]))
        elif name == "altid":
            conds.append(a.actor_id.in_(_codes(values)))
        elif name == "action":
            conds.append(a.action.in_(_codes(values)))
        elif name == "outcome":
            conds.append(a.outcome.in_(_codes(values)))
        else:  # date, _lastUpdated: when the event was recorded
            conds.append(
                or_(*[date_condition(a.recorded, a.recorded, v, zone, name) for v in values])
                if len(values) > 1
                else date_condition(a.recorded, a.recorded, values[0], zone, name)
            )
    sort_col: Any = a.seq if _SORTS[sort] == "seq" else a.res_id
    total: int | None = None
    if summary_count or (cursor is None and total_mode != "none"):
        limit = total_limit * 100 if summary_count else total_limit
        n = conn.execute(
            select(func.count()).select_from(
                select(a.seq).where(*conds).limit(limit + 1).subquery()
            )
        ).scalar_one()
        total = n if n <= limit else None
    if summary_count:
        return {"rows": [], "total": total, "warnings": warnings, "summary_count": True}
    stmt = select(a.res_id, a.content, sort_col.label("sortkey")).where(*conds)
    if cursor is not None:
        cval, cid = cursor
        if not isinstance(cval, int | str):
            raise error(400, "invalid", "the _cursor parameter is not valid (paging link damaged)")
        if sort_col is a.seq:
            stmt = stmt.where(a.seq < cval if descending else a.seq > cval)
        else:
            stmt = stmt.where(a.res_id < cid if descending else a.res_id > cid)
    stmt = stmt.order_by(sort_col.desc() if descending else sort_col.asc()).limit(count + 1)
    rows = conn.execute(stmt).all() if count > 0 else []
    next_cursor = None
    if len(rows) > count:
        rows = rows[:count]
        next_cursor = encode_cursor(rows[-1].sortkey, rows[-1].res_id)
    return {
        "rows": [(r.res_id, bytes(r.content)) for r in rows],
        "total": total,
        "next_cursor": next_cursor,
        "warnings": warnings,
        "summary_count": False,
    }
