"""Asking the GP to approve a proposed egenbehandlingsplan: a Dialogmelding 1.1 *forespørsel*
to the patient's GP (the address book's route), with the plan in readable Norwegian as the
question and as a PDF attachment (what the GP's EPJ files and prints), queued in the outbox in
the caller's transaction. The GP's *svar* comes back in the same conversation (``ConversationRef`` → this message)."""

from __future__ import annotations

import uuid
from typing import Any

from interop.care.gp_approval import gp_approval_rules
from interop.care.plan_text import plan_text
from interop.care.ports import CareServices as Services
from interop.fhir.outcome import error
from interop.messaging.addressbook import (
    AddressError,
    gp_of_patient,
    patient_info,
    sender_for_patient,
)
from interop.messaging.runtime import kith_for
from interop.routing.outbox import enqueue
from interop.store.repository import WriteTx
from interop.text import text as catalogue_text
from interop.text.pdf import text_document
from plo_messages import InvalidOutgoingMessage
from plo_messages.content import build_dialog_request
from plo_messages.model import Attachment, Coded, Header
from plo_messages.msghead import local_timestamp

PLAN_REQUEST_EVENT = "plan.proposed"
PLAN_REQUEST_KIND = "dialog-foresporsel"


def send_plan_request(services: Services, tx: WriteTx, pid: str, cp: dict[str, Any]) -> str:
    """Queue the forespørsel for plan ``cp``; returns the outbox row id (422 when the GP
    cannot be reached: no GP, no HER-id, no Endpoint — said, never dropped)."""
    from interop.care.plan_state import content_of

    kith = kith_for(services.settings)
    if kith is None:
        raise error(422, "business-rule", "KITH messages are not configured: cannot ask the GP")
    store = services.store
    patient_stored = tx.get("Patient", pid)
    assert patient_stored is not None
    patient = patient_stored.json()
    try:
        recipient = gp_of_patient(store, tx.conn, patient)
        sender, _org = sender_for_patient(store, tx.conn, patient)
    except AddressError as exc:
        raise error(422, "business-rule", f"the plan cannot be sent to the GP: {exc}") from None
    info = patient_info(patient)
    text = plan_text(content_of(cp), info.name or "pasienten")
    base = services.settings.base_url
    if base and info.national_id:  # where the GP can also read and approve it (HelseID)
        page = f"{base.rstrip('/')}/api/v1/patients/{info.national_id}/plan/{cp['id']}/approval"
        text += "\n\n" + catalogue_text("plan.link", url=page)
    rules = gp_approval_rules()["request"]
    msg_id = str(uuid.uuid4())
    header = Header(
        type=Coded("DIALOG_FORESPORSEL", "Forespørsel"),
        msg_id=msg_id,
        gen_date=local_timestamp(),
        sender=sender,
        receiver=recipient.organisation,
        patient=info,
    )
    t = rules["type"]
    body = build_dialog_request(
        Coded(str(t["V"]), t.get("DN"), t.get("S")), rules["subject"], text, f"CarePlan/{cp['id']}"
    )
    try:
        payload = kith.build(
            header,
            body,
            [
                Attachment(
                    "application/pdf",
                    text_document(text.splitlines()),
                    catalogue_text("plan.attachment"),
                )
            ],
        )
    except InvalidOutgoingMessage as exc:
        raise error(422, "business-rule", f"the request does not validate: {exc}") from None
    return enqueue(
        tx.conn,
        event=PLAN_REQUEST_EVENT,
        kind=PLAN_REQUEST_KIND,
        destination=recipient.destination.endpoint,
        transport=recipient.destination.transport,
        address=recipient.destination.address,
        content_type="application/xml",
        payload=payload,
        msg_id=msg_id,
        patient_id=pid,
        focus=f"CarePlan/{cp['id']}",
        expects_apprec=True,
        conversation_ref=msg_id,
    )
