"""Hodemelding (MsgHead v1.2): the envelope every KITH message travels in."""

from __future__ import annotations

import base64
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from zoneinfo import ZoneInfo

from lxml import etree

from plo_messages.model import (
    HER_OID,
    PERSON_ID_OID,
    Attachment,
    Coded,
    ConversationRef,
    Header,
    HealthcareProfessional,
    Ident,
    Organisation,
    PatientInfo,
)

MH = "http://www.kith.no/xmlstds/msghead/2006-05-24"
B64 = "http://www.kith.no/xmlstds/base64container"
XSI = "http://www.w3.org/2001/XMLSchema-instance"
OSLO = ZoneInfo("Europe/Oslo")

PERSON_ID_TYPES = {
    "FNR": "Fødselsnummer",
    "DNR": "D-nummer",
    "HNR": "H-nummer",
    "HPR": "HPR-nummer",
}


def local_timestamp(when: datetime | None = None) -> str:
    """Norwegian local time without offset, as receivers and the official examples use it."""
    when = when or datetime.now(OSLO)
    return when.astimezone(OSLO).replace(tzinfo=None).isoformat(timespec="seconds")


# --- small XML helpers -------------------------------------------------------------------


def sub(parent: etree._Element, ns: str, name: str, text: str | None = None) -> etree._Element:
    el = etree.SubElement(parent, f"{{{ns}}}{name}")
    if text is not None:
        el.text = text
    return el


def coded(parent: etree._Element, ns: str, name: str, value: Coded) -> etree._Element:
    el = etree.SubElement(parent, f"{{{ns}}}{name}")
    el.set("V", value.v)
    if value.dn:
        el.set("DN", value.dn)
    if value.s:
        el.set("S", value.s)
    if value.ot:
        el.set("OT", value.ot)
    return el


def read_coded(el: etree._Element | None) -> Coded | None:
    if el is None:
        return None
    return Coded(el.get("V") or "", el.get("DN"), el.get("S"), el.get("OT"))


def text_of(el: etree._Element | None, path: str) -> str | None:
    if el is None:
        return None
    found = el.find(path)
    if found is None or found.text is None:
        return None
    return found.text.strip() or None


def _ident(parent: etree._Element, ns: str, ident: Ident, *, person: bool = False) -> None:
    """An ``Ident``; a person's identifiers (a GP's HER-id too) are coded in kodeverk 8116,
    an organisation's in 9051 — as the official HTL 1.6 example codes them."""
    el = sub(parent, ns, "Ident")
    sub(el, ns, "Id", ident.id)
    org_type = ident.type in ("HER", "ENH", "RSH") and not person
    oid = ident.oid or (HER_OID if org_type else PERSON_ID_OID)
    display = ident.display or {
        "HER": "HER-id",
        "ENH": "Organisasjonsnummeret i Enhetsregister",
    }.get(ident.type, PERSON_ID_TYPES.get(ident.type))
    coded(parent=el, ns=ns, name="TypeId", value=Coded(ident.type, display, oid))


def _read_idents(el: etree._Element) -> list[Ident]:
    """``Ident`` children in any namespace (MsgHead's, felleskomponent1's); HER-ids written
    with separators ("258.521") are read without them."""
    out = []
    for i in el.findall("{*}Ident"):
        tid = i.find("{*}TypeId")
        out.append(
            Ident(
                (text_of(i, "{*}Id") or "").replace(".", "").replace(" ", ""),
                (tid.get("V") if tid is not None else "") or "",
                tid.get("S") if tid is not None else None,
                tid.get("DN") if tid is not None else None,
            )
        )
    return out


def fill_hcp(el: etree._Element, ns: str, hcp: HealthcareProfessional) -> None:
    """A health professional's children (the same sequence in MsgHead and felleskomponent1)."""
    if hcp.profession:
        coded(el, ns, "TypeHealthcareProfessional", hcp.profession)
    if hcp.role_to_patient:
        coded(el, ns, "RoleToPatient", hcp.role_to_patient)
    for name, value in (
        ("FamilyName", hcp.family_name),
        ("MiddleName", hcp.middle_name),
        ("GivenName", hcp.given_name),
    ):
        if value:
            sub(el, ns, name, value)
    for ident in hcp.idents:
        _ident(el, ns, ident, person=True)
    if hcp.phone:
        tc = sub(el, ns, "TeleCom")
        coded(tc, ns, "TypeTelecom", Coded("HP", "Hovedtelefon"))
        sub(tc, ns, "TeleAddress").set("V", f"tel:{hcp.phone}")


def _organisation(parent: etree._Element, org: Organisation) -> None:
    el = sub(parent, MH, "Organisation")
    sub(el, MH, "OrganisationName", org.name)
    for ident in org.idents:
        _ident(el, MH, ident)
    if org.unit is not None:
        _organisation(el, org.unit)
    if org.person is not None:
        fill_hcp(sub(el, MH, "HealthcareProfessional"), MH, org.person)


def read_hcp(el: etree._Element | None) -> HealthcareProfessional | None:
    """A health professional in any namespace (MsgHead, felleskomponent1, Dialogmelding)."""
    if el is None:
        return None
    phone = None
    ta = el.find("{*}TeleCom/{*}TeleAddress")
    if ta is not None and (ta.get("V") or "").startswith("tel:"):
        phone = (ta.get("V") or "")[4:]
    return HealthcareProfessional(
        family_name=text_of(el, "{*}FamilyName"),
        given_name=text_of(el, "{*}GivenName"),
        middle_name=text_of(el, "{*}MiddleName"),
        idents=_read_idents(el),
        role_to_patient=read_coded(el.find("{*}RoleToPatient")),
        profession=read_coded(el.find("{*}TypeHealthcareProfessional")),
        phone=phone,
    )


def _read_organisation(el: etree._Element | None) -> Organisation:
    if el is None:
        return Organisation(name="")
    return Organisation(
        name=text_of(el, f"{{{MH}}}OrganisationName") or "",
        idents=_read_idents(el),
        unit=(
            _read_organisation(el.find(f"{{{MH}}}Organisation"))
            if el.find(f"{{{MH}}}Organisation") is not None
            else None
        ),
        person=read_hcp(el.find(f"{{{MH}}}HealthcareProfessional")),
    )


def _patient(parent: etree._Element, p: PatientInfo) -> None:
    el = sub(parent, MH, "Patient")
    for name, value in (
        ("FamilyName", p.family_name),
        ("MiddleName", p.middle_name),
        ("GivenName", p.given_name),
        ("DateOfBirth", p.birth_date),
    ):
        if value:
            sub(el, MH, name, value)
    if p.sex:
        coded(el, MH, "Sex", p.sex)
    if p.national_id:
        _ident(el, MH, Ident(p.national_id, p.id_type, PERSON_ID_OID))


def _read_patient(el: etree._Element | None) -> PatientInfo | None:
    if el is None:
        return None
    idents = _read_idents(el)
    national = next((i for i in idents if i.type in ("FNR", "DNR", "HNR")), None)
    if national is None and idents:
        national = idents[0]
    return PatientInfo(
        national_id=(national.id or None) if national else None,
        id_type=(national.type or "FNR") if national else "FNR",
        family_name=text_of(el, f"{{{MH}}}FamilyName"),
        given_name=text_of(el, f"{{{MH}}}GivenName"),
        middle_name=text_of(el, f"{{{MH}}}MiddleName"),
        birth_date=text_of(el, f"{{{MH}}}DateOfBirth"),
        sex=read_coded(el.find(f"{{{MH}}}Sex")),
    )


# --- build ---------------------------------------------------------------------------------


def build_msghead(
    header: Header,
    payload: etree._Element,
    *,
    issue_date: str | None = None,
    attachments: Iterable[Attachment] = (),
) -> etree._Element:
    """The MsgHead element carrying ``payload`` as its first Document, and attachments after."""
    root = etree.Element(f"{{{MH}}}MsgHead", nsmap={None: MH, "xsi": XSI})  # type: ignore[dict-item]
    info = sub(root, MH, "MsgInfo")
    coded(info, MH, "Type", header.type)
    sub(info, MH, "MIGversion", header.mig_version)
    sub(info, MH, "GenDate", header.gen_date)
    sub(info, MH, "MsgId", header.msg_id)
    if header.conversation_ref:
        cr = sub(info, MH, "ConversationRef")
        sub(cr, MH, "RefToParent", header.conversation_ref.ref_to_parent)
        sub(cr, MH, "RefToConversation", header.conversation_ref.ref_to_conversation)
    _organisation(sub(info, MH, "Sender"), header.sender)
    _organisation(sub(info, MH, "Receiver"), header.receiver)
    if header.patient:
        _patient(info, header.patient)
    doc = sub(root, MH, "Document")
    ref = sub(doc, MH, "RefDoc")
    sub(ref, MH, "IssueDate").set("V", issue_date or header.gen_date)
    coded(ref, MH, "MsgType", Coded("XML", "XML-instans"))
    sub(ref, MH, "Content").append(payload)
    for att in attachments:
        doc = sub(root, MH, "Document")
        ref = sub(doc, MH, "RefDoc")
        sub(ref, MH, "IssueDate").set("V", issue_date or header.gen_date)
        coded(ref, MH, "MsgType", Coded("A", "Vedlegg"))
        sub(ref, MH, "MimeType", att.mime_type)
        if att.description:
            sub(ref, MH, "Description", att.description)
        container = etree.SubElement(
            sub(ref, MH, "Content"),
            f"{{{B64}}}Base64Container",
            nsmap={None: B64},  # type: ignore[dict-item]
        )
        container.text = base64.b64encode(att.data).decode("ascii")
    return root


# --- parse ---------------------------------------------------------------------------------


@dataclass(slots=True)
class ParsedMsgHead:
    header: Header
    payloads: list[etree._Element] = field(default_factory=list)
    """The XML documents (``MsgType`` XML) in ``Document/RefDoc/Content``, in order."""
    attachments: list[Attachment] = field(default_factory=list)


def parse_msghead(root: etree._Element) -> ParsedMsgHead:
    """Read a MsgHead element (already schema-valid) into domain objects."""
    info = root.find(f"{{{MH}}}MsgInfo")
    cr_el = info.find(f"{{{MH}}}ConversationRef") if info is not None else None
    conversation = None
    if cr_el is not None:
        conversation = ConversationRef(
            text_of(cr_el, f"{{{MH}}}RefToParent") or "",
            text_of(cr_el, f"{{{MH}}}RefToConversation") or "",
        )
    header = Header(
        type=read_coded(info.find(f"{{{MH}}}Type") if info is not None else None) or Coded(""),
        msg_id=text_of(info, f"{{{MH}}}MsgId") or "",
        gen_date=text_of(info, f"{{{MH}}}GenDate") or "",
        sender=_read_organisation(
            info.find(f"{{{MH}}}Sender/{{{MH}}}Organisation") if info is not None else None
        ),
        receiver=_read_organisation(
            info.find(f"{{{MH}}}Receiver/{{{MH}}}Organisation") if info is not None else None
        ),
        patient=_read_patient(info.find(f"{{{MH}}}Patient") if info is not None else None),
        conversation_ref=conversation,
        mig_version=text_of(info, f"{{{MH}}}MIGversion") or "",
        other_receivers=[
            _read_organisation(o)
            for o in (
                info.findall(f"{{{MH}}}OtherReceiver/{{{MH}}}Organisation")
                if info is not None
                else []
            )
        ],
    )
    parsed = ParsedMsgHead(header)
    for ref in root.iter(f"{{{MH}}}RefDoc"):
        msg_type = ref.find(f"{{{MH}}}MsgType")
        kind = msg_type.get("V") if msg_type is not None else None
        content = ref.find(f"{{{MH}}}Content")
        if kind == "XML" and content is not None:
            parsed.payloads.extend(c for c in content if isinstance(c.tag, str))
        elif kind == "A":
            data = b""
            container = content.find(f"{{{B64}}}Base64Container") if content is not None else None
            if container is not None and container.text:
                data = base64.b64decode("".join(container.text.split()), validate=False)
            parsed.attachments.append(
                Attachment(
                    mime_type=text_of(ref, f"{{{MH}}}MimeType") or "application/octet-stream",
                    data=data,
                    description=text_of(ref, f"{{{MH}}}Description"),
                    file_reference=text_of(ref, f"{{{MH}}}FileReference"),
                )
            )
    return parsed
