"""Several patients' open Tasks and active Flags, read together for triage: each patient gets
their own open items and nothing else, and on PostgreSQL the read stays a look-up by key
when the planner's statistics predate the first Tasks (a new deployment)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from sqlalchemy import text

from interop.access.actor import Actor
from interop.care.triage import OPEN_TASK, open_tasks_of
from interop.store import open_items as open_item_rows
from interop.store.context import Door, WriteContext
from interop.store.pg_arrays import array_literal

ADMIN = Actor(id="admin", role="admin")
OPEN = {"Task": OPEN_TASK, "Flag": ("active",)}


def _patient(pid: str) -> dict[str, Any]:
    return {"resourceType": "Patient", "id": pid}


def _task(pid: str, status: str, note: str) -> dict[str, Any]:
    return {
        "resourceType": "Task",
        "status": status,
        "intent": "order",
        "description": note,
        "for": {"reference": f"Patient/{pid}"},
    }


def _flag(pid: str, status: str, note: str) -> dict[str, Any]:
    return {
        "resourceType": "Flag",
        "status": status,
        "code": {"text": note},
        "subject": {"reference": f"Patient/{pid}"},
    }


def _observation(pid: str, n: int) -> dict[str, Any]:
    return {
        "resourceType": "Observation",
        "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4"}]},
        "subject": {"reference": f"Patient/{pid}"},
        "effectiveDateTime": f"2026-11-{1 + n:02d}T08:00:00+01:00",
        "valueQuantity": {
            "value": 70,
            "unit": "/min",
            "system": "http://unitsofmeasure.org",
            "code": "/min",
        },
    }


def _care_plan(pid: str, n: int) -> dict[str, Any]:
    return {
        "resourceType": "CarePlan",
        "status": "active",
        "intent": "plan",
        "title": f"plan {n}",
        "subject": {"reference": f"Patient/{pid}"},
    }


def _write(services: Any, resources: list[dict[str, Any]]) -> None:
    with services.store.write(WriteContext(ADMIN, Door.FHIR)) as tx:
        for r in resources:
            if "id" in r:
                tx.update(r["resourceType"], r["id"], r)
            else:
                tx.create(r)


def test_each_patient_gets_their_own_open_items_only(services: Any) -> None:
    _write(services, [_patient(p) for p in ("a", "b", "c")])
    _write(
        services,
        [
            _task("a", "requested", "a open"),
            _task("a", "completed", "a done"),
            _task("b", "in-progress", "b open"),
            _task("c", "ready", "c open"),
            _flag("a", "active", "a flag"),
            _flag("b", "inactive", "b old flag"),
        ],
    )
    with services.store.write(WriteContext(ADMIN, Door.FHIR)) as tx:
        rows = open_item_rows.of_patients(tx.conn, OPEN, ["a", "b"])
        got = {
            (rtype, pid, json.loads(content)["status"])
            for rtype, pid, _rid, content in rows
            if json.loads(content)["status"] in OPEN[rtype]
        }
        assert got == {
            ("Task", "a", "requested"),
            ("Task", "b", "in-progress"),
            ("Flag", "a", "active"),
        }
        # every row is on the patient its item refers to (never another patient's item)
        for rtype, pid, _rid, content in rows:
            item = json.loads(content)
            ref = item["for" if rtype == "Task" else "subject"]["reference"]
            assert ref == f"Patient/{pid}"
        assert [t["description"] for t in open_tasks_of(tx, "a")] == ["a open"]
        assert [t["description"] for t in open_tasks_of(tx, "c")] == ["c open"]


def _scans(plan: dict[str, Any]) -> list[dict[str, Any]]:
    own = [plan] if "Scan" in plan["Node Type"] and plan["Node Type"] != "Function Scan" else []
    return own + [s for p in plan.get("Plans", []) for s in _scans(p)]


def test_postgresql_reads_by_key_when_statistics_predate_the_first_tasks(
    services: Any, backend: str
) -> None:
    if backend != "postgresql":
        pytest.skip("the planner's statistics are PostgreSQL's")
    patients = [f"p{i}" for i in range(100)]
    engine = services.store.engine
    tables = ("resource", "search_reference", "search_token")
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as c:
        for t in tables:  # no autovacuum ANALYZE between the writes and the read below
            c.execute(text(f"ALTER TABLE {t} SET (autovacuum_enabled = false)"))
    try:
        _write(services, [_patient(p) for p in patients])
        with services.store.write(WriteContext(ADMIN, Door.FHIR)) as tx:
            tx.create_many([(_care_plan(p, n), None) for p in patients for n in range(10)])
            tx.create_many([(_observation(p, n), None) for p in patients for n in range(10)])
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as c:
            c.execute(text("ANALYZE"))  # statistics of a deployment with no Task or Flag yet
        _write(services, [_task(p, "requested", f"{p} {n}") for p in patients for n in range(5)])
        _write(services, [_task(p, "completed", f"{p} ok {n}") for p in patients for n in range(5)])
        _check_plan(services, patients[:10])
    finally:
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as c:
            for t in tables:
                c.execute(text(f"ALTER TABLE {t} RESET (autovacuum_enabled)"))


def _check_plan(services: Any, wanted: list[str]) -> None:
    with services.store.engine.connect() as conn:
        estimate = conn.execute(
            text(
                "EXPLAIN (FORMAT JSON) SELECT * FROM search_reference "
                "WHERE res_type = 'Task' AND param = 'patient'"
            )
        ).scalar_one()[0]["Plan"]["Plan Rows"]
        assert estimate <= 1  # the planner believes there are no Tasks: the case in question
        targets = [f"Patient/{p}" for p in wanted]
        plan = conn.exec_driver_sql(
            "EXPLAIN (ANALYZE, FORMAT JSON) " + open_item_rows._PG_SQL,
            (
                array_literal(["Task"] * len(targets) + ["Flag"] * len(targets), "text"),
                array_literal(targets * 2, "text"),
                array_literal(sorted({*OPEN_TASK, "active"}), "text"),
            ),
        ).scalar_one()[0]["Plan"]
        # a look-up by key at every step (a patient's references by the patient, an item by its
        # id), never a scan of every Task, or of every open one, filtered row by row
        scans = _scans(plan)
        assert scans
        for scan in scans:
            cond = scan.get("Index Cond", "")
            assert "target" in cond or "res_id" in cond, json.dumps(scan, indent=1)
        assert plan["Actual Rows"] == 5 * len(wanted)


def test_postgresql_a_second_transaction_waits_for_the_patients_items(
    services: Any, backend: str
) -> None:
    """Two API processes judging readings of the same patient: the second reads the open
    Tasks only once the first has committed its update of them (read for update), so neither
    overwrites the other and no create fails with 409 "changed concurrently"."""
    import threading

    if backend != "postgresql":
        pytest.skip("SQLite has one writer at a time")
    _write(services, [_patient("p"), _patient("q")])
    _write(services, [_task("p", "requested", "p open")])
    second_read = threading.Event()
    seen: list[str] = []

    def second() -> None:
        with services.store.write(WriteContext(ADMIN, Door.FHIR)) as tx:
            seen.extend(str(c) for *_, c in open_item_rows.of_patients(tx.conn, OPEN, ["q", "p"]))
            second_read.set()

    with services.store.write(WriteContext(ADMIN, Door.FHIR)) as tx:
        open_item_rows.of_patients(tx.conn, OPEN, ["p"])
        other = threading.Thread(target=second)
        other.start()
        assert not second_read.wait(0.5)  # waits for this transaction
        with services.store.write(WriteContext(ADMIN, Door.FHIR)) as third:
            open_item_rows.of_patients(third.conn, OPEN, ["q2"])  # another patient: no wait
        tx.create(_task("p", "requested", "p opened by the first"))
    other.join(timeout=10)
    assert second_read.is_set()
    # the second read what the first committed: its snapshot is taken after the lock
    assert any("p opened by the first" in c for c in seen) and any("p open" in c for c in seen)
