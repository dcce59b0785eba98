"""Reads that arrive together are fetched together, and each caller still gets exactly its own
answer: the stored bytes of its resource, 404 for an unknown id, 410 for a deleted one."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest

from interop.api.app import create_app
from interop.fhir.outcome import FhirError
from interop.store.context import WriteContext
from interop.store.fastread import FastReader, ReadBatcher
from tests.conftest import ADMIN_HEADERS
from tests.live_server import live_server


def _patient(i: int) -> dict[str, Any]:
    return {"resourceType": "Patient", "name": [{"family": f"Batch{i}", "given": ["Kari"]}]}


def _created(services: Any, n: int) -> list[Any]:
    with services.store.write(WriteContext.service()) as tx:
        return [tx.create(_patient(i)) for i in range(n)]


def test_concurrent_reads_share_statements_and_keep_their_answers(services) -> None:  # type: ignore[no-untyped-def]
    store = services.store
    made = _created(services, 30)
    with store.write(WriteContext.service()) as tx:
        tx.delete("Patient", made[0].res_id)
    statements: list[int] = []
    reader = store.fast
    original = reader.get_many_with

    def counting(res_type: str, ids: Any, companion: Any = None) -> Any:
        statements.append(len(ids))
        return original(res_type, ids, companion)

    reader.get_many_with = counting  # type: ignore[method-assign]
    asked = [m.res_id for m in made] + [made[5].res_id, "no-such-id", made[7].res_id]

    async def all_reads() -> list[Any]:
        return await asyncio.gather(
            *(store.read_async("Patient", rid) for rid in asked), return_exceptions=True
        )

    try:
        results = asyncio.run(all_reads())
    finally:
        reader.get_many_with = original  # type: ignore[method-assign]

    assert statements == [31], "the 33 reads (two repeated) are one statement for 31 ids"
    assert isinstance(results[0], FhirError) and results[0].status == 410
    assert isinstance(results[31], FhirError) and results[31].status == 404
    for rid, got in zip(asked, results, strict=True):
        if rid in ("no-such-id", made[0].res_id):
            continue
        assert not isinstance(got, BaseException)
        assert got.content == store.read("Patient", rid).content
        assert got.res_id == rid


def test_a_failed_batch_fails_every_waiting_read_and_the_next_one_recovers(services) -> None:  # type: ignore[no-untyped-def]
    made = _created(services, 3)
    reader = FastReader(services.store.engine)
    batcher = ReadBatcher(reader)
    original = reader.get_many_with

    def broken(res_type: str, ids: Any, companion: Any = None) -> Any:
        raise RuntimeError("database went away")

    async def reads() -> list[Any]:
        return await asyncio.gather(
            *(batcher.get("Patient", m.res_id) for m in made), return_exceptions=True
        )

    reader.get_many_with = broken  # type: ignore[method-assign]
    failed = asyncio.run(reads())
    assert all(isinstance(r, RuntimeError) for r in failed)
    reader.get_many_with = original  # type: ignore[method-assign]
    recovered = asyncio.run(reads())
    assert [r[0] for r in recovered] == [1, 1, 1]


@pytest.mark.parametrize("clients", [16])
def test_concurrent_http_reads_each_get_their_own_resource(
    settings, services, clients: int
) -> None:  # type: ignore[no-untyped-def]
    made = _created(services, 40)
    app = create_app(settings, services=services)

    async def run(base: str) -> list[httpx.Response]:
        async with httpx.AsyncClient(base_url=base, headers=ADMIN_HEADERS) as http:
            sem = asyncio.Semaphore(clients)

            async def one(path: str) -> httpx.Response:
                async with sem:
                    return await http.get(path)

            paths = [f"/fhir/Patient/{m.res_id}" for m in made] * 3 + ["/fhir/Patient/unknown"]
            return await asyncio.gather(*(one(p) for p in paths))

    with live_server(app) as base:
        responses = asyncio.run(run(base))
    by_id = {m.res_id: m for m in made}
    for r in responses[:-1]:
        assert r.status_code == 200
        rid = r.json()["id"]
        assert r.content == by_id[rid].content
        assert r.headers["etag"] == by_id[rid].etag
    assert responses[-1].status_code == 404
    assert responses[-1].json()["resourceType"] == "OperationOutcome"


def test_a_loop_that_stops_before_its_flush_does_not_hold_up_other_loops(services) -> None:  # type: ignore[no-untyped-def]
    """Each event loop has its own batch: a loop that went away with a read waiting (its
    flush never ran) must not leave the next loop's reads unanswered."""
    made = _created(services, 2)
    store = services.store
    gone = asyncio.new_event_loop()
    try:
        gone.create_task(store.read_async("Patient", made[0].res_id))
        gone.call_soon(gone.stop)  # runs after the read has queued its flush, before the flush
        gone.run_forever()
    finally:
        gone.close()

    async def read() -> Any:
        return await asyncio.wait_for(store.read_async("Patient", made[1].res_id), timeout=5)

    assert asyncio.run(read()).res_id == made[1].res_id


def test_a_large_batch_answers_every_read(services) -> None:  # type: ignore[no-untyped-def]
    made = _created(services, 230)  # on SQLite more than one IN (...) statement's worth

    async def all_reads() -> list[Any]:
        return await asyncio.gather(*(services.store.read_async("Patient", m.res_id) for m in made))

    got = asyncio.run(all_reads())
    assert [g.res_id for g in got] == [m.res_id for m in made]
    assert all(g.content == m.content for g, m in zip(got, made, strict=True))
