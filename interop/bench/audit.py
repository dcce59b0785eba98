"""``python -m interop.bench.audit``: appending audit events, a transaction per event (how
reads were audited before) against group commit (:class:`interop.access.audit.AuditLog`).

N read events come from T concurrent tasks; each task waits until its event is committed
before it sends the next, as a request does. The database is a new one (a temporary SQLite
file, or ``--database-url``; its audit tables are emptied first).
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from pathlib import Path

from sqlalchemy import text

from interop.access.actor import Actor
from interop.access.audit import AuditLog, build_event, verify
from interop.access.audit.keys import Keyring
from interop.store.db import create_db_engine
from interop.store.migrate import upgrade
from interop.store.repository import FhirStore

GP = Actor(id="bench-gp", role="gp", hpr="9144889", name="Bench GP", orgnr="974703300")


async def _run(events: int, tasks: int, one: object) -> float:
    per_task = events // tasks

    async def worker(t: int) -> None:
        for i in range(per_task):
            event = build_event(GP, "read", f"Observation/b{t}-{i}", [f"p{(t * 31 + i) % 500}"])
            await one(event)  # type: ignore[operator]

    start = time.perf_counter()
    await asyncio.gather(*(worker(t) for t in range(tasks)))
    return time.perf_counter() - start


def _clear(store: FhirStore) -> None:
    with store.engine.begin() as conn:
        conn.execute(text("DELETE FROM audit_patient"))
        conn.execute(text("DELETE FROM audit_chain"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--database-url", help="default: a temporary SQLite database")
    parser.add_argument("--events", type=int, default=10_000)
    parser.add_argument("--tasks", type=int, default=50)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        url = args.database_url or f"sqlite:///{Path(tmp) / 'audit-bench.db'}"
        engine = create_db_engine(url)
        upgrade(engine)
        store = FhirStore(engine)
        log = AuditLog(store, Keyring.of(bytes(range(32))))
        n = args.events - args.events % args.tasks

        async def own_transaction(event: dict[str, object]) -> None:
            await asyncio.to_thread(log.record_now, event)

        print(f"{engine.dialect.name}: {n} read events from {args.tasks} concurrent tasks")
        for name, one in (("transaction per event", own_transaction), ("group commit", log.record)):
            _clear(store)
            log.commits = 0
            seconds = asyncio.run(_run(n, args.tasks, one))
            with engine.connect() as conn:
                check = verify(conn, log.keyring)
            assert check.ok and check.links == n, check.message
            print(
                f"  {name:22} {seconds:6.2f} s  {n / seconds:8.0f} events/s  "
                f"{log.commits:6d} transactions"
            )
        _clear(store)
        engine.dispose()


if __name__ == "__main__":
    main()
