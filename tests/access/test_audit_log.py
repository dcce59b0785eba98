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


def test_a_large_batch_of_events_naming_many_patients_is_stored_whole(services) -> None:  # type: ignore[no-untyped-def]
    """A batch is written as multi-row INSERTs of at most ``MAX_PARAMETERS`` values each: a
    batch of 500 (many statements per table) keeps every event, in chain order, and each
    event's patients exactly — none dropped, none put on a neighbouring event."""
    from interop.store.audit_rows import MAX_PARAMETERS, PATIENT_COLUMNS

    log = AuditLog(services.store, max_batch=500)
    named = {f"Observation/m{i}": [f"p{i}-{k}" for k in range(i % 4)] for i in range(500)}
    assert sum(map(len, named.values())) * len(PATIENT_COLUMNS) > 2 * MAX_PARAMETERS
    events = [build_event(GP, "search", what, pats) for what, pats in named.items()]
    log.record_now(*events)
    assert log.commits == 1
    with services.store.reader() as conn:
        stored = {
            r.what: r.seq
            for r in conn.execute(text("SELECT what, seq FROM audit_chain ORDER BY seq"))
        }
        rows = conn.execute(text("SELECT patient_id, seq FROM audit_patient")).all()
        result = verify(conn)
    assert list(stored) == list(named)  # every event, in the order given
    by_seq: dict[int, set[str]] = {}
    for patient, seq in rows:
        by_seq.setdefault(seq, set()).add(patient)
    assert {what: by_seq.get(seq, set()) for what, seq in stored.items()} == {
        what: set(pats) for what, pats in named.items()
    }
    assert result.ok and result.links == 500, result.problems


_CRASHING_SERVICE = """
import asyncio, sys
from interop.access.actor import Actor
from interop.access.audit import AuditLog, build_event
from interop.access.audit.keys import Keyring
from interop.store.db import create_db_engine
from interop.store.migrate import upgrade
from interop.store.repository import FhirStore

engine = create_db_engine(sys.argv[1])
upgrade(engine)
log = AuditLog(FhirStore(engine), Keyring.of(bytes(range(32))), max_batch=16)
gp = Actor(id="gp-1", role="gp", hpr="9144889", name="Kari Lege")

async def reader(t):
    i = 0
    while True:
        what = f"Observation/t{t}-{i}"
        await log.record(build_event(gp, "read", what, [f"p{t}"]))
        print("acknowledged", what, flush=True)  # as a response would be sent now
        i += 1

async def main():
    await asyncio.gather(*(reader(t) for t in range(12)))

asyncio.run(main())
"""


def test_no_acknowledged_event_is_lost_when_the_process_is_killed(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """A request is answered only after its event is committed: kill the process (SIGKILL,
    no clean-up) while twelve readers are being audited by group commit, and every event it
    had acknowledged is in the log, which still verifies."""
    import signal
    import subprocess
    import sys

    from interop.access.audit.keys import Keyring
    from interop.store.db import create_db_engine

    url = f"sqlite:///{tmp_path / 'crash.db'}"
    proc = subprocess.Popen(
        [sys.executable, "-c", _CRASHING_SERVICE, url], stdout=subprocess.PIPE, text=True
    )
    acknowledged: list[str] = []
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            acknowledged.append(line.split()[1])
            if len(acknowledged) == 600:
                proc.send_signal(signal.SIGKILL)
                break
    finally:
        proc.kill()
        proc.wait(timeout=30)
    assert len(acknowledged) == 600
    engine = create_db_engine(url)
    try:
        with engine.connect() as conn:
            stored = {r[0] for r in conn.execute(text("SELECT what FROM audit_chain"))}
            patients = dict(
                conn.execute(
                    text(
                        "SELECT c.what, p.patient_id FROM audit_chain c "
                        "JOIN audit_patient p ON p.seq = c.seq"
                    )
                ).all()
            )
            result = verify(conn, Keyring.of(bytes(range(32))))
    finally:
        engine.dispose()
    assert not set(acknowledged) - stored
    assert all(patients[w] == "p" + w.split("/t")[1].split("-")[0] for w in acknowledged)
    assert result.ok and result.links == len(stored), result.problems


def test_two_processes_appending_at_once_keep_one_chain(services, settings) -> None:  # type: ignore[no-untyped-def]
    """Two API processes (two engines, each its own pool and writer) append at the same
    time: each batch reads the head after taking the append lock (on PostgreSQL the lock and
    the read share a round trip), so the links form one chain without a fork or a gap."""
    import threading

    from interop.store.db import create_db_engine
    from interop.store.repository import FhirStore

    other = create_db_engine(settings.database_url)
    logs = [AuditLog(services.store), AuditLog(FhirStore(other, zone=services.store.zone))]

    def append(n: int) -> None:
        for i in range(40):
            events = [
                build_event(GP, "read", f"Observation/{n}-{i}-{k}", [f"p{k}"]) for k in range(3)
            ]
            logs[n % 2].record_now(*events)

    try:
        threads = [threading.Thread(target=append, args=(n,)) for n in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        other.dispose()
    with services.store.reader() as conn:
        result = verify(conn)
        seqs = [r[0] for r in conn.execute(text("SELECT seq FROM audit_chain ORDER BY seq"))]
        patients = conn.execute(text("SELECT count(*) FROM audit_patient")).scalar()
    assert result.ok and result.links == 480, result.problems
    assert seqs == list(range(1, 481)) and patients == 480
