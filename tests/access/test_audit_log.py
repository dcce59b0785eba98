"""Group commit of audit events: concurrent requests share transactions, each request resumes
only once its event is committed, one bad event fails alone, and writes are audited in their
own transaction (both commit or neither)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from sqlalchemy import text

from interop.access.actor import Actor
from interop.access.audit import AuditLog, audit_log, build_event, verify
from interop.store.context import Door, WriteContext

GP = Actor(id="gp-1", role="gp", hpr="9144889", name="Kari Lege")
OPERATOR = Actor(id="adm-1", role="admin", name="Drift")


def _committed(services: Any, what: str) -> bool:
    """Whether an AuditEvent about ``what`` is visible to another connection."""
    with services.engine.connect() as conn:
        return bool(
            conn.execute(
                text("SELECT count(*) FROM audit_chain WHERE what=:t"),
                {"t": what},
            ).scalar()
        )


def test_concurrent_records_share_transactions_and_wait_for_commit(services) -> None:  # type: ignore[no-untyped-def]
    log = AuditLog(services.store, max_batch=64)
    durable: list[bool] = []

    async def one(i: int) -> None:
        what = f"Observation/o{i}"
        await log.record(build_event(GP, "read", what, [f"p{i % 7}"]))
        durable.append(await asyncio.to_thread(_committed, services, what))

    async def main() -> None:
        await asyncio.gather(*(one(i) for i in range(300)))

    asyncio.run(main())
    assert len(durable) == 300 and all(durable)
    assert log.commits < 300 / 4, log.commits  # batched, not a transaction per event
    with services.store.reader() as conn:
        result = verify(conn)
        seqs = [r[0] for r in conn.execute(text("SELECT seq FROM audit_chain ORDER BY seq"))]
    assert result.ok and result.links == 300, result.problems
    assert seqs == list(range(1, 301))


def test_one_bad_event_fails_alone(services) -> None:  # type: ignore[no-untyped-def]
    log = AuditLog(services.store)
    bad = build_event(GP, "read", "Observation/bad", ["p1"])
    bad["outcomeDesc"] = {"not", "JSON"}  # a caller's mistake: cannot be stored

    async def main() -> list[Any]:
        good = [log.record(build_event(GP, "read", f"Observation/g{i}", ["p1"])) for i in range(5)]
        return await asyncio.gather(log.record(bad), *good, return_exceptions=True)

    results = asyncio.run(main())
    assert isinstance(results[0], Exception)
    assert results[1:] == [None] * 5
    assert all(_committed(services, f"Observation/g{i}") for i in range(5))
    assert not _committed(services, "Observation/bad")
    with services.store.reader() as conn:
        assert verify(conn).ok


def test_a_write_and_its_audit_commit_together(services) -> None:  # type: ignore[no-untyped-def]
    with services.store.write(WriteContext(OPERATOR, Door.FHIR)) as tx:
        kept = tx.create({"resourceType": "Patient", "active": True})
    with pytest.raises(RuntimeError), services.store.write(WriteContext(OPERATOR, Door.FHIR)) as tx:
        lost = tx.create({"resourceType": "Patient", "active": False})
        raise RuntimeError("the write fails after its hook ran")
    assert _committed(services, f"Patient/{kept.res_id}")
    assert not _committed(services, f"Patient/{lost.res_id}")
    # several writes in one transaction chain in order, after the group-committed reads
    asyncio.run(audit_log(services.store).record(build_event(GP, "read", "Patient/x", ["x"])))
    with services.store.write(WriteContext(OPERATOR, Door.FHIR)) as tx:
        for _ in range(3):
            tx.create({"resourceType": "Patient"})
    with services.store.reader() as conn:
        result = verify(conn)
    assert result.ok and result.links == 5, result.problems


def test_service_writes_without_an_actor_are_not_audited(services) -> None:  # type: ignore[no-untyped-def]
    with services.store.write(WriteContext.service()) as tx:
        made = tx.create({"resourceType": "Patient"})
    assert not _committed(services, f"Patient/{made.res_id}")


def test_builder_refuses_unknown_actions_and_outcomes() -> None:
    with pytest.raises(ValueError, match="audit action 'peek'"):
        build_event(GP, "peek", "Patient/1")
    with pytest.raises(ValueError, match="audit outcome '1'"):
        build_event(GP, "read", "Patient/1", outcome="1")
