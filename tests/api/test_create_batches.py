"""Creates written together (group-committed single creates, small and large transaction
Bundles, ingest): a few go in one statement on PostgreSQL, more by COPY; SQLite inserts. The
outcome is the same either way: every row stored, a taken business identifier refused with
its holder named, and nothing of a refused batch left behind."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from interop.store.backends.postgresql import SMALL_WRITE_ROWS
from interop.store.context import WriteContext
from interop.store.repository import DuplicateIdentifier
from interop.store.schema import code_set_table, observation_table, resource_table, token_table

from .test_fhir_crud import observation


def _obs(patient: str, ident: str, value: int = 70) -> dict[str, Any]:
    """test_fhir_crud's heart rate, with an MDC coding beside the LOINC one and a device."""
    obs = observation(patient, value=value, ident=ident)
    obs["code"]["coding"].append({"system": "urn:iso:std:iso:11073:10101", "code": "149546"})
    obs["device"] = {"reference": "Device/d1"}
    return obs


# an Observation below adds 7 rows: itself, its identifier claim, 3 tokens, its device
# reference and its observation index row; the batch's code set adds 2 (its two codings)
SMALL_WRITE = (SMALL_WRITE_ROWS - 2) // 7


def _count(services: Any, table: Any, *where: Any) -> int:
    with services.engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(table).where(*where)).scalar_one())


@pytest.mark.parametrize("n", [1, SMALL_WRITE, SMALL_WRITE + 1, 3 * SMALL_WRITE])
def test_every_row_of_a_batch_is_written(services: Any, n: int) -> None:
    with services.store.write(WriteContext.service()) as tx:
        stored = tx.create_many([(_obs("p1", f"ok-{n}-{i}", 60 + i), None) for i in range(n)])
    ids = [s.res_id for s in stored]
    assert _count(services, resource_table, resource_table.c.res_id.in_(ids)) == n
    # per Observation: an index row for its code, three tokens and the zone triage judged
    # (beside it), the device reference; its two codings are one code set, written once
    assert _count(services, observation_table, observation_table.c.res_id.in_(ids)) == n
    assert _count(services, code_set_table) == 2
    assert _count(services, token_table, token_table.c.res_id.in_(ids)) == 4 * n
    for s, i in zip(stored, range(n), strict=True):
        assert services.store.read("Observation", s.res_id).json()["valueQuantity"]["value"] == (
            60 + i
        )


@pytest.mark.parametrize("n", [1, SMALL_WRITE, 3 * SMALL_WRITE])
def test_a_taken_identifier_refuses_the_whole_batch(services: Any, n: int) -> None:
    with services.store.write(WriteContext.service()) as tx:
        holder = tx.create(_obs("p1", "taken"))
    items = [(_obs("p1", f"new-{n}-{i}"), None) for i in range(n - 1)]
    items.insert(n // 2, (_obs("p1", "taken"), None))
    with (
        pytest.raises(DuplicateIdentifier) as exc,
        services.store.write(WriteContext.service()) as tx,
    ):
        tx.create_many(items)
    assert "urn:test|taken" in str(exc.value)
    assert exc.value.existing_id == holder.res_id
    # nothing of the refused batch is left, and the holder is untouched
    assert _count(services, resource_table, resource_table.c.res_type == "Observation") == 1
    assert _count(services, observation_table) == 1
    with services.store.write(WriteContext.service()) as tx:
        again = tx.create_many([(_obs("p1", f"after-{n}"), None)])
    assert services.store.read("Observation", again[0].res_id).res_id == again[0].res_id


def test_the_same_identifier_twice_in_one_batch(services: Any) -> None:
    with pytest.raises(DuplicateIdentifier), services.store.write(WriteContext.service()) as tx:
        tx.create_many([(_obs("p1", "twice"), None), (_obs("p1", "twice"), None)])
    assert _count(services, resource_table, resource_table.c.res_type == "Observation") == 0


def test_concurrent_creates_one_duplicate_among_them(settings: Any, services: Any) -> None:
    """Group commit: the requests that arrive together share a transaction; the one with a
    taken identifier gets its 409 and the others their 201."""
    from interop.api.app import create_app
    from tests.conftest import ADMIN_HEADERS
    from tests.live_server import live_server

    async def go(base: str) -> list[httpx.Response]:
        async with httpx.AsyncClient(base_url=base, headers=ADMIN_HEADERS) as http:
            p9 = await http.put("/fhir/Patient/p9", json={"resourceType": "Patient", "id": "p9"})
            assert p9.status_code == 201, p9.text  # what the Observations refer to
            first = await http.post("/fhir/Observation", json=_obs("p9", "dup-http"))
            assert first.status_code == 201, first.text
            bodies = [_obs("p9", f"fresh-{i}") for i in range(12)]
            bodies.insert(5, _obs("p9", "dup-http"))
            return list(
                await asyncio.gather(*(http.post("/fhir/Observation", json=b) for b in bodies))
            )

    with live_server(create_app(settings, services=services)) as base:
        answers = asyncio.run(go(base))
    assert [r.status_code for r in answers] == [201] * 5 + [409] + [201] * 7
    refused = answers[5].json()
    assert refused["resourceType"] == "OperationOutcome"
    assert "dup-http" in refused["issue"][0]["diagnostics"]
