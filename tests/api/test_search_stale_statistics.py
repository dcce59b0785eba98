"""PostgreSQL: a patient's search of a type whose resources the planner's statistics have never
seen (the first Conditions of a deployment, until autovacuum analyses the tables) starts from
the patient's index rows and looks each candidate up by key. Before, the planner believed the
type held one row, walked every resource of the type and tested each against the patient's
references and the other parameters: 34 ms a search right after the bench's creates."""

from __future__ import annotations

import json
from typing import Any

import pytest
from sqlalchemy import event, text

from interop.store.context import Door, WriteContext
from tests.store.test_open_items import ADMIN, _scans

SNOMED = "http://snomed.info/sct"
TABLES = ("resource", "search_reference", "search_token")


def _condition(pid: str, n: int) -> dict[str, Any]:
    return {
        "resourceType": "Condition",
        "clinicalStatus": {
            "coding": [
                {
                    "system": "http://terminology.hl7.org/CodeSystem/condition-clinical",
                    "code": ("active", "resolved")[n % 2],
                }
            ]
        },
        "code": {"coding": [{"system": SNOMED, "code": ("38341003", "44054006")[n % 2]}]},
        "meta": {"tag": [{"system": "urn:test:cohort", "code": "abc"[n % 3]}]},
        "subject": {"reference": f"Patient/{pid}"},
    }


def _nodes(plan: dict[str, Any]) -> list[dict[str, Any]]:
    return [plan] + [n for p in plan.get("Plans", []) for n in _nodes(p)]


def test_postgresql_a_patients_search_reads_by_key_when_statistics_predate_the_type(
    services: Any, client: Any, backend: str
) -> None:
    if backend != "postgresql":
        pytest.skip("the planner's statistics are PostgreSQL's")
    engine = services.store.engine
    patients = [f"s{i}" for i in range(60)]
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as c:
        for t in TABLES:  # no autovacuum ANALYZE between the writes and the searches below
            c.execute(text(f"ALTER TABLE {t} SET (autovacuum_enabled = false)"))
    try:
        with services.store.write(WriteContext(ADMIN, Door.FHIR)) as tx:
            for p in patients:
                tx.update("Patient", p, {"resourceType": "Patient", "id": p})
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as c:
            c.execute(text("ANALYZE"))  # statistics of a deployment with no Condition yet
        with services.store.write(WriteContext(ADMIN, Door.FHIR)) as tx:
            tx.create_many([(_condition(p, n), None) for p in patients for n in range(12)])
        searches = {
            "patient+status+code": "/fhir/Condition?patient=Patient/s7&clinical-status=active"
            f"&code={SNOMED}|38341003",
            "patient+_tag": "/fhir/Condition?patient=Patient/s7&_tag=urn:test:cohort|a",
            "_tag alone": "/fhir/Condition?_tag=urn:test:cohort|a&_count=50",
        }
        for name, path in searches.items():
            statements: list[tuple[str, Any]] = []

            def capture(
                conn: Any,
                cursor: Any,
                stmt: str,
                params: Any,
                *_: Any,
                into: list[Any] = statements,
            ) -> None:
                if "FROM resource" in stmt and "search_" in stmt:
                    into.append((stmt, params))

            event.listen(engine, "before_cursor_execute", capture)
            try:
                answer = client.get(path)
            finally:
                event.remove(engine, "before_cursor_execute", capture)
            assert answer.status_code == 200, answer.text
            found = answer.json().get("entry", [])
            # the right resources: the patient's own, matching every parameter
            assert found, name
            for entry in found:
                subject = entry["resource"]["subject"]["reference"]
                assert subject == "Patient/s7" or "patient" not in path
                tags = entry["resource"]["meta"]["tag"]
                assert {"system": "urn:test:cohort", "code": "a"} in tags or "_tag" not in path
            assert statements, name
            with engine.connect() as conn:
                for stmt, params in statements:
                    plan = conn.exec_driver_sql(
                        "EXPLAIN (ANALYZE, FORMAT JSON) " + stmt, params
                    ).scalar_one()[0]["Plan"]
                    read = sum(s["Actual Rows"] * s["Actual Loops"] for s in _scans(plan))
                    tested = sum(n.get("Rows Removed by Join Filter", 0) for n in _nodes(plan))
                    # the patient's 12 Conditions and their rows, never the 720 of the type;
                    # for the tag, rows in proportion to the type's (its 240 and a look-up of
                    # each, or one pass over the type's tokens), never every pair of a
                    # Condition and a tagged row (144,720 read before)
                    limit = 100 if "patient" in path else 2500
                    assert read < limit and tested < 1000, (
                        name,
                        read,
                        tested,
                        json.dumps(plan, indent=1)[:4000],
                    )
    finally:
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as c:
            for t in TABLES:
                c.execute(text(f"ALTER TABLE {t} RESET (autovacuum_enabled)"))
