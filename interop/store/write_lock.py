"""The in-process SQLite write lock, with background writers kept to a share of it.

SQLite has one writer at a time. Writers in this process queue on :class:`WriteLock` before
``BEGIN IMMEDIATE`` (see :func:`interop.store.db.create_db_engine`): SQLite's own busy handler
sleeps and retries, which turns a short wait into a long tail, while a lock hands over as soon
as the writer commits.

A plain lock is first come, first served, which is wrong when one writer is a background job
with long transactions (the inbox processor turning stored HL7 messages into Observations,
10-30 ms each) and the other is a latency-bound foreground write (an MLLP listener storing a
message before it may acknowledge it, well under a millisecond). With one sending connection
the next message arrives a fraction of a millisecond after the previous ACK; the background
writer, already waiting, takes the lock in that gap every time, and nearly every message waits
for a whole background transaction.

Writes made inside :func:`background_writes` are therefore *background* writes. After holding
the lock for ``h`` seconds a background writer pauses for ``h * ratio`` seconds, but only
while foreground writers are active (one is waiting, or one released the lock less than
``quiet`` seconds ago):

* during the pause every foreground writer goes before it;
* once the pause is over it is next, before foreground writers that are waiting, so a stream
  of foreground writes cannot hold it off for longer;
* when foreground writers are idle it does not pause at all.

With the default ratio of 1 background work still gets up to half of the lock under sustained
foreground load: it is slowed down, never starved. The pause is as long as the hold, so a
foreground writer meets a long background transaction at most every other such length of
time.

The lock is held *by* something (an owner token): only its holder releases it, and a release
by anyone else (or a second one) is logged and does nothing — it never takes the lock from
the writer holding it, and never turns the failure the caller is handling into another one.
A writer waits at most ``wait`` seconds (the same as SQLite's own busy wait): a lock that
somehow stays held makes writers fail with a 503 after that, not hang.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections import deque
from collections.abc import Iterator
from contextvars import ContextVar

from interop.store.unavailable import StoreUnavailable

log = logging.getLogger(__name__)

WAIT_SECONDS = 30.0
"""How long a writer waits for the lock (SQLite's ``busy_timeout`` is as long)."""

_NO_OWNER = object()
"""The holder of a lock taken with no owner."""

_background: ContextVar[bool] = ContextVar("interop_background_writes", default=False)


@contextlib.contextmanager
def background_writes() -> Iterator[None]:
    """Mark the write transactions begun inside as background work (see the module doc)."""
    token = _background.set(True)
    try:
        yield
    finally:
        _background.reset(token)


def in_background() -> bool:
    return _background.get()


class WriteLock:
    def __init__(
        self, *, ratio: float = 1.0, quiet: float = 0.005, wait: float = WAIT_SECONDS
    ) -> None:
        self.ratio = ratio
        self.quiet = quiet
        self.wait = wait
        self._cond = threading.Condition(threading.Lock())
        self._held = False
        self._owner: object | None = None
        self._held_background = False
        self._acquired_at = 0.0
        self._fg_waiting = 0
        self._fg_queue: deque[object] = deque()
        """foreground writers waiting, in arrival order"""
        self._bg_waiting = 0
        self._fg_active_until = 0.0
        """monotonic time until which foreground writers count as active"""
        self._bg_not_before = 0.0
        """while foreground writers are active, background writers wait until then"""

    # ---- predicates (called with self._cond held) ---------------------------------------
    def _bg_due(self, now: float) -> bool:
        return now >= self._bg_not_before or (
            self._fg_waiting == 0 and now >= self._fg_active_until
        )

    def _can_take(self, background: bool, now: float, ticket: object) -> bool:
        if self._held:
            return False
        if background:
            return self._bg_due(now)
        # a background writer whose pause is over goes before foreground writers
        if self._bg_waiting and now >= self._bg_not_before:
            return False
        # foreground writers take turns in arrival order: a writer that releases and at once
        # asks again queues behind the ones already waiting instead of barging past them
        return self._fg_queue[0] is ticket

    def _timeout(self, now: float, deadline: float) -> float:
        """How long a waiter may sleep before the predicates can change without a notify
        (at most until its deadline)."""
        if self._held:
            return deadline - now
        moments = [t for t in (self._bg_not_before, self._fg_active_until, deadline) if t > now]
        return min(moments) - now if moments else 0.0

    # ---- the lock ---------------------------------------------------------------------
    def acquire(self, background: bool = False, owner: object | None = None) -> None:
        """Take the lock for ``owner`` (None: a writer that releases it with no owner).
        :class:`StoreUnavailable` after waiting ``wait`` seconds."""
        ticket = object()
        holder = _NO_OWNER if owner is None else owner
        deadline = time.monotonic() + self.wait
        with self._cond:
            if background:
                self._bg_waiting += 1
            else:
                self._fg_waiting += 1
                self._fg_queue.append(ticket)
            try:
                while True:
                    now = time.monotonic()
                    if self._can_take(background, now, ticket):
                        break
                    if now >= deadline:
                        raise StoreUnavailable(
                            f"the database stayed busy for {self.wait:g} s (another write "
                            "held it); nothing was written"
                        )
                    self._cond.wait(self._timeout(now, deadline))
            except BaseException:
                # a waiter that gives up may have been the one the others stood back for
                self._cond.notify_all()
                raise
            finally:
                if background:
                    self._bg_waiting -= 1
                else:
                    self._fg_waiting -= 1
                    self._fg_queue.remove(ticket)
            self._held = True
            self._owner = holder
            self._held_background = background
            self._acquired_at = now

    def release(self, owner: object | None = None) -> bool:
        """Release the lock ``owner`` holds; False (logged, nothing changed) when it holds
        none — the lock is then either free or another writer's, and stays so."""
        holder = _NO_OWNER if owner is None else owner
        with self._cond:
            if not self._held or self._owner is not holder:
                log.error(
                    "write lock released by a writer not holding it (%s); left as it was",
                    "held by another" if self._held else "not held",
                )
                return False
            now = time.monotonic()
            if self._held_background:
                self._bg_not_before = now + (now - self._acquired_at) * self.ratio
            else:
                self._fg_active_until = now + self.quiet
            self._held = False
            self._owner = None
            self._held_background = False
            self._cond.notify_all()
            return True

    def locked(self) -> bool:
        return self._held
