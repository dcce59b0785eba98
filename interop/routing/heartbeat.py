"""Worker heartbeats, so ``/readyz`` can say whether anything is delivering the outbox.

Each ``interop worker`` writes ``worker:{host}:{pid}`` → now (µs) into the ``counter`` table
every few seconds; a worker not heard from for a minute counts as gone (and its row is
removed after a day).
"""

from __future__ import annotations

import os
import socket

from sqlalchemy import Engine, delete, select, update

from interop.fhir.dates import now_utc, to_micros
from interop.store.schema import counter_table

PREFIX = "worker:"
ALIVE_US = 60 * 1_000_000
FORGET_US = 24 * 3600 * 1_000_000


def worker_name() -> str:
    return f"{PREFIX}{socket.gethostname()[:40]}:{os.getpid()}"[:64]


def beat(engine: Engine, name: str | None = None) -> None:
    name = name or worker_name()
    now = to_micros(now_utc())
    with engine.begin() as conn:
        done = conn.execute(
            update(counter_table).where(counter_table.c.name == name).values(value=now)
        )
        if not done.rowcount:
            conn.execute(counter_table.insert().values(name=name, value=now))
        conn.execute(
            delete(counter_table).where(
                counter_table.c.name.startswith(PREFIX), counter_table.c.value < now - FORGET_US
            )
        )


def alive(engine: Engine) -> tuple[int, int | None]:
    """(workers heard from within a minute, µs of the latest heartbeat or None)."""
    now = to_micros(now_utc())
    with engine.connect() as conn:
        rows = conn.execute(
            select(counter_table.c.value).where(counter_table.c.name.startswith(PREFIX))
        ).all()
    beats = [int(r[0]) for r in rows]
    return sum(1 for b in beats if b >= now - ALIVE_US), max(beats) if beats else None
