"""Runs: a claim takes several messages of a destination; a failure stops the run and puts the
rest back; outcomes only change rows still held under the claim's lease."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from interop.national.wiring import default_transports
from interop.routing.outbox import Outbox, Outcome
from interop.routing.worker import DeliveryWorker
from interop.store.schema import outbox_table
from tests.routing.test_outbox import Receiver, _enqueue


def _rows(services: Any) -> dict[str, Any]:
    with services.store.reader() as conn:
        return {r.id: r for r in conn.execute(select(outbox_table).order_by(outbox_table.c.seq))}


def test_failure_stops_the_run_and_returns_the_rest(services) -> None:  # type: ignore[no-untyped-def]
    rx = Receiver()
    try:
        ids = _enqueue(services, 5, rx.url)
        worker = DeliveryWorker(Outbox(services.engine), default_transports())
        rx.fail_next = [200, 200, 503]
        assert worker.run_once() == 3  # two delivered, the third failed, two never tried
        rows = _rows(services)
        assert [rows[i].status for i in ids] == ["transport-acked"] * 2 + ["queued"] * 3
        assert [rows[i].attempts for i in ids] == [1, 1, 1, 0, 0]
        assert rows[ids[2]].last_error and rows[ids[3]].next_attempt < rows[ids[2]].next_attempt
        assert worker.run_once() == 0  # the destination waits for the retry of the third
        with services.engine.begin() as conn:
            conn.execute(outbox_table.update().values(next_attempt=0))
        assert worker.run_once() == 3
        assert [b for _, b in rx.received] == [f"message {i}".encode() for i in range(5)]
        assert {r.status for r in _rows(services).values()} == {"transport-acked"}
    finally:
        rx.close()


def test_claims_runs_per_destination_oldest_first(services) -> None:  # type: ignore[no-untyped-def]
    a = _enqueue(services, 3, "http://127.0.0.1:9/", destination="Endpoint/a")
    b = _enqueue(services, 3, "http://127.0.0.1:9/", destination="Endpoint/b")
    outbox = Outbox(services.engine)
    runs = outbox.claim_runs(destinations=1, run=2)
    assert [[m.id for m in r] for r in runs] == [a[:2]]
    runs = outbox.claim_runs(destinations=5, run=5)
    assert [[m.id for m in r] for r in runs] == [b]  # a is held until its run is settled
    assert outbox.claim_runs() == []


def test_an_outcome_after_the_lease_ran_out_changes_nothing(services) -> None:  # type: ignore[no-untyped-def]
    [row_id] = _enqueue(services, 1, "http://127.0.0.1:9/")
    slow = Outbox(services.engine)
    [[mine]] = slow.claim_runs()
    with services.engine.begin() as conn:  # the lease runs out; another worker takes it
        conn.execute(outbox_table.update().values(lease_until=0))
    [[theirs]] = Outbox(services.engine).claim_runs()
    assert theirs.id == mine.id and theirs.lease_until != mine.lease_until
    slow.settle([Outcome(mine, "unsent")])
    row = _rows(services)[row_id]
    assert row.status == "sending" and row.lease_until == theirs.lease_until
    assert row.attempts == 2


def test_a_run_is_not_started_on_a_lease_about_to_run_out(services) -> None:  # type: ignore[no-untyped-def]
    rx = Receiver()
    try:
        ids = _enqueue(services, 3, rx.url)
        worker = DeliveryWorker(
            Outbox(services.engine, lease_seconds=0.000001), default_transports()
        )
        assert worker.run_once() == 0
        rows = _rows(services)
        assert rx.received == []
        assert [(rows[i].status, rows[i].attempts) for i in ids] == [("queued", 0)] * 3
    finally:
        rx.close()


def test_a_failed_delivery_waits_at_least_half_its_backoff() -> None:
    """Never retried at once: after the first failure at least a second, then doubling, and
    never past the cap."""
    from interop.routing.outbox import backoff_seconds

    for attempt, floor in ((1, 1.0), (2, 2.0), (5, 16.0)):
        waits = [backoff_seconds(attempt) for _ in range(2000)]
        assert floor <= min(waits) and max(waits) <= 2 * floor
    assert all(450.0 <= backoff_seconds(30) <= 900.0 for _ in range(200))
