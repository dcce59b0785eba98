"""Incoming KITH messages: the receive checklist, then persist, act and acknowledge — in one
transaction, so a message is either fully taken (stored, acted on, its AppRec queued) or not
at all and will be read again.

* An AppRec closes the outbox message it answers (``apprec-ok`` / ``apprec-rejected`` with the
  errors). A second AppRec for a message already answered is not processed: the first stands
  (it is kept, marked ``duplicate-apprec``, for an operator to see).
* A cancellation (PLO ``Forsendelsesstatus`` C) cancels the message it refers to
  (``RefToParent``, a message we received from the same sender): that message's record and the
  Communication made from it are marked cancelled; nothing new is made from the cancellation.
* A GP's answer (Dialogmelding, PLO *Medisinske opplysninger*) becomes a FHIR Communication,
  linked through ``ConversationRef`` to the message we sent and the Task that caused it
  (``Communication.basedOn``); the Task gets a note.
* Every message gets one AppRec per own receiver (OK, or *Avvist* with the checklist's error),
  except duplicates (ignored) and AppRecs (never answered).

Each caller says which channel a message came through and so how far its sender is trusted
(:data:`InboundChannel`): the file-drop folders and the EDI 2.0 Meldingstjener vouch for the
sender themselves (:class:`TrustedChannel`); a message an authenticated caller posts over HTTP
(:class:`CallerChannel`) is taken only when its sender is the caller's own organisation
(:mod:`interop.messaging.senders`), otherwise :class:`SenderNotCaller` is raised before
anything is stored or answered.
"""

from __future__ import annotations

import hashlib
import logging
import uuid
from dataclasses import dataclass, field
from typing import Any, Literal

import orjson
from sqlalchemy import Connection, select, update
from sqlalchemy.exc import IntegrityError

from interop.access.actor import Actor
from interop.care.plan_lifecycle import answer_from_gp
from interop.care.plan_request import PLAN_REQUEST_EVENT
from interop.fhir.dates import format_instant, now_utc, to_micros
from interop.identifiers import HERID_OID, person_id_system
from interop.messaging.addressbook import Destination, destination_for_her_ids, own_her_ids
from interop.messaging.runtime import kith_for
from interop.messaging.senders import refusal
from interop.metrics import correlation_id
from interop.patients import patient_by_identifier
from interop.routing.outbox import enqueue, mark_dead
from interop.store.context import Door, WriteContext
from interop.store.repository import WriteTx, new_id
from interop.store.schema import inbound_message_table as inbox
from interop.store.schema import outbox_table
from plo_messages import KithMessages, SchemaConfigError
from plo_messages.apprec import AppRec
from plo_messages.content import DialogNote, MedisinskeOpplysninger
from plo_messages.model import Coded, Header, PatientInfo
from plo_messages.msghead import local_timestamp
from plo_messages.receive import Received

log = logging.getLogger("interop.messaging")
MSGID_SYSTEM = "urn:dho-interop:kith-msgid"
KITH_ADAPTER = "kith"


@dataclass(frozen=True, slots=True)
class TrustedChannel:
    """A channel that vouches for the sender itself: a file-drop folder (the folder belongs to
    the sender's Endpoint) or the EDI 2.0 Meldingstjener (NHN authenticated the sender). The
    sender is not checked against a caller."""

    name: Literal["file-drop", "edi2"]


@dataclass(frozen=True, slots=True)
class CallerChannel:
    """A message an authenticated caller delivered (HTTP): taken only when its sender is the
    caller's own organisation (an admin may deliver any)."""

    caller: Actor
    name: Literal["http"] = "http"


InboundChannel = TrustedChannel | CallerChannel
"""Where a message came from, and so how far its sender is trusted; every caller names one."""


class SenderNotCaller(Exception):
    """The message's sender is not the caller's organisation: nothing was stored or answered."""


@dataclass(slots=True)
class InboundResult:
    outcome: str
    """accepted, rejected, duplicate, apprec, unreadable"""
    inbound_id: str | None = None
    errors: list[str] = field(default_factory=list)
    """The AppRec error codes (T01, T02, E35, …)."""
    reasons: list[str] = field(default_factory=list)
    """What each error is about, as the AppRec says it (the element the schema missed), in
    the order of ``errors``."""
    apprecs: list[str] = field(default_factory=list)
    """Outbox rows of the AppRecs we send back."""
    communication: str | None = None
    closed: str | None = None
    """For an AppRec: the MsgId of the outbox message it closed."""


def _patient_id(conn: Connection, patient: PatientInfo | None) -> str | None:
    if patient is None or not patient.national_id:
        return None
    system = person_id_system(patient.national_id)
    return patient_by_identifier(conn, system, patient.national_id) if system else None


def _text_of(received: Received) -> str:
    content = received.content
    if isinstance(content, MedisinskeOpplysninger):
        parts = [n.text for n in content.notes]
        if content.medications:
            parts.append("Legemidler: " + "; ".join(content.medications))
        return "\n\n".join(parts)
    if isinstance(content, list):
        notes: list[DialogNote] = content
        out = []
        for n in notes:
            if n.theme:
                out.append(n.theme)
            if n.text:
                out.append(n.text)
            if n.question and n.question != n.text:
                out.append(f"Spørsmål: {n.question}")
        return "\n\n".join(out)
    return ""


def _answer_text(received: Received) -> str:
    """The answer itself, without the question a svar copies back."""
    content = received.content
    if isinstance(content, list):
        return "\n\n".join(n.text for n in content if n.text and n.text != n.question)
    return _text_of(received)


class KithInbox:
    def __init__(self, services: Any) -> None:
        self.services = services
        self.store = services.store
        self.settings = services.settings

    def kith(self) -> KithMessages:
        kith = kith_for(self.settings)
        if kith is None:
            raise SchemaConfigError(
                "INTEROP_KITH_SCHEMA_DIR is not set: cannot receive KITH messages"
            )
        return kith

    def receive(
        self,
        data: bytes,
        *,
        channel: InboundChannel,
        source: Destination | None = None,
        edi2_message: str | None = None,
    ) -> InboundResult:
        """``edi2_message``: the Meldingstjener URL of the message (``{base}/Messages/{id}``)
        when it came through EDI 2.0; its AppRec is then posted there. Raises
        :class:`SenderNotCaller` (nothing stored, nothing answered) for a caller's message
        from another sender."""
        if not isinstance(channel, TrustedChannel | CallerChannel):
            # never a default: a caller that does not say how far the sender is trusted is a bug
            raise TypeError(f"channel must be a TrustedChannel or CallerChannel, not {channel!r}")
        kith = self.kith()
        token = None
        if correlation_id.get() is None:
            token = correlation_id.set(f"{channel.name}:{hashlib.sha256(data).hexdigest()[:16]}")
        try:
            with self.store.write(WriteContext(None, Door.MESSAGE)) as tx:
                return self._receive(tx, kith, data, channel, source, edi2_message)
        except IntegrityError:
            # another worker took the same message at the same moment
            return InboundResult("duplicate")
        finally:
            if token is not None:
                correlation_id.reset(token)

    def _receive(
        self,
        tx: WriteTx,
        kith: KithMessages,
        data: bytes,
        channel: InboundChannel,
        source: Destination | None,
        edi2_message: str | None = None,
    ) -> InboundResult:
        conn = tx.conn
        configured = [h for h in (self.settings.our_herid,) if h]

        def seen(msg_id: str) -> bool:
            return (
                conn.execute(
                    select(inbox.c.id).where(
                        inbox.c.adapter == KITH_ADAPTER, inbox.c.message_id == msg_id
                    )
                ).first()
                is not None
            )

        def patient_check(p: PatientInfo) -> str | None:
            return None if _patient_id(conn, p) else "E35"

        r = kith.receive(
            data,
            own_her_ids=own_her_ids(conn, configured),
            seen=seen,
            patient_check=patient_check,
            test_environment=self.settings.environment == "test",
        )
        if isinstance(channel, CallerChannel):
            _check_sender(conn, channel.caller, r)
        if r.outcome == "duplicate":
            return InboundResult("duplicate")
        header = r.header
        msg_id = header.msg_id if header and header.msg_id else None
        if r.apprec is not None:
            msg_id = r.apprec.id or None
        sender = (header.sender.addressed_her_id if header else None) or (
            r.apprec.sender.addressed_her_id if r.apprec else None
        )
        row_id = new_id()
        result = InboundResult(
            r.outcome, row_id, [e.v for e in r.errors], [e.ot or e.dn or "" for e in r.errors]
        )
        status = "processed" if r.outcome in ("accepted", "apprec") else "failed"
        report: dict[str, Any] = {
            "outcome": r.outcome,
            "reason": r.reason,
            "type": r.payload_type.kind if r.payload_type else ("apprec" if r.apprec else None),
            "msgType": header.type.v if header else None,
            "patient": _patient_id(conn, header.patient) if header else None,
            "receiver": header.receiver.addressed_her_id if header else None,
        }
        if r.apprec is not None:
            result.closed, answered_before = self._close(conn, r.apprec)
            report["closes"] = result.closed
            if answered_before:
                result.outcome = report["outcome"] = "duplicate-apprec"
                report["reason"] = (
                    f"melding {r.apprec.original_msg_id} var allerede kvittert; første kvittering står"
                )
        elif r.outcome == "accepted" and header is not None and _is_cancellation(r):
            cancelled = self._cancel(tx, r)
            report["cancels"] = (
                header.conversation_ref.ref_to_parent if header.conversation_ref else None
            )
            report["cancelled"] = cancelled
        elif r.outcome == "accepted" and header is not None:
            result.communication = self._act(tx, r)
            report["communication"] = result.communication
        conn.execute(
            inbox.insert().values(
                id=row_id,
                channel=channel.name,
                sender=(sender or "unknown")[:255],
                message_id=(msg_id or "sha256:" + hashlib.sha256(data).hexdigest())[:255],
                received=to_micros(now_utc()),
                adapter=KITH_ADAPTER,
                raw=data,
                status=status,
                attempts=1,
                processed=to_micros(now_utc()),
                report=orjson.dumps(report),
                error="; ".join(f"{e.v} {e.ot or e.dn or ''}".strip() for e in r.errors)[:2000]
                or None,
            )
        )
        if header is not None and r.answer_from:
            result.apprecs = self._answer(conn, kith, r, header, source, row_id, edi2_message)
        return result

    # ---- what a message does ----------------------------------------------------------------
    def _close(self, conn: Connection, rec: AppRec) -> tuple[str | None, bool]:
        """Close the outbox message ``rec`` answers; (its MsgId or None, answered before)."""
        status = "apprec-ok" if rec.ok else "apprec-rejected"
        errors = [{"code": e.v, "display": e.dn, "detail": e.ot} for e in rec.errors]
        done = conn.execute(
            update(outbox_table)
            .where(
                outbox_table.c.msg_id == rec.original_msg_id,
                outbox_table.c.apprec_status.is_(None),
            )
            .values(
                status=status,
                apprec_status="ok" if rec.ok else "rejected",
                apprec_errors=orjson.dumps(errors) if errors else None,
            )
        )
        if not done.rowcount:
            answered = conn.execute(
                select(outbox_table.c.apprec_status).where(
                    outbox_table.c.msg_id == rec.original_msg_id
                )
            ).first()
            if answered is not None:
                log.warning(
                    "second AppRec for %s ignored: already answered (%s)",
                    rec.original_msg_id,
                    answered.apprec_status,
                )
                return None, True
            log.warning("AppRec for unknown MsgId %s", rec.original_msg_id)
            return None, False
        return rec.original_msg_id, False

    def _cancel(self, tx: WriteTx, r: Received) -> str | None:
        """Mark the received message a cancellation refers to (and its Communication) cancelled.
        Returns the cancelled message's MsgId, or None when it has not been received (yet)."""
        header = r.header
        assert header is not None
        conn = tx.conn
        target = header.conversation_ref.ref_to_parent if header.conversation_ref else None
        if not target:
            return None
        original = conn.execute(
            select(inbox.c.id, inbox.c.report, inbox.c.sender).where(
                inbox.c.adapter == KITH_ADAPTER, inbox.c.message_id == target
            )
        ).first()
        if original is None or original.sender != header.sender.addressed_her_id:
            log.warning(
                "cancellation %s of %s: no such message from its sender", header.msg_id, target
            )
            return None
        report = orjson.loads(original.report) if original.report else {}
        report["outcome"] = "cancelled"
        report["cancelledBy"] = header.msg_id
        conn.execute(
            update(inbox).where(inbox.c.id == original.id).values(report=orjson.dumps(report))
        )
        ref = report.get("communication")
        if isinstance(ref, str) and ref.startswith("Communication/"):
            stored = tx.get("Communication", ref.split("/", 1)[1])
            if stored is not None and not stored.deleted:
                comm = stored.json()
                comm.pop("meta", None)
                comm["status"] = "entered-in-error"
                comm["note"] = [
                    *comm.get("note", []),
                    {
                        "text": f"Kansellert av avsender (kansellering {header.msg_id}).",
                        "time": format_instant(now_utc()),
                    },
                ]
                tx.update("Communication", comm["id"], comm)
        return target

    def _act(self, tx: WriteTx, r: Received) -> str | None:
        header = r.header
        assert header is not None and r.payload_type is not None
        conn = tx.conn
        pid = _patient_id(conn, header.patient)
        if pid is None:
            return None
        origin = None
        if header.conversation_ref is not None:
            refs = {
                header.conversation_ref.ref_to_parent,
                header.conversation_ref.ref_to_conversation,
            }
            origin = conn.execute(
                select(outbox_table.c.msg_id, outbox_table.c.focus, outbox_table.c.event)
                .where(outbox_table.c.msg_id.in_(refs) | outbox_table.c.conversation_ref.in_(refs))
                # our AppRecs carry the MsgId they answer: never what a message refers to
                .where(outbox_table.c.kind != "apprec")
                .order_by(outbox_table.c.seq)
            ).first()
        now = format_instant(now_utc())
        person = header.sender
        while person.unit is not None and person.person is None:
            person = person.unit
        sender_name = person.person.name if person.person else header.sender.name
        communication: dict[str, Any] = {
            "resourceType": "Communication",
            "identifier": [{"system": MSGID_SYSTEM, "value": header.msg_id}],
            "status": "completed",
            "category": [{"text": r.payload_type.display}],
            "subject": {"reference": f"Patient/{pid}"},
            "received": now,
            "sent": _sent(header),
            "sender": {
                "identifier": {"system": HERID_OID, "value": header.sender.addressed_her_id},
                "display": sender_name,
            },
            "payload": [{"contentString": _text_of(r) or "(uten tekst)"}],
        }
        for att in r.attachments:
            if att.data:
                import base64

                communication["payload"].append(
                    {
                        "contentAttachment": {
                            "contentType": att.mime_type,
                            "data": base64.b64encode(att.data).decode("ascii"),
                            "title": att.description or "Vedlegg",
                        }
                    }
                )
        if origin is not None:
            communication["note"] = [{"text": f"Svar på melding {origin.msg_id}"}]
            if origin.focus and origin.focus.startswith("Task/"):
                communication["basedOn"] = [{"reference": origin.focus}]
        stored = tx.create(communication)
        ref = f"Communication/{stored.res_id}"
        if origin is not None and origin.event == PLAN_REQUEST_EVENT and origin.focus:
            # the GP's answer to a proposed egenbehandlingsplan: approve / back to draft
            gp = header.sender.person
            outcome = answer_from_gp(
                self.services,
                tx,
                origin.focus,
                _answer_text(r),
                {
                    "name": sender_name,
                    "hpr": gp.ident("HPR") if gp else None,
                    "her": (gp.ident("HER") if gp else None) or header.sender.addressed_her_id,
                },
            )
            log.info("GP answer to %s: %s", origin.focus, outcome)
        if origin is not None and origin.focus and origin.focus.startswith("Task/"):
            task_stored = tx.get("Task", origin.focus.split("/", 1)[1])
            if task_stored is not None and not task_stored.deleted:
                task = task_stored.json()
                task.pop("meta", None)
                task["note"] = [
                    *task.get("note", []),
                    {"text": f"Svar fra {sender_name} mottatt ({ref}).", "time": now},
                ]
                task["businessStatus"] = {"text": "Svar fra lege mottatt"}
                task["lastModified"] = now
                tx.update("Task", task["id"], task)
        return ref

    def _answer(
        self,
        conn: Connection,
        kith: KithMessages,
        r: Received,
        header: Header,
        source: Destination | None,
        inbound_id: str,
        edi2_message: str | None = None,
    ) -> list[str]:
        dest = destination_for_her_ids(self.store, conn, header.sender.her_ids()) or source
        rows = []
        acks = []
        for own, role in r.answers():
            rec = AppRec(
                version=r.apprec_version,
                status=r.status,
                original_msg_id=header.msg_id,
                original_type=Coded(header.type.v, header.type.dn),
                # echoed as the sender wrote it: the sender matches its AppRecs on it
                original_issue_date=header.gen_date or _sent(header),
                sender=own,
                receiver=header.sender,
                id=str(uuid.uuid4()),
                gen_date=local_timestamp(),
                errors=r.errors,
                sender_role=role,
            )
            payload = kith.build_apprec(rec, r.apprec_version)
            acks.append(payload)
            if edi2_message is not None:
                from interop.national.edi2 import apprec_status_wire

                body = {
                    "appRecStatus": apprec_status_wire(rec.status),
                    "appRecErrorList": [
                        {"errorCode": e.v, "details": e.ot or e.dn or ""} for e in rec.errors
                    ],
                }
                rows.append(
                    enqueue(
                        conn,
                        event="apprec",
                        kind="apprec",
                        destination=f"edi2:{edi2_message.split('/Messages/')[0]}",
                        transport="edi2-apprec",
                        address=f"{edi2_message}/apprec/{own.addressed_her_id}",
                        content_type="application/json",
                        payload=orjson.dumps(body),
                        msg_id=rec.id,
                        conversation_ref=header.msg_id,
                    )
                )
                continue
            row = enqueue(
                conn,
                event="apprec",
                kind="apprec",
                destination=dest.endpoint if dest else "unroutable:apprec",
                transport=dest.transport if dest else "none",
                address=dest.address if dest else "",
                content_type="application/xml",
                payload=payload,
                msg_id=rec.id,
                conversation_ref=header.msg_id,
            )
            if dest is None:
                # kept, never dropped: an operator can reprocess it to the sender's address
                senders = ", ".join(header.sender.her_ids()) or "unknown"
                mark_dead(conn, row, f"no Endpoint for the sender (HER-id {senders})")
                log.warning("no Endpoint to send the AppRec for %s to", header.msg_id)
            rows.append(row)
        if acks:
            conn.execute(update(inbox).where(inbox.c.id == inbound_id).values(ack=acks[0]))
        return rows


def _is_cancellation(r: Received) -> bool:
    """A PLO message with ``Forsendelsesstatus`` C (*Kansellering*)."""
    return getattr(r.content, "status", None) == "C"


def _check_sender(conn: Connection, caller: Actor, r: Received) -> None:
    """Raise :class:`SenderNotCaller` when the message (or AppRec) names a sender that is not
    the caller's organisation. A message too broken to name a sender is left to the receive
    checklist: it is answered to nobody and stored in nobody's name."""
    sender = r.header.sender if r.header is not None else None
    if sender is None and r.apprec is not None:
        sender = r.apprec.sender
    if sender is None:
        return
    why = refusal(conn, caller, sender)
    if why is not None:
        raise SenderNotCaller(why)


def _sent(header: Header) -> str:
    """GenDate as a FHIR dateTime (zone-less local times get the Norwegian offset)."""
    from datetime import datetime
    from zoneinfo import ZoneInfo

    try:
        when = datetime.fromisoformat(header.gen_date)
    except ValueError:
        return format_instant(now_utc())
    if when.tzinfo is None:
        when = when.replace(tzinfo=ZoneInfo("Europe/Oslo"))
    return when.isoformat(timespec="seconds")
