"""Receiving a message, following the national receive checklist for KITH messages.

1. Not XML / not well-formed → AppRec *Avvist* T01 (addressing read by a recovering parse, if
   that finds a sender and a MsgId; otherwise no AppRec can be sent).
2. An AppRec is never acknowledged: it is read and handed over.
3. A payload in a namespace we have no schema for → T10; schema-invalid → T02 (with the
   schema's message); a message type we do not handle → T10.
4. Addressing (:mod:`plo_messages.addressing`): our organisation named with a service we do
   not have → *Avvist* E21 (Mottaker finnes ikke), answered from our organisation; no level
   of any receiver ours → not answered at all (never an AppRec in another organisation's
   name). A copy receiver that is ours answers as copy receiver (role COP).
5. A MsgId seen before → ignored, no new AppRec.
6. Patient checks → E30 (fødselsnummer missing), E31 (fødselsnummer wrong), E32 (name
   missing), E35 (patient unknown here).
7. Otherwise the message is accepted; the caller persists it first, then sends one AppRec OK
   per own receiver (receiver and copy receivers with our HER-ids).

The same addressing decides who answers a rejection (T01, T02, T10, E3x): a message that is
not ours is never answered.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from typing import Literal

from lxml import etree

from plo_messages.addressing import Addressing, Role, address
from plo_messages.apprec import AppRec, error, parse_apprec
from plo_messages.content import (
    DialogNote,
    HelseopplysningerTilLege,
    MedisinskeOpplysninger,
    PloMessage,
    parse_dialog,
    parse_helseopplysninger_til_lege,
    parse_medisinske_opplysninger,
    parse_plo,
)
from plo_messages.model import Attachment, Coded, Header, Organisation, PatientInfo
from plo_messages.msghead import MH, parse_msghead
from plo_messages.registry import MessageRegistry, PayloadType
from plo_messages.schemas import SchemaSet
from plo_messages.xmlsafe import DEFAULT_MAX_BYTES, NotWellFormed, TooLarge, parse_xml

Outcome = Literal["accepted", "rejected", "duplicate", "apprec", "unreadable"]
Content = HelseopplysningerTilLege | MedisinskeOpplysninger | PloMessage | list[DialogNote] | None

PARSERS: dict[str, Callable[[etree._Element], Content]] = {
    "plo-helseopplysninger-lege": parse_helseopplysninger_til_lege,
    "plo-medisinske-opplysninger": parse_medisinske_opplysninger,
    "dialog-helsefaglig": parse_dialog,
    "dialog-svar": parse_dialog,
    "dialog-notat": parse_dialog,
    "dialog-foresporsel": parse_dialog,
    "dialog-avvik": parse_dialog,
}


@dataclass(slots=True)
class Received:
    """What the checklist decided about one incoming document."""

    outcome: Outcome
    errors: list[Coded] = field(default_factory=list)
    reason: str = ""
    header: Header | None = None
    payload_type: PayloadType | None = None
    content: Content = None
    attachments: list[Attachment] = field(default_factory=list)
    apprec: AppRec | None = None
    """The AppRec received (outcome ``apprec``)."""
    answer_from: list[Organisation] = field(default_factory=list)
    """Our receivers that answer with an AppRec (one each); empty = send no AppRec."""
    answer_roles: list[Role] = field(default_factory=list)
    """The role each of ``answer_from`` answers in (primary or copy receiver)."""
    apprec_version: str = "1.1"

    def answers(self) -> list[tuple[Organisation, Role]]:
        """(our receiver, its role) for each AppRec to send."""
        roles = self.answer_roles + ["primary"] * (len(self.answer_from) - len(self.answer_roles))
        return list(zip(self.answer_from, roles, strict=True))

    def answer_by(self, addressing: Addressing) -> None:
        if addressing.answerers:
            self.answer_from = [o for o, _ in addressing.answerers]
            self.answer_roles = [r for _, r in addressing.answerers]
        elif addressing.unknown_service is not None:
            self.answer_from = [addressing.unknown_service]
            self.answer_roles = ["primary"]
        else:
            self.answer_from, self.answer_roles = [], []

    @property
    def status(self) -> str:
        """AppRec status to answer with: 1 OK, 2 Avvist."""
        return "1" if self.outcome == "accepted" else "2"


PatientCheck = Callable[[PatientInfo], str | None]
"""Returns an AppRec error code (E30–E36) for a patient the receiver cannot accept, or None."""


def _recover_header(data: bytes) -> Header | None:
    """Best-effort addressing of a broken message, only to be able to send it a T01."""
    parser = etree.XMLParser(
        recover=True, resolve_entities=False, no_network=True, load_dtd=False, huge_tree=False
    )
    try:
        root = etree.fromstring(data, parser)
    except etree.XMLSyntaxError:
        return None
    if root is None or root.tag != f"{{{MH}}}MsgHead":
        return None
    _put_back_misplaced(root)
    info = root.find(f"{{{MH}}}MsgInfo")
    if info is None:
        return None
    head = etree.Element(root.tag)  # the addressing only: a broken payload must not stop it
    head.append(info)
    try:
        header = parse_msghead(head).header
    except Exception:  # noqa: BLE001 - a broken message may break the reader anywhere
        return None
    return header if header.msg_id and header.sender.addressed_her_id else None


def _put_back_misplaced(root: etree._Element) -> None:
    """A recovering parse nests what follows a missing end tag inside the unclosed element
    (a ``Receiver`` inside ``Sender``): move MsgInfo's parts back where MsgHead has them."""
    info = root.find(f"{{{MH}}}MsgInfo")
    if info is None:
        return
    for name in ("Receiver", "OtherReceiver", "Patient", "ConversationRef"):
        for el in list(info.iter(f"{{{MH}}}{name}")):
            if el.getparent() is not info:
                info.append(el)


def _unwrap(root: etree._Element, registry: MessageRegistry) -> etree._Element | None:
    ns = etree.QName(root).namespace
    if ns == registry.msghead_namespace or registry.apprec_by_namespace(ns or ""):
        return root
    if ns in registry.envelopes:
        for el in root.iter():
            if not isinstance(el.tag, str):
                continue
            q = etree.QName(el)
            if (q.localname == "MsgHead" and q.namespace == registry.msghead_namespace) or (
                q.localname == "AppRec" and registry.apprec_by_namespace(q.namespace or "")
            ):
                return el
    return None


def _identified(org: Organisation) -> bool:
    """Any level of the sender (organisation, unit, person) names a HER-id or an org.nr."""
    node: Organisation | None = org
    while node is not None:
        if any(i.id for i in node.idents if i.type in ("HER", "ENH")):
            return True
        if node.person is not None and node.person.ident("HER"):
            return True
        node = node.unit
    return False


def check_patient_fields(
    patient: PatientInfo | None, *, test_environment: bool = False
) -> Coded | None:
    """Format checks the receiver makes before looking the patient up (E30, E31, E32).
    Person numbers of the national test environments pass only in a test environment."""
    from interop.synthetic_identities import patient_id_problem

    if patient is None or not patient.national_id:
        return error("E30", "pasientens fødselsnummer/D-nummer mangler")
    problem = patient_id_problem(patient.national_id, test_environment=test_environment)
    if problem:
        return error("E31", problem)
    if not (patient.family_name or patient.given_name):
        return error("E32")
    return None


def parse_content(ptype: PayloadType, payload: etree._Element) -> Content:
    """The domain object for a (schema-valid) payload of a known type."""
    parser = PARSERS.get(ptype.kind)
    if parser is not None:
        return parser(payload)
    if ptype.kind.startswith("plo-"):
        return parse_plo(payload)
    return None


def read(data: bytes, *, schemas: SchemaSet, max_bytes: int = DEFAULT_MAX_BYTES) -> Received:
    """Parse and schema-check a message without the receiver's checks (addressing, patient,
    duplicates): what it is and what it says. Errors as in :func:`receive`."""
    everyone = _AnyReceiver()
    return receive(
        data,
        schemas=schemas,
        own_her_ids=everyone,
        seen=lambda _m: False,
        readonly=True,
        max_bytes=max_bytes,
    )


class _AnyReceiver(frozenset[str]):
    def __contains__(self, item: object) -> bool:
        return True


def receive(
    data: bytes,
    *,
    schemas: SchemaSet,
    own_her_ids: Collection[str],
    seen: Callable[[str], bool],
    patient_check: PatientCheck | None = None,
    readonly: bool = False,
    max_bytes: int = DEFAULT_MAX_BYTES,
    test_environment: bool = False,
) -> Received:
    registry = schemas.registry
    try:
        root = parse_xml(data, max_bytes=max_bytes)
    except NotWellFormed as exc:
        # too large: only the start is read, to address the refusal
        header = _recover_header(data[:65536] if isinstance(exc, TooLarge) else data)
        refused = "T99" if isinstance(exc, TooLarge) else "T01"
        result = Received("unreadable", [error(refused, str(exc))], str(exc), header=header)
        if header is not None:
            result.answer_by(address(header.receiver, header.other_receivers, own_her_ids))
            if result.answer_from:
                result.outcome = "rejected"
        return result

    message = _unwrap(root, registry)
    if message is None:
        ns = etree.QName(root).namespace
        return Received(
            "unreadable",
            [error("T10", f"ukjent dokumenttype {{{ns}}}{etree.QName(root).localname}")],
            "not a MsgHead or an AppRec",
        )
    ns = etree.QName(message).namespace or ""

    version = registry.apprec_by_namespace(ns)
    if version is not None:
        problems = schemas.validate(message)
        if problems:
            # an AppRec is never answered; an invalid one is kept for an operator to look at
            return Received("unreadable", [error("T02", str(problems[0]))], "invalid AppRec")
        rec = parse_apprec(message, version)
        return Received("apprec", reason=f"AppRec status {rec.status}", apprec=rec)

    parsed = parse_msghead(message)
    header = parsed.header
    addressing = address(header.receiver, header.other_receivers, own_her_ids)
    payload_ns = [etree.QName(p).namespace or "" for p in parsed.payloads]

    def reject(code: str, detail: str, answer: bool = True) -> Received:
        r = Received("rejected", [error(code, detail)], detail, header=header)
        if answer and header.msg_id:
            r.answer_by(addressing)
        return r

    unknown = [n for n in payload_ns if not schemas.knows(n)]
    if unknown:
        return reject("T10", f"meldingsformatet støttes ikke: {', '.join(unknown)}")
    problems = schemas.validate(message)
    if problems:
        return reject("T02", "; ".join(str(p) for p in problems[:3]))
    payload = parsed.payloads[0] if parsed.payloads else None
    ptype = registry.payload(header.type.v, payload_ns[0]) if payload_ns else None
    if readonly and ptype is not None and payload is not None:
        return Received(
            "accepted",
            reason=f"{ptype.display} v{ptype.version}",
            header=header,
            payload_type=ptype,
            content=parse_content(ptype, payload),
            attachments=parsed.attachments,
        )
    if ptype is None or not ptype.receive:
        what = header.type.v + (f" ({payload_ns[0]})" if payload_ns else "")
        return reject("T10", f"meldingstypen {what} tas ikke imot her")
    apprec_version = ptype.apprec
    if not addressing.answerers:
        named = header.receiver.her_ids() or [header.receiver.name]
        r = reject("E21", f"mottakeren {' / '.join(named)} finnes ikke her")
        r.apprec_version = apprec_version
        if not addressing.for_us:
            r.reason = "ikke adressert til oss: ingen applikasjonskvittering i en annens navn"
        return r
    if seen(header.msg_id):
        return Received(
            "duplicate", reason=f"MsgId {header.msg_id} already received", header=header
        )
    if not _identified(header.sender):
        # KITH receive test criterion 13: a sender without any identifier is reported, never
        # taken as if someone known had sent it
        r = reject("X99", "avsenderen mangler identifikator (HER-id eller organisasjonsnummer)")
        r.apprec_version = apprec_version
        return r
    patient_error = check_patient_fields(header.patient, test_environment=test_environment)
    if patient_error is None and patient_check is not None and header.patient is not None:
        code = patient_check(header.patient)
        patient_error = error(code) if code else None
    if patient_error is not None:
        r = reject(patient_error.v, patient_error.ot or patient_error.dn or "")
        r.errors = [patient_error]
        r.apprec_version = apprec_version
        return r
    content = parse_content(ptype, payload) if payload is not None else None
    return Received(
        "accepted",
        reason=f"{ptype.display} v{ptype.version}",
        header=header,
        payload_type=ptype,
        content=content,
        attachments=parsed.attachments,
        answer_from=[o for o, _ in addressing.answerers],
        answer_roles=[r for _, r in addressing.answerers],
        apprec_version=apprec_version,
    )
