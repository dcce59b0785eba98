"""Cancelling a PLO message already sent (``Forsendelsesstatus`` C, *Kansellering*).

The cancellation is the same message with a new MsgId and GenDate, status C, and a
``ConversationRef`` pointing at the message it cancels; it is schema-validated like every
outgoing message and queued to the same destination, after the original (per-destination
order). Only PLO messages can be cancelled: their profile defines status C.
"""

from __future__ import annotations

import uuid
from typing import Any

from lxml import etree
from sqlalchemy import select

from interop.messaging.runtime import kith_for
from interop.routing.outbox import enqueue
from interop.store.context import WriteContext
from interop.store.schema import outbox_table
from plo_messages.msghead import MH, local_timestamp
from plo_messages.xmlsafe import parse_xml

CANCELLABLE = frozenset({"plo-helseopplysninger-lege"})


class CannotCancel(ValueError):
    pass


def cancel_message(services: Any, row_id: str) -> str:
    """Queue the cancellation of outbox message ``row_id``; returns the new row id."""
    kith = kith_for(services.settings)
    if kith is None:
        raise CannotCancel("INTEROP_KITH_SCHEMA_DIR is not set")
    with services.store.write(WriteContext.service()) as tx:
        row = tx.conn.execute(select(outbox_table).where(outbox_table.c.id == row_id)).first()
        if row is None:
            raise KeyError(row_id)
        if row.kind not in CANCELLABLE:
            raise CannotCancel(f"a {row.kind} message cannot be cancelled (only PLO messages)")
        root = parse_xml(bytes(row.payload))
        status = root.find(".//{*}InformasjonOmForsendelsen/{*}Forsendelsesstatus")
        if status is None:
            raise CannotCancel("the message has no Forsendelsesstatus")
        if status.get("V") == "C":
            raise CannotCancel("the message is itself a cancellation")
        status.set("V", "C")
        status.set("DN", "Kansellering")
        info = root.find(f"{{{MH}}}MsgInfo")
        assert info is not None
        msg_id = str(uuid.uuid4())
        info.find(f"{{{MH}}}MsgId").text = msg_id  # type: ignore[union-attr]
        info.find(f"{{{MH}}}GenDate").text = local_timestamp()  # type: ignore[union-attr]
        for old in info.findall(f"{{{MH}}}ConversationRef"):
            info.remove(old)
        ref = etree.Element(f"{{{MH}}}ConversationRef")
        etree.SubElement(ref, f"{{{MH}}}RefToParent").text = row.msg_id
        etree.SubElement(ref, f"{{{MH}}}RefToConversation").text = (
            row.conversation_ref or row.msg_id
        )
        sender = info.find(f"{{{MH}}}Sender")
        assert sender is not None
        sender.addprevious(ref)
        payload = kith.validated(root)
        return enqueue(
            tx.conn,
            event="cancel",
            kind=row.kind,
            destination=row.destination,
            transport=row.transport,
            address=row.address,
            content_type=row.content_type,
            payload=payload,
            msg_id=msg_id,
            patient_id=row.patient_id,
            focus=row.focus,
            expects_apprec=row.expects_apprec,
            conversation_ref=row.conversation_ref or row.msg_id,
            reprocess_of=row.id,
        )
