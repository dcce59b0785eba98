"""The queries on the Observation index use an index, on SQLite and on PostgreSQL.

Each key query is run through the code that issues it (search, ``$lastn``, ``$stats``, the
actor summary, the indicators, the missing-measurement check, the periodic status report); the
statements are captured and explained. A population query (a code without a patient) must not
become a scan of the whole table, and the partial index on the primary rows
(``ix_obs_patient_time``) must be matched by the queries written for it: SQLite uses a
partial index only when the query repeats the index's WHERE term in the same form.

On PostgreSQL, sequential scans are disabled for the EXPLAIN (the test tables are tiny, where a
sequential scan is the right plan), so a ``Seq Scan`` in the plan means no index could serve.

Also: how many index rows one stored Observation costs (the write amplification of ingest).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy import Engine, event, func, select

from interop.store.context import WriteContext

LOINC = "http://loinc.org"


@contextmanager
def captured(engine: Engine, needle: str = "observation_index") -> Iterator[list[Any]]:
    """The (statement, parameters) the engine executes that mention ``needle``."""
    out: list[Any] = []

    def listen(_conn, _cursor, statement, parameters, _context, _many):  # type: ignore[no-untyped-def]
        if needle in statement:
            out.append((statement, parameters))

    event.listen(engine, "before_cursor_execute", listen)
    try:
        yield out
    finally:
        event.remove(engine, "before_cursor_execute", listen)


def explain(engine: Engine, statement: str, parameters: Any) -> list[str]:
    raw = engine.raw_connection()
    try:
        cur = raw.cursor()
        if engine.dialect.name == "sqlite":
            cur.execute("EXPLAIN QUERY PLAN " + statement, parameters)
            lines = [str(row[3]) for row in cur.fetchall()]
        else:
            cur.execute("BEGIN")
            cur.execute("SET LOCAL enable_seqscan = off")
            cur.execute("EXPLAIN " + statement, parameters)
            lines = [str(row[0]) for row in cur.fetchall()]
            cur.execute("ROLLBACK")
        cur.close()
        return lines
    finally:
        raw.close()


def _full_scans(
    engine: Engine, plan: list[str], table: str, *, covering_ok: bool = False
) -> list[str]:
    """Plan lines that read all of ``table`` (a table scan, or on SQLite a scan of a whole
    index, unless ``covering_ok`` and the index covers the query)."""
    if engine.dialect.name == "sqlite":
        return [
            line
            for line in plan
            if re.match(rf"\s*SCAN {table}\b", line)
            and not (covering_ok and "USING COVERING INDEX" in line)
        ]
    return [line for line in plan if f"Seq Scan on {table}" in line]


def _indexes(plan: list[str]) -> set[str]:
    return set(re.findall(r"\b(ix_\w+|sqlite_autoindex_\w+|\w+_pkey)\b", "\n".join(plan)))


# ---- the queries ------------------------------------------------------------------------


def _search(services: Any, *params: tuple[str, str]) -> Callable[[], None]:
    from interop.store.search import SearchRequest

    return lambda: (
        services.search.search(SearchRequest("Observation", [*params, ("_total", "none")])),
        None,
    )[1]


def _queries(
    services: Any, pid: str, device: str
) -> list[tuple[str, Callable[[], None], str, bool]]:
    """(what, how to run it, the index the observation_index part must use, whether a scan of
    the whole index is all right: only for a question about every patient)."""
    from interop.messaging.status import due_patients
    from interop.store.observation_ops import lastn, stats
    from interop.views.summary import compute, view_definition

    store = services.store
    hr = f"{LOINC}|8867-4"
    return [
        (
            "search patient, newest first",
            _search(services, ("patient", pid), ("_sort", "-date"), ("_count", "10")),
            "ix_obs_patient_time",
            False,
        ),
        (
            "search patient + date",
            _search(services, ("patient", pid), ("date", "ge2026-01-01")),
            "ix_obs_patient_time",
            False,
        ),
        (
            "search patient + code, newest first",
            _search(services, ("patient", pid), ("code", hr), ("_sort", "-date")),
            "ix_obs_patient_set_time",
            False,
        ),
        (
            "search code (population), newest first",
            _search(services, ("code", hr), ("_sort", "-date"), ("_count", "5")),
            "ix_obs_set_time",
            False,
        ),
        (
            "search component-code (population)",
            _search(services, ("component-code", f"{LOINC}|8480-6")),
            "ix_obs_set_time",
            False,
        ),
        (
            "search subject is a Device",
            _search(services, ("subject", f"Device/{device}")),
            "ix_obs_resource",
            False,
        ),
        (
            "$lastn patient",
            lambda: (lastn(store, {"patient": [pid], "max": ["3"]}), None)[1],
            "ix_obs_patient_time",
            False,
        ),
        (
            "$lastn patient + code",
            lambda: (lastn(store, {"patient": [pid], "code": [hr]}), None)[1],
            "ix_obs_patient_set_time",
            False,
        ),
        (
            "$lastn code (population)",
            lambda: (lastn(store, {"code": [hr]}), None)[1],
            "ix_obs_set_time",
            False,
        ),
        (
            "$stats",
            lambda: (stats(store, {"patient": [pid], "code": [hr]}), None)[1],
            "ix_obs_patient_set_time",
            False,
        ),
        (
            "actor summary",
            lambda: _with_reader(store, lambda c: compute(c, pid, view_definition("gp"))),
            "ix_obs_patient_set_time",
            False,
        ),
        (
            "periodic status: patients measured lately",
            lambda: (due_patients(services, 7, datetime(2026, 11, 1, tzinfo=UTC)), None)[1],
            "ix_obs_patient_time",
            True,
        ),
    ]


def _with_reader(store: Any, fn: Callable[[Any], Any]) -> None:
    with store.reader() as conn:
        fn(conn)


@pytest.fixture
def ids(client) -> tuple[str, str]:  # type: ignore[no-untyped-def]
    pid = client.post("/fhir/Patient", json={"resourceType": "Patient"}).json()["id"]
    device = client.post("/fhir/Device", json={"resourceType": "Device"}).json()["id"]
    # a stored blood pressure: its code sets exist (the summary looks them up first)
    stored = dict(_bp(pid), identifier=[{"system": "urn:test:obs", "value": f"fixture-{pid}"}])
    assert client.post("/fhir/Observation", json=stored).status_code == 201
    return pid, device


def _serves(engine: Engine, index: str, used: set[str]) -> bool:
    """Whether the plan used the index written for the query. SQLite's choice follows the
    query's form and is checked exactly. PostgreSQL's planner chooses by statistics, which on
    tables of a few rows (emptied and refilled by every test before, analysed whenever
    autovacuum came by) make any of the Observation indexes as cheap as another: there an
    Observation index (and, below, no full scan) is what is checked."""
    if engine.dialect.name == "sqlite":
        return index in used
    return index in used or any(i.startswith("ix_obs_") for i in used)


def test_observation_queries_use_their_index(services, ids) -> None:  # type: ignore[no-untyped-def]
    engine = services.engine
    pid, device = ids
    failures = []
    for what, run, index, covering_ok in _queries(services, pid, device):
        with captured(engine) as statements:
            run()
        assert statements, what
        plans = [explain(engine, s, p) for s, p in statements]
        used = set().union(*(_indexes(plan) for plan in plans))
        scans = [
            line
            for plan in plans
            for line in _full_scans(engine, plan, "observation_index", covering_ok=covering_ok)
        ]
        if not _serves(engine, index, used) or scans:
            failures.append((what, index, sorted(used), scans, plans))
    assert not failures, "\n".join(
        f"{w}: wanted {i}, used {u}, full scans {s}\n  " + "\n  ".join(map(str, p))
        for w, i, u, s, p in failures
    )


def test_indicators_and_missing_use_their_index(services, ids, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """The indicator figures (patients of an organisation) and the missing-measurement check
    (per scheduled code), with their data lookups stubbed to reach the Observation queries."""
    import interop.care.missing as missing
    import interop.indicators as indicators

    engine = services.engine
    pid, _device = ids
    monkeypatch.setattr(indicators, "_org_ids", lambda conn, orgnr: (["org"], "Org"))
    monkeypatch.setattr(indicators, "_patients", lambda conn, org_ids: [pid, "other"])
    monkeypatch.setattr(missing, "_schedules", lambda conn: [(pid, "8480-6", 48, 0)])
    with captured(engine) as ind_statements, services.store.reader() as conn:
        indicators.compute(conn, "974760673", date(2026, 1, 1), date(2026, 1, 31))
    with captured(engine) as missing_statements:
        missing.check_missing(services, datetime(2026, 1, 1, tzinfo=UTC))
    for what, statements, index in (
        ("indicators", ind_statements, "ix_obs_patient_time"),
        ("missing", missing_statements, "ix_obs_patient_set_time"),
    ):
        assert statements, what
        for statement, params in statements:
            plan = explain(engine, statement, params)
            if engine.dialect.name == "sqlite":
                assert index in _indexes(plan), (what, statement, plan)
            else:
                # PostgreSQL weighs the indexes by the statistics of a nearly empty table,
                # which other tests' writes move: any Observation index, never a table scan
                assert any(i.startswith("ix_obs_") for i in _indexes(plan)), (what, plan)
            assert not _full_scans(engine, plan, "observation_index"), (what, plan)


def test_partial_index_predicate_renders_as_indexed(services) -> None:  # type: ignore[no-untyped-def]
    """``is_primary == true()`` is what the queries say; on SQLite it must render as the
    partial index's own WHERE term (``is_primary = 1``), literally."""
    from sqlalchemy import true

    from interop.store.schema import observation_table

    o = observation_table.c
    sql = str(
        select(o.res_id).where(o.is_primary == true()).compile(dialect=services.engine.dialect)
    )
    if services.engine.dialect.name == "sqlite":
        assert sql.endswith("observation_index.is_primary = 1")
        with services.store.reader() as conn:
            index_sql = conn.exec_driver_sql(
                "SELECT sql FROM sqlite_master WHERE name = 'ix_obs_patient_time'"
            ).scalar_one()
        assert index_sql.endswith("WHERE is_primary = 1")
    else:
        assert sql.endswith("observation_index.is_primary = true")


# ---- write amplification ----------------------------------------------------------------


def _bp(pid: str, device: str | None = None) -> dict[str, Any]:
    obs: dict[str, Any] = {
        "resourceType": "Observation",
        "status": "final",
        "identifier": [{"system": "urn:test:obs", "value": f"bp-{pid}-{device}"}],
        "code": {
            "coding": [
                {"system": LOINC, "code": "85354-9"},
                {"system": "urn:iso:std:iso:11073:10101", "code": "150020"},
            ]
        },
        "subject": {"reference": f"Patient/{pid}" if device is None else f"Device/{device}"},
        "effectiveDateTime": "2026-01-05T08:00:00+01:00",
        "component": [
            {
                "code": {"coding": [{"system": LOINC, "code": code}]},
                "valueQuantity": {
                    "value": v,
                    "system": "http://unitsofmeasure.org",
                    "code": "mm[Hg]",
                },
            }
            for code, v in (("8480-6", 130), ("8462-4", 80))
        ],
    }
    if device is not None:
        obs["device"] = {"reference": f"Device/{device}"}
    return obs


def test_index_rows_per_observation(services, ids) -> None:  # type: ignore[no-untyped-def]
    """A blood pressure with two codings and two components, about a Patient: a row for its
    code and one per component; its Patient subject is indexed once
    (observation_index.patient_id), never as search_reference rows; only the primary row goes
    into the patient-time index."""
    from interop.store.schema import observation_table, reference_table, token_table

    pid, device = ids
    with services.store.write(WriteContext.service()) as tx:
        obs = tx.create(_bp(pid))
        about_device = tx.create(_bp(pid, device))
    o, r, t = observation_table.c, reference_table.c, token_table.c
    with services.store.reader() as conn:

        def count(stmt: Any) -> int:
            return int(conn.execute(select(func.count()).select_from(stmt.subquery())).scalar())

        # one row for its code (two codings: one code set) and one per component
        assert count(select(o.row_id).where(o.res_id == obs.res_id)) == 3
        assert count(select(o.row_id).where(o.res_id == obs.res_id, o.is_primary == True)) == 1  # noqa: E712
        assert (
            count(select(r.row_id).where(r.res_type == "Observation", r.res_id == obs.res_id)) == 0
        )
        # its two tokens (status, category) and the zone triage judged (beside it)
        assert (
            count(select(t.row_id).where(t.res_type == "Observation", t.res_id == obs.res_id)) == 3
        )
        assert (
            count(
                select(t.row_id).where(
                    t.res_type == "Observation", t.res_id == obs.res_id, t.param == "zone"
                )
            )
            == 1
        )
        refs = conn.execute(
            select(r.param, r.target).where(
                r.res_type == "Observation", r.res_id == about_device.res_id
            )
        ).all()
        assert sorted(tuple(x) for x in refs) == [
            ("device", f"Device/{device}"),
            ("subject", f"Device/{device}"),
        ]
        patient_rows = conn.execute(
            select(o.patient_id).where(o.res_id == about_device.res_id).distinct()
        ).all()
        assert [x[0] for x in patient_rows] == [None]


# ---- the migrations ---------------------------------------------------------------------

_old_observation_index = sa.table(
    "observation_index",
    *(sa.column(c) for c in ("res_id", "patient_id", "system", "code", "is_primary")),
    *(sa.column(c) for c in ("is_component", "effective", "effective_end", "value", "unit")),
    *(sa.column(c) for c in ("status", "zone")),
)
"""The observation index before 0012 (a row per coding)."""


def _downgrade(engine: Engine, revision: str) -> None:
    from alembic import command

    from interop.store.migrate import alembic_config

    cfg = alembic_config(engine)
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.downgrade(cfg, revision)


def _resource_row(res_id: str, patient: str | None, code: dict[str, Any], **more: Any) -> Any:
    import orjson

    obs = {"resourceType": "Observation", "id": res_id, "status": "final", "code": code, **more}
    return {
        "res_type": "Observation",
        "res_id": res_id,
        "version": 1,
        "patient_id": patient,
        "last_updated": 0,
        "deleted": False,
        "content": orjson.dumps(obs),
    }


def test_migration_0010_moves_existing_rows(services) -> None:  # type: ignore[no-untyped-def]
    """On a database written by the earlier layout: the Observation's Patient reference rows
    go (its subject is observation_index.patient_id), other rows stay; the downgrade puts
    them back from the observation index."""
    from sqlalchemy import insert

    from interop.store.migrate import upgrade
    from interop.store.schema import reference_table, resource_table

    engine = services.engine

    def references() -> list[tuple[str, str, str, str]]:
        r = reference_table.c
        with services.store.reader() as conn:
            rows = conn.execute(select(r.res_type, r.res_id, r.param, r.target)).all()
        return sorted((a, b, c, d) for a, b, c, d in rows)

    old_rows = [
        ("Observation", "o1", "patient", "Patient/p1"),
        ("Observation", "o1", "subject", "Patient/p1"),
        ("Observation", "o1", "device", "Device/d1"),
        ("Observation", "o2", "subject", "Device/d1"),
        ("Flag", "f1", "patient", "Patient/p1"),
        ("Flag", "f1", "subject", "Patient/p1"),
    ]
    _downgrade(engine, "0009")
    try:
        with engine.begin() as conn:
            conn.execute(
                insert(reference_table),
                [
                    dict(zip(("res_type", "res_id", "param", "target"), r, strict=True))
                    for r in old_rows
                ],
            )
            conn.execute(
                insert(_old_observation_index),
                [
                    {"res_id": res_id, "patient_id": pid, "code": code, "is_primary": primary}
                    | {"system": "", "is_component": False, "status": "final"}
                    for res_id, pid, code, primary in (
                        ("o1", "p1", "x", True),
                        ("o1", "p1", "y", False),
                        ("o2", None, "x", True),
                    )
                ],
            )
            conn.execute(
                insert(resource_table),
                [
                    _resource_row("o1", "p1", {"coding": [{"code": "x"}, {"code": "y"}]}),
                    _resource_row("o2", None, {"coding": [{"code": "x"}]}),
                ],
            )
        upgrade(engine)
        kept = [r for r in old_rows if not (r[0] == "Observation" and r[3] == "Patient/p1")]
        assert references() == sorted(kept)
        _downgrade(engine, "0009")
        assert references() == sorted(old_rows)
    finally:
        upgrade(engine)


def test_migration_0012_makes_a_row_per_code(services) -> None:  # type: ignore[no-untyped-def]
    """On a database with a row per coding: the index is rebuilt from the stored
    Observations with a row per code (the times kept from the old rows, which the server's
    time zone made), search by any coding still finds them, and the downgrade gives back
    the rows per coding."""
    from sqlalchemy import insert

    from interop.store.migrate import upgrade
    from interop.store.schema import code_set_table, observation_table, resource_table
    from interop.store.search import SearchRequest

    engine = services.engine
    bp = {
        "coding": [
            {"system": LOINC, "code": "85354-9"},
            {"system": "urn:iso:std:iso:11073:10101", "code": "150020"},
        ]
    }
    components = [
        {
            "code": {"coding": [{"system": LOINC, "code": c}, {"system": "urn:x", "code": c}]},
            "valueQuantity": {"value": v, "code": "mm[Hg]"},
        }
        for c, v in (("8480-6", 130.0), ("8462-4", 80.0))
    ]
    old_rows = [
        ("o1", LOINC, "85354-9", True, False, None),
        ("o1", "urn:iso:std:iso:11073:10101", "150020", False, False, None),
        ("o1", LOINC, "8480-6", False, True, 130.0),
        ("o1", "urn:x", "8480-6", False, True, 130.0),
        ("o1", LOINC, "8462-4", False, True, 80.0),
        ("o1", "urn:x", "8462-4", False, True, 80.0),
    ]

    def rows_per_coding() -> list[tuple[Any, ...]]:
        o = _old_observation_index.c
        with engine.connect() as conn:
            got = conn.execute(
                select(o.res_id, o.system, o.code, o.is_primary, o.is_component, o.value)
            ).all()
        return sorted((a, b, c, bool(d), bool(e), f) for a, b, c, d, e, f in got)

    _downgrade(engine, "0011")
    try:
        with engine.begin() as conn:
            conn.execute(
                insert(_old_observation_index),
                [
                    dict(
                        zip(
                            ("res_id", "system", "code", "is_primary", "is_component"),
                            r[:5],
                            strict=True,
                        ),
                        value=r[5],
                        patient_id="p1",
                        status="final",
                        effective=1_000,
                        effective_end=2_000,
                    )
                    for r in old_rows
                ],
            )
            conn.execute(
                insert(resource_table),
                [_resource_row("o1", "p1", bp, component=components)],
            )
        upgrade(engine)
        o = observation_table.c
        with engine.connect() as conn:
            rows = conn.execute(
                select(o.code, o.is_primary, o.value, o.effective, o.effective_end)
                .where(o.res_id == "o1")
                .order_by(o.row_id)
            ).all()
            members = conn.execute(select(func.count()).select_from(code_set_table)).scalar()
        assert [tuple(r) for r in rows] == [
            ("85354-9", True, None, 1_000, 2_000),
            ("8480-6", False, 130.0, 1_000, 2_000),
            ("8462-4", False, 80.0, 1_000, 2_000),
        ]
        assert members == 6  # three sets of two codings
        for params in (
            [("code", "urn:iso:std:iso:11073:10101|150020")],
            [("component-code", "urn:x|8462-4")],
        ):
            found = services.search.search(SearchRequest("Observation", params))
            assert [r[0] for r in found.rows] == ["o1"], params
        _downgrade(engine, "0011")
        assert rows_per_coding() == sorted(old_rows)
    finally:
        upgrade(engine)
