"""SQLite WAL checkpoints off the request path.

In WAL mode SQLite copies the log back into the database file (a *checkpoint*) once the log
holds ``wal_autocheckpoint`` pages, and it does so inside the COMMIT of whichever transaction
crossed the line: that request waits for up to a thousand page writes and a flush of the
database file. Measured on the audit group commit (the cost every audited read waits for),
a batch of 16 events took 4.8 ms with the automatic checkpoint and 2.6 ms without it.

A service process therefore moves the checkpoint to a thread of its own: every
``INTEROP_SQLITE_CHECKPOINT_SECONDS`` it runs a ``PASSIVE`` checkpoint (which never blocks a
reader or a writer) on a connection from the engine's pool. The automatic checkpoint stays as
a backstop at a much larger log (:data:`BACKSTOP_PAGES`), so the log stays bounded even if the
thread stopped. Durability is unchanged: a transaction is durable once its COMMIT has
written (and, with ``synchronous=FULL``, flushed) the log; the checkpoint only moves pages
that are already safe.
"""

from __future__ import annotations

import logging
import threading
import weakref
from collections.abc import Callable
from typing import Any

from sqlalchemy import Engine

from interop.store.unavailable import StoreUnavailable

log = logging.getLogger(__name__)

_stops: weakref.WeakKeyDictionary[Engine, threading.Event] = weakref.WeakKeyDictionary()

BACKSTOP_PAGES = 20_000
"""``wal_autocheckpoint`` while the thread runs (about 80 MB of log with 4 KiB pages)."""


def autocheckpoint_pages(every_seconds: float) -> int:
    """The ``wal_autocheckpoint`` a connection gets: SQLite's default (1,000 pages) when no
    thread checkpoints, the backstop when one does."""
    return BACKSTOP_PAGES if every_seconds > 0 else 1000


def start(engine: Engine, every_seconds: float, usable: Callable[[], None] | None = None) -> None:
    """Checkpoint ``engine``'s database every ``every_seconds`` until the engine is gone or
    disposed of (0: leave it to SQLite's automatic checkpoint). ``usable`` raises
    :class:`StoreUnavailable` when the database file was removed or replaced: no checkpoint
    then (it would copy the old file's log into whatever file is there now)."""
    if every_seconds <= 0:
        return
    done = threading.Event()
    ref = weakref.ref(engine)
    weakref.finalize(engine, done.set)
    _stops[engine] = done
    threading.Thread(
        target=_run,
        args=(ref, done, every_seconds, usable),
        name="sqlite-wal-checkpoint",
        daemon=True,
    ).start()


def stop(engine: Engine) -> None:
    """End ``engine``'s checkpoint thread (when it is disposed of)."""
    event = _stops.pop(engine, None)
    if event is not None:
        event.set()


def _run(
    ref: weakref.ref[Engine],
    stop_event: threading.Event,
    every: float,
    usable: Callable[[], None] | None,
) -> None:
    while not stop_event.wait(every):
        engine = ref()
        if engine is None:
            return
        try:
            if usable is not None:
                usable()
            checkpoint(engine)
        except StoreUnavailable:
            pass  # logged once where it was found (interop.store.sqlite_file)
        except Exception as exc:  # noqa: BLE001 - a failed checkpoint is retried next round
            log.warning("SQLite WAL checkpoint failed: %s", exc)
        del engine


def checkpoint(engine: Engine) -> tuple[int, int, int]:
    """One ``PASSIVE`` checkpoint: (busy, pages in the log, pages checkpointed)."""
    raw: Any = engine.raw_connection()
    try:
        row = raw.driver_connection.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
    finally:
        raw.close()
    return (int(row[0]), int(row[1]), int(row[2])) if row else (0, 0, 0)
