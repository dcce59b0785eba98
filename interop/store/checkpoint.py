"""SQLite write-ahead-log checkpoints in a background thread, off the request path.

In WAL mode SQLite appends each commit's pages to ``<db>-wal``. By default the commit that
takes the log past 1,000 pages also copies the log back into the database file and syncs it
(the checkpoint), inside that request. At a million stored Observations one 100-entry
transaction Bundle dirties more than 1,000 pages, so nearly every such commit paid for a
checkpoint. Here the connections' automatic checkpoint is set high (a safety net only) and
:class:`WalCheckpointer` runs a PASSIVE checkpoint from its own connection every
``interval`` seconds while the log is being written. A PASSIVE checkpoint never waits for
readers or writers: it copies what it can, and the next writer starts the log over once all
of it has been copied. SQLite releases the GIL while it works, so the copy runs on another
core while requests go on.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sqlite3
import threading

log = logging.getLogger("interop.store.checkpoint")

AUTOCHECKPOINT_PAGES = 16384
"""The connections' own automatic checkpoint (64 MiB of log at 4 KiB pages): only reached
when the background thread cannot keep up or is not running."""
JOURNAL_SIZE_LIMIT = 64 * 1024 * 1024
"""A log file that grew past this is truncated back to it when the log starts over."""


class WalCheckpointer:
    def __init__(self, database: str, *, interval: float) -> None:
        self.database = database
        self.wal = database + "-wal"
        self.interval = interval
        self.checkpoints = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._run, name=f"wal-checkpoint:{os.path.basename(database)}", daemon=True
        )

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    def start(self) -> WalCheckpointer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(timeout=5)

    def _wal_mtime(self) -> int | None:
        try:
            return os.stat(self.wal).st_mtime_ns
        except FileNotFoundError:
            return None

    def checkpoint(self) -> tuple[int, int, int]:
        """One PASSIVE checkpoint: (1 if it could not start, frames in the log, frames copied)."""
        conn = sqlite3.connect(self.database, timeout=1, isolation_level=None)
        try:
            row = conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
        finally:
            conn.close()
        self.checkpoints += 1
        return int(row[0]), int(row[1]), int(row[2])

    def _run(self) -> None:
        done_at: int | None = None  # the log's mtime when a checkpoint last copied all of it
        while not self._stop.wait(self.interval):
            if not os.path.exists(self.database):
                return  # the database went away (a test's temporary folder)
            mtime = self._wal_mtime()
            if mtime is None or mtime == done_at:
                continue
            try:
                busy, frames, copied = self.checkpoint()
            except sqlite3.Error as exc:  # busy or locked: the next round tries again
                log.debug("checkpoint of %s deferred: %s", self.database, exc)
                continue
            done_at = mtime if not busy and copied == frames else None


_running: dict[str, WalCheckpointer] = {}
_lock = threading.Lock()


def ensure_checkpointer(database: str, interval: float) -> WalCheckpointer:
    """The one checkpointer of this database file in this process (started if need be)."""
    key = os.path.abspath(database)
    with _lock:
        running = _running.get(key)
        if running is None or not running.alive:
            running = _running[key] = WalCheckpointer(key, interval=interval).start()
        return running


def stop_all() -> None:
    with _lock:
        for c in _running.values():
            with contextlib.suppress(Exception):
                c.stop()
        _running.clear()
