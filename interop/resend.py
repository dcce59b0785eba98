"""A re-sent message, or another message reusing its id?

A message is named by its sender and its own id (for HL7 v2: the full MSH-3 and MSH-4, every
component, and MSH-10). A message arriving under a name seen before is a **re-send** when it
says the same (its digest is equal: :func:`adapters.hl7v2.message_digest` leaves out only
what a sender may change when it sends again), and is answered as the first one was. One that
says something else is **another message reusing the id**: it is never taken for a re-send
(its measurements would be lost behind an acknowledgement), never processed either (which of
the two is right is for a person to decide), but refused (HL7 ``AE`` with an ERR segment,
``message-id-conflict`` in an ingest report) and kept in the inbound message store with status
``conflict``, where operators list it (``GET /api/v1/messages?direction=in&status=conflict``).
"""

from __future__ import annotations

import hashlib
from typing import Any

from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from adapters.hl7v2 import message_digest
from interop.fhir.dates import now_utc, to_micros
from interop.store.repository import new_id
from interop.store.schema import inbound_message_table as inbox

CONFLICT_STATUS = "conflict"
"""Inbound-message status of a message that reused another's id (never processed)."""
DIAG_MESSAGE_ID_CONFLICT = "message-id-conflict"
HL7_DUPLICATE_KEY = "205"
"""HL7 table 0357: duplicate key identifier (the ERR code of the ``AE``)."""


def digest_of(adapter: str, raw: bytes) -> str:
    """What a message says, as compared for a re-send (per adapter; others byte for byte)."""
    if adapter == "hl7v2":
        return message_digest(raw)
    return hashlib.sha256(raw).hexdigest()


def conflict_message(message_id: str, sender: str) -> str:
    return (
        f"message {message_id} from {sender} was received before with different content: "
        "this one is not processed and is kept for an operator (send corrections with a new "
        "message id)"
    )


def conflict_key(message_id: str, digest: str) -> str:
    """The inbound-store message id of a conflicting message: its own id and its digest, so
    that a re-send of *it* is recognised too."""
    key = f"{message_id}#conflict-{digest[:16]}"
    if len(key) <= 255:
        return key
    return f"sha256:{hashlib.sha256(message_id.encode()).hexdigest()}#conflict-{digest[:16]}"


def keep_conflict(
    conn: Any,
    *,
    channel: str,
    sender: str,
    message_id: str,
    adapter: str,
    raw: bytes,
    ack: bytes | None = None,
    report: bytes | None = None,
) -> str | None:
    """Store a conflicting message for an operator (status ``conflict``); the row's id, or
    ``None`` when this very message was kept before."""
    digest = digest_of(adapter, raw)
    row_id = new_id()
    values = {
        "id": row_id,
        "channel": channel,
        "sender": sender[:255],
        "message_id": conflict_key(message_id, digest),
        "received": to_micros(now_utc()),
        "adapter": adapter,
        "raw": raw,
        "status": CONFLICT_STATUS,
        "attempts": 0,
        "ack": ack,
        "report": report,
        "error": conflict_message(message_id, sender)[:2000],
    }
    insert = pg_insert if conn.dialect.name == "postgresql" else sqlite_insert
    stmt = (
        insert(inbox)
        .values(**values)
        .on_conflict_do_nothing(
            index_elements=[inbox.c.channel, inbox.c.sender, inbox.c.message_id]
        )
        .returning(inbox.c.id)
    )
    return conn.execute(stmt).scalar()
