"""The file-drop inbox: incoming messages and AppRecs in ``<folder>/in/`` of every active
file-drop Endpoint (the contract: outgoing files go to ``<folder>/out/``).

A file is moved to ``<folder>/in/processed/`` only after its transaction committed; if the
process dies in between, the next poll reads it again and the checklist ignores it as a
duplicate MsgId. Unreadable files go the same way (their AppRec, when one can be addressed,
is queued); a file that cannot be processed at all (database down) stays for the next poll.
"""

from __future__ import annotations

import contextlib
import logging
import os
from pathlib import Path
from typing import Any

from interop.messaging.addressbook import Destination, file_drop_folders
from interop.messaging.inbound import KithInbox, TrustedChannel
from interop.routing.transports import folder_of

log = logging.getLogger("interop.messaging")
MAX_FILE_BYTES = 50 * 1024 * 1024


def poll_file_drop(services: Any, *, limit: int = 500) -> dict[str, int]:
    """Read every waiting file once; returns counts by outcome."""
    inbox = KithInbox(services)
    with services.store.reader() as conn:
        folders = file_drop_folders(services.store, conn)
    counts: dict[str, int] = {}
    done = 0
    for endpoint, address in folders:
        folder = folder_of(address)
        incoming = folder / "in"
        if not incoming.is_dir():
            continue
        for path in sorted(
            p for p in incoming.iterdir() if p.is_file() and not p.name.startswith(".")
        ):
            if done >= limit:
                return counts
            done += 1
            outcome = _one(inbox, path, Destination(endpoint, "file-drop", address))
            counts[outcome] = counts.get(outcome, 0) + 1
    return counts


def _one(inbox: KithInbox, path: Path, source: Destination) -> str:
    try:
        size = path.stat().st_size
        data = path.read_bytes() if size <= MAX_FILE_BYTES else b""
    except OSError:
        return "vanished"  # taken by another worker
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
