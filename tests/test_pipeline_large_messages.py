"""A message with many measurements is written in chunks as it is staged (on PostgreSQL by
COPY). The outcome is the one a small message gets: everything stored and indexed once, idempotent on re-send, and nothing
at all when the transaction fails half-way."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from random import Random
from typing import Any

import orjson
import pytest
from sqlalchemy import func, select

from adapters.base import FNR_OID, IngestMeta, PatientRef
from interop.identifiers import generate_fnr
from interop.ingest.pipeline import STREAM_CHUNK, IngestPipeline
from interop.store.context import WriteContext
from interop.store.schema import observation_table, resource_table, unique_identifier_table
from interop.store.search import SearchRequest

FNR = generate_fnr(date(1948, 9, 1), rng=Random(11), synthetic=True)
GROUPS = STREAM_CHUNK  # 3 Observations per group: three chunks
START = int((datetime.now(UTC) - timedelta(days=3)).timestamp())


def _withings(groups: int, first_id: int = 1) -> bytes:
    return orjson.dumps(
        {
            "status": 0,
            "body": {
                "measuregrps": [
                    {
                        "grpid": first_id + g,
                        "category": 1,
                        "date": START + g * 60,
                        "measures": [
                            {"type": 1, "unit": -3, "value": 80000 + g},
                            {"type": 9, "unit": 0, "value": 70 + g % 20},
                            {"type": 10, "unit": 0, "value": 120 + g % 30},
                            {"type": 11, "unit": 0, "value": 60 + g % 30},
                        ],
                    }
                    for g in range(groups)
                ]
            },
        }
    )


META = IngestMeta(
    source="withings-test",
    patient=PatientRef(FNR_OID, FNR),
    options={"profile": "withings-body-measures"},
)


def _counts(services: Any, pid: str) -> tuple[int, int, int]:
    with services.engine.connect() as conn:
        obs = conn.execute(
            select(func.count())
            .select_from(resource_table)
            .where(resource_table.c.res_type == "Observation", resource_table.c.patient_id == pid)
        ).scalar_one()
        rows = conn.execute(
            select(func.count())
            .select_from(observation_table)
            .where(observation_table.c.patient_id == pid)
        ).scalar_one()
        claims = conn.execute(
            select(func.count())
            .select_from(unique_identifier_table)
            .where(unique_identifier_table.c.system == "urn:dho-interop:source:withings")
        ).scalar_one()
    return obs, rows, claims


@pytest.fixture
def patient_id(services: Any) -> str:
    with services.store.write(WriteContext.service()) as tx:
        return tx.create(
            {"resourceType": "Patient", "identifier": [{"system": FNR_OID, "value": FNR}]}
        ).res_id


def test_a_large_message_is_stored_whole_and_once(services: Any, patient_id: str) -> None:
    pipe = IngestPipeline(services)
    report = pipe.ingest("mapped-json", _withings(GROUPS), META)
    n = 3 * GROUPS
    assert (report.created, report.rejected) == (n, 0), report.to_json()
    assert n >= 2 * STREAM_CHUNK  # the chunked path
    # an index row per code: weight 1, pulse 1, BP 1 for the panel and 1 for each component
    assert _counts(services, patient_id) == (n, GROUPS * 5, n)
    got = services.search.search(
        SearchRequest(
            "Observation",
            [("patient", patient_id), ("code", "http://loinc.org|85354-9"), ("_count", "1000")],
        )
    )
    assert got.total == GROUPS and len(got.rows) == GROUPS
    # triage classified each (its write hooks read what was just written)
    assert all(b"/CodeSystem/zone" in content for _, content in got.rows)

    again = pipe.ingest("mapped-json", _withings(GROUPS), META)
    assert (again.created, again.updated, again.duplicate) == (0, 0, n), again.to_json()
    assert _counts(services, patient_id) == (n, GROUPS * 5, n)


def test_a_failure_after_chunks_were_written_leaves_nothing(
    services: Any, patient_id: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    pipe = IngestPipeline(services)
    seen = [0]

    def failing(tx: Any, resource: dict[str, Any]) -> dict[str, Any]:
        if resource.get("resourceType") == "Observation":
            seen[0] += 1
            if seen[0] == 3 * STREAM_CHUNK + 7:  # chunks before this one are written
                raise RuntimeError("the disk is full")
        return resource

    monkeypatch.setattr(services.store, "prepare_hooks", [*services.store.prepare_hooks, failing])
    with pytest.raises(RuntimeError, match="disk is full"):
        pipe.ingest("mapped-json", _withings(2 * GROUPS), META)
    assert _counts(services, patient_id) == (0, 0, 0)

    # the connection went back to the pool clean: the next ingest stores everything
    monkeypatch.setattr(services.store, "prepare_hooks", services.store.prepare_hooks[:-1])
    report = pipe.ingest("mapped-json", _withings(GROUPS), META)
    assert report.created == 3 * GROUPS
    assert _counts(services, patient_id)[0] == 3 * GROUPS


def test_a_chunk_written_is_there_for_the_next_statement(services: Any, patient_id: str) -> None:
    """Store level: a chunk's rows (COPY on PostgreSQL past the small-write size) are there
    for the next statement in the transaction, and committed with it."""
    obs = {
        "resourceType": "Observation",
        "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4"}]},
        "subject": {"reference": f"Patient/{patient_id}"},
        "effectiveDateTime": "2026-01-05T08:30:00+01:00",
        "valueQuantity": {"value": 70, "unit": "/min", "system": "http://unitsofmeasure.org"},
    }
    with services.store.write(WriteContext.service()) as tx:
        staged = tx.stage_creates([(dict(obs), None) for _ in range(40)], validate=False)
        tx.write_staged([staged])
        inside = tx.conn.execute(
            select(func.count())
            .select_from(observation_table)
            .where(observation_table.c.patient_id == patient_id)
        ).scalar_one()
        assert inside == 40
        staged = tx.stage_creates([(dict(obs), None) for _ in range(10)], validate=False)
        tx.write_staged([staged])
    assert _counts(services, patient_id)[:2] == (50, 50)


def test_an_item_claimed_after_the_look_up_is_a_duplicate_on_the_second_pass(
    services: Any, patient_id: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A concurrent writer stores the same items between the look-up of the identifiers and
    the insert: the claims are refused, and the message runs again and finds them stored."""
    import interop.ingest.pipeline as pipeline

    pipe = IngestPipeline(services)
    n = 3 * GROUPS
    assert pipe.ingest("mapped-json", _withings(GROUPS), META).created == n
    lookups = [0]
    real = pipeline.find_identifiers

    def first_look_up_too_early(conn: Any, idents: Any) -> Any:
        lookups[0] += 1
        return {} if lookups[0] == 1 else real(conn, idents)

    monkeypatch.setattr(pipeline, "find_identifiers", first_look_up_too_early)
    report = pipe.ingest("mapped-json", _withings(GROUPS), META)
    assert lookups[0] == 2
    assert (report.created, report.duplicate) == (0, n), report.to_json()
    assert _counts(services, patient_id) == (n, GROUPS * 5, n)
