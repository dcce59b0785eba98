"""The file-drop inbox: incoming messages and AppRecs in ``<folder>/in/`` of every active
file-drop Endpoint (the contract: outgoing files go to ``<folder>/out/``).

A file still being written is never read half-way: one named ``.*``, ``*.tmp`` or ``*.part``
(a sender writing under a temporary name and renaming into place) is left alone, and any other
file is read only once it has not changed for ``file_drop_settle_seconds`` — and only if its
size and modification time are the same after reading as before (otherwise it is left for the
next poll).

A file is moved to ``<folder>/in/processed/`` only after its transaction committed; if the
process dies in between, the next poll reads it again and the checklist ignores it as a
duplicate MsgId. Unreadable files go the same way (their AppRec, when one can be addressed,
is queued); a file that cannot be processed at all (database down) stays for the next poll.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from pathlib import Path
from typing import Any

from interop.messaging.addressbook import Destination, file_drop_folders
from interop.messaging.inbound import KithInbox, TrustedChannel
from interop.routing.transports import folder_of

log = logging.getLogger("interop.messaging")
MAX_FILE_BYTES = 50 * 1024 * 1024
TEMPORARY_SUFFIXES = (".tmp", ".part", ".partial")


def _in_place(path: Path) -> bool:
    """Not a temporary name a sender writes under before renaming into place."""
    return not path.name.startswith(".") and not path.name.lower().endswith(TEMPORARY_SUFFIXES)


def poll_file_drop(services: Any, *, limit: int = 500) -> dict[str, int]:
    """Read every waiting file once; returns counts by outcome."""
    inbox = KithInbox(services)
    settle = float(getattr(services.settings, "file_drop_settle_seconds", 2.0))
    with services.store.reader() as conn:
        folders = file_drop_folders(services.store, conn)
    counts: dict[str, int] = {}
    done = 0
    for endpoint, address in folders:
        folder = folder_of(address)
        incoming = folder / "in"
        if not incoming.is_dir():
            continue
        for path in sorted(p for p in incoming.iterdir() if p.is_file() and _in_place(p)):
            if done >= limit:
                return counts
            done += 1
            outcome = _one(inbox, path, Destination(endpoint, "file-drop", address), settle)
            counts[outcome] = counts.get(outcome, 0) + 1
    return counts


def _one(inbox: KithInbox, path: Path, source: Destination, settle: float = 0.0) -> str:
    try:
        before = path.stat()
        if time.time() - before.st_mtime < settle:
            return "settling"  # may still be written: the next poll looks again
        size = before.st_size
        data = path.read_bytes() if size <= MAX_FILE_BYTES else b""
        after = path.stat()
    except OSError:
        return "vanished"  # taken by another worker
    if (after.st_size, after.st_mtime_ns) != (before.st_size, before.st_mtime_ns) or (
        size <= MAX_FILE_BYTES and len(data) != size
    ):
        return "settling"  # changed while being read: written to still
    if size > MAX_FILE_BYTES:
        log.error(
            "%s is %d bytes; larger than %d — left for an operator", path, size, MAX_FILE_BYTES
        )
        return "too-large"
    try:
        result = inbox.receive(
            data,
            channel=TrustedChannel("file-drop"),  # the folder is the sender's Endpoint
            source=source,
        )
    except Exception:  # noqa: BLE001 - leave the file; try again next poll
        log.exception("could not process %s", path)
        return "error"
    done = path.parent / "processed"
    done.mkdir(exist_ok=True)
    with contextlib.suppress(FileNotFoundError):
        os.replace(path, done / path.name)
    return result.outcome
