"""The inbound-message repository: reading what the inbox holds, for the operator's view.

Writes stay with the inbox (:mod:`interop.ingest.inbox`); this module only reads rows, their
first bytes (enough for an HL7 v2 message's MSH segment) instead of the whole message.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from sqlalchemy import Connection, func, select

from interop.store.schema import inbound_message_table as inbox

HEAD_BYTES = 4096
"""How much of a stored message is read to name its sender (the MSH segment)."""


@dataclass(frozen=True, slots=True)
class InboundRow:
    id: str
    channel: str
    sender: str
    message_id: str
    received: int
    processed: int | None
    adapter: str
    status: str
    attempts: int
    report: bytes | None
    error: str | None
    head: bytes
    """The message's first :data:`HEAD_BYTES` bytes."""


def _columns() -> list[object]:
    return [
        inbox.c.id,
        inbox.c.channel,
        inbox.c.sender,
        inbox.c.message_id,
        inbox.c.received,
        inbox.c.processed,
        inbox.c.adapter,
        inbox.c.status,
        inbox.c.attempts,
        inbox.c.report,
        inbox.c.error,
        func.substr(inbox.c.raw, 1, HEAD_BYTES).label("head"),
    ]


def _row(r: object) -> InboundRow:
    return InboundRow(
        r.id,  # type: ignore[attr-defined]
        r.channel,  # type: ignore[attr-defined]
        r.sender,  # type: ignore[attr-defined]
        r.message_id,  # type: ignore[attr-defined]
        r.received,  # type: ignore[attr-defined]
        r.processed,  # type: ignore[attr-defined]
        r.adapter,  # type: ignore[attr-defined]
        r.status,  # type: ignore[attr-defined]
        r.attempts,  # type: ignore[attr-defined]
        r.report,  # type: ignore[attr-defined]
        r.error,  # type: ignore[attr-defined]
        bytes(r.head or b""),  # type: ignore[attr-defined]
    )


def newest_first(
    conn: Connection,
    *,
    statuses: tuple[str, ...] = (),
    channel: str | None = None,
    page: int = 200,
) -> Iterator[InboundRow]:
    """Stored messages, newest first, read a page at a time (the caller stops when it has
    enough)."""
    before: tuple[int, str] | None = None
    while True:
        q = select(*_columns())  # type: ignore[call-overload]
        if statuses:
            q = q.where(inbox.c.status.in_(statuses))
        if channel:
            q = q.where(inbox.c.channel == channel)
        if before is not None:
            q = q.where(
                (inbox.c.received < before[0])
                | ((inbox.c.received == before[0]) & (inbox.c.id < before[1]))
            )
        rows = [
            _row(r)
            for r in conn.execute(
                q.order_by(inbox.c.received.desc(), inbox.c.id.desc()).limit(page)
            )
        ]
        yield from rows
        if len(rows) < page:
            return
        before = (rows[-1].received, rows[-1].id)


def by_id(conn: Connection, message_id: str) -> InboundRow | None:
    r = conn.execute(select(*_columns()).where(inbox.c.id == message_id)).first()  # type: ignore[call-overload]
    return _row(r) if r is not None else None


def raw_of(conn: Connection, message_id: str) -> bytes | None:
    """The whole stored message."""
    raw = conn.execute(select(inbox.c.raw).where(inbox.c.id == message_id)).scalar()
    return bytes(raw) if raw is not None else None
