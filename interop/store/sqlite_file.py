"""The SQLite database file a running service uses: noticed when it is removed or replaced.

SQLite keeps its file open. When the file is deleted, moved away or replaced by another one
(a backup copied into place with ``mv``, a cleanup script) while the service runs, the open
connections go on writing into the old file — every write answered 201 and lost at the next
start — while any connection opened afterwards finds the new file (an empty one: SQLite makes
it), so one request sees one database and the next another. Neither may be served.

Each transaction (and each fast-path read) first compares the path's file (device and inode)
with the one the engine opened first: a file gone or another file there makes the request a
503 (:class:`~interop.store.unavailable.StoreUnavailable`) before it takes the write lock, and
it stays so until the service is restarted with the file it should have. Cost: one
``stat`` per transaction (about a microsecond).
"""

from __future__ import annotations

import logging
import os
import threading

from interop.store.unavailable import StoreUnavailable

log = logging.getLogger(__name__)


class DatabaseFile:
    def __init__(self, path: str) -> None:
        self.path = path
        self.identity: tuple[int, int] | None = None
        """(device, inode) of the file the first connection opened."""
        self._told = False
        self._lock = threading.Lock()

    def _identity(self) -> tuple[int, int]:
        st = os.stat(self.path)
        return st.st_dev, st.st_ino

    def opened(self) -> None:
        """A connection was opened: the first one fixes which file is the database."""
        if self.identity is not None:
            return
        try:
            found = self._identity()
        except OSError:
            return
        with self._lock:
            if self.identity is None:
                self.identity = found

    def check(self) -> None:
        """Raise :class:`StoreUnavailable` when the path no longer holds the database file."""
        if self.identity is None:
            return
        try:
            found = self._identity()
        except FileNotFoundError:
            self._refuse("was removed")
        except OSError as exc:
            self._refuse(f"cannot be reached ({exc.strerror})")
        else:
            if found != self.identity:
                self._refuse("was replaced by another file")

    def _refuse(self, what: str) -> None:
        reason = (
            f"the database file {self.path} {what} while the service was running; nothing is "
            "read or written until the service is restarted with its database file in place"
        )
        if not self._told:  # once in the log, not once a request
            self._told = True
            log.error("%s", reason)
        raise StoreUnavailable(reason)
