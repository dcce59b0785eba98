"""Exporting the audit chain's head, so that removing the newest events can be detected.

The head (sequence number, link, key id, time) is appended as one JSON line to
``INTEROP_AUDIT_HEAD_FILE`` (a file the operator keeps on other storage than the database,
ideally append-only or shipped off the machine) and written as a log line. Whoever removes
events after an export cannot remove the exported line too; ``interop audit verify --heads``
checks every head against the chain.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
from sqlalchemy import Engine

from interop.access.audit.chain import Head, chain_head
from interop.fhir.dates import format_instant, now_utc

log = logging.getLogger("interop.audit")


class HeadsFileError(Exception):
    """The heads file cannot be read (the message names the line)."""


def export_head(engine: Engine, head_file: Path | None) -> dict[str, Any] | None:
    """Append the chain's head to ``head_file`` (when given) and log it; the head, or None
    for an empty chain."""
    with engine.connect() as conn:
        head = chain_head(conn)
    if head is None:
        log.info("audit head: the audit chain is empty")
        return None
    seq, link, kid = head
    line = {"seq": seq, "link": link, "keyId": kid, "time": format_instant(now_utc())}
    data = orjson.dumps(line)
    if head_file is not None:
        head_file.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(head_file, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
        try:
            os.write(fd, data + b"\n")
            os.fsync(fd)
        finally:
            os.close(fd)
    log.info("audit head %s", data.decode())
    return line


def read_heads(path: Path) -> Iterator[Head]:
    """The heads in a heads file (one JSON object a line; blank lines skipped)."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise HeadsFileError(f"heads file {path}: {exc.strerror or exc}") from None
    for n, raw in enumerate(text.splitlines(), 1):
        if not raw.strip():
            continue
        where = f"{path.name} line {n}"
        try:
            obj = orjson.loads(raw)
            seq, link, time = obj["seq"], obj["link"], obj.get("time", "?")
        except (orjson.JSONDecodeError, KeyError, TypeError):
            raise HeadsFileError(f"{where}: not a head (a JSON object with seq and link)") from None
        if not isinstance(seq, int) or seq < 1 or not isinstance(link, str):
            raise HeadsFileError(f"{where}: seq must be a positive number and link a string")
        yield Head(seq, link, str(time), where)
