"""Payloads inside a Hodemelding: PLO *Helseopplysninger til lege* (built), *Medisinske
opplysninger* (parsed) and Dialogmelding (built and parsed).

Parsers read by local names (``{*}``), so one parser serves every version of a message whose
namespace changed between versions (PLO 1.5/1.6, Dialogmelding 1.0/1.1); the schema check
before parsing has already tied the namespace to a known version.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field, replace

from lxml import etree

from plo_messages.model import Coded, HealthcareProfessional, Ident
from plo_messages.msghead import coded, fill_hcp, read_coded, read_hcp, sub

PO = "http://www.kith.no/xmlstds/po/poKomponent/2012-04-01"
P6 = "http://www.kith.no/xmlstds/po/HelseopplysningerTilLege/2012-04-01"
EPJ2 = "http://www.kith.no/xmlstds/epj/epj2/2008-02-20"
M1 = "http://www.kith.no/xmlstds/epj/meta/2008-02-20"
FK1 = "http://www.kith.no/xmlstds/felleskomponent1"
DIA11 = "http://www.kith.no/xmlstds/dialog/2013-01-23"

FORSENDELSESSTATUS = {"N": "Ny", "M": "Endring", "C": "Kansellering"}
"""Shipping status of a PLO message: new, change, cancellation."""

JOURNALNOTAT_TYPE = "2.16.578.1.12.4.1.6.13.11009.0"
"""Fixed ``m1:komponenttype`` of ``GenereltJournalnotat``."""


@dataclass(frozen=True, slots=True)
class JournalText:
    """One ``Journaltekst``: a heading (kodeverk 9142, e.g. PROB, FU) and its text."""

    text: str
    heading: Coded | None = None


@dataclass(slots=True)
class HelseopplysningerTilLege:
    """PLO *Helseopplysninger til lege* (the municipality's report to the GP)."""

    content_type: Coded
    """TypeInnholdKonsultasjon: 3 = Ønske om legevurdering, 2 = Statusrapport."""
    notes: list[JournalText] = field(default_factory=list)
    status: str = "N"
    reply_to_request: bool = False
    responsible: HealthcareProfessional | None = None
    approved_date: str | None = None
    remark: str | None = None


@dataclass(slots=True)
class MedisinskeOpplysninger:
    """PLO *Medisinske opplysninger* (the GP's answer/transfer of medical information)."""

    status: str
    reply_to_request: bool
    content_type: Coded | None
    notes: list[JournalText]
    diagnoses: list[Coded]
    responsible: HealthcareProfessional | None
    medications: list[str]


@dataclass(slots=True)
class PloMessage:
    """Any other PLO message (read, not acted on): shipping status and its journal texts."""

    root: str
    status: str
    notes: list[JournalText]


@dataclass(slots=True)
class DialogNote:
    """Dialogmelding ``Notat``: a question, an answer or a free-text note."""

    theme_code: Coded
    theme: str | None = None
    text: str | None = None
    document_id: str | None = None
    question_type: Coded | None = None
    question: str | None = None
    roles: list[HealthcareProfessional] = field(default_factory=list)


# --- build ---------------------------------------------------------------------------------


def _fk1_hcp(parent: etree._Element, name: str, hcp: HealthcareProfessional) -> None:
    # felleskomponent1 requires at least one Ident
    idents = hcp.idents or [Ident("", "HPR")]
    fill_hcp(sub(parent, PO, name), FK1, replace(hcp, idents=idents))


def build_helseopplysninger_til_lege(msg: HelseopplysningerTilLege) -> etree._Element:
    """The ``Konsultasjon`` element (PLO v1.6 *Helseopplysninger til lege*)."""
    root = etree.Element(
        f"{{{P6}}}Konsultasjon",
        nsmap={"p6": P6, None: PO, "epj2": EPJ2, "m1": M1, "fk1": FK1},  # type: ignore[dict-item]
    )
    info = sub(root, PO, "InformasjonOmForsendelsen")
    coded(info, PO, "Forsendelsesstatus", Coded(msg.status, FORSENDELSESSTATUS.get(msg.status)))
    sub(info, PO, "SvarPaaForesporsel", "true" if msg.reply_to_request else "false")
    if msg.responsible is not None:
        afr = sub(root, PO, "AnsvarForRapport")
        _fk1_hcp(afr, "AnsvarligRapport", msg.responsible)
        if msg.approved_date:
            sub(afr, PO, "GodkjentDato", msg.approved_date)
    ik = sub(root, PO, "InnholdKonsultasjon")
    coded(ik, PO, "TypeInnholdKonsultasjon", Coded(msg.content_type.v, msg.content_type.dn))
    if msg.remark:
        sub(ik, PO, "Merknad", msg.remark)
    if msg.notes:
        mo = sub(root, PO, "MedisinskfagligeOpplysninger")
        note = sub(mo, EPJ2, "GenereltJournalnotat")
        note.set(f"{{{M1}}}basiskomponenttype", "EPJ dokument")
        note.set(f"{{{M1}}}komponenttype", JOURNALNOTAT_TYPE)
        note.set(f"{{{M1}}}informasjonskategori", "Andre notater")
        note.set("komponentID", str(uuid.uuid4()))
        for jt in msg.notes:
            t = sub(note, EPJ2, "Journaltekst")
            if jt.heading is not None:
                coded(t, EPJ2, "Overskriftskode", jt.heading)
            sub(t, EPJ2, "Notat", jt.text)
    return root


def build_dialog_note(note: DialogNote) -> etree._Element:
    """A Dialogmelding v1.1 with one ``Notat`` (*Helsefaglig dialog*)."""
    root = etree.Element(f"{{{DIA11}}}Dialogmelding", nsmap={None: DIA11, "fk1": FK1})  # type: ignore[dict-item]
    n = sub(root, DIA11, "Notat")
    coded(n, DIA11, "TemaKodet", note.theme_code)
    if note.theme:
        sub(n, DIA11, "Tema", note.theme)
    if note.text is not None:
        sub(n, DIA11, "TekstNotatInnhold", note.text)
    if note.document_id:
        sub(n, DIA11, "DokIdNotat", note.document_id)
    return root


def build_dialog_request(
    type_foresp: Coded, subject: str, question: str, document_id: str | None = None
) -> etree._Element:
    """A Dialogmelding v1.1 *forespørsel*: one ``Foresporsel`` (type, subject, question)."""
    root = etree.Element(f"{{{DIA11}}}Dialogmelding", nsmap={None: DIA11, "fk1": FK1})  # type: ignore[dict-item]
    fq = sub(root, DIA11, "Foresporsel")
    coded(fq, DIA11, "TypeForesp", type_foresp)
    sub(fq, DIA11, "EmneSporsmal", subject)
    sub(fq, DIA11, "Sporsmal", question)
    if document_id:
        sub(fq, DIA11, "DokIdForesp", document_id)
    return root


# --- parse ---------------------------------------------------------------------------------


def _text(el: etree._Element | None, path: str) -> str | None:
    if el is None:
        return None
    found = el.find(path)
    if found is None:
        return None
    value = "".join(str(t) for t in found.itertext()).strip()
    return value or None


def _journal_texts(root: etree._Element) -> list[JournalText]:
    out = []
    for jt in root.iter("{*}Journaltekst"):
        text = _text(jt, "{*}Notat")
        if text:
            out.append(JournalText(text, read_coded(jt.find("{*}Overskriftskode"))))
    return out


def parse_helseopplysninger_til_lege(root: etree._Element) -> HelseopplysningerTilLege:
    status = root.find("{*}InformasjonOmForsendelsen/{*}Forsendelsesstatus")
    ct = read_coded(root.find("{*}InnholdKonsultasjon/{*}TypeInnholdKonsultasjon"))
    return HelseopplysningerTilLege(
        content_type=ct or Coded(""),
        notes=_journal_texts(root),
        status=(status.get("V") if status is not None else None) or "N",
        reply_to_request=_text(root, "{*}InformasjonOmForsendelsen/{*}SvarPaaForesporsel")
        == "true",
        responsible=read_hcp(root.find("{*}AnsvarForRapport/{*}AnsvarligRapport")),
        approved_date=_text(root, "{*}AnsvarForRapport/{*}GodkjentDato"),
        remark=_text(root, "{*}InnholdKonsultasjon/{*}Merknad"),
    )


def parse_medisinske_opplysninger(root: etree._Element) -> MedisinskeOpplysninger:
    status = root.find("{*}InformasjonOmForsendelsen/{*}Forsendelsesstatus")
    meds = []
    for f in root.iter("{*}Forskrivningsinfo"):
        name = _text(f, "{*}Navn")
        if name:
            dose = _text(f, "{*}DosVeiledEnkel")
            meds.append(f"{name}: {dose}" if dose else name)
    return MedisinskeOpplysninger(
        status=(status.get("V") if status is not None else None) or "N",
        reply_to_request=_text(root, "{*}InformasjonOmForsendelsen/{*}SvarPaaForesporsel")
        == "true",
        content_type=read_coded(root.find("{*}TypeInnholdIMelding/{*}TypeInnhold")),
        notes=_journal_texts(root),
        diagnoses=[
            c
            for c in (read_coded(d) for d in root.iter("{*}Diagnosekode"))
            if c is not None and c.v
        ],
        responsible=read_hcp(root.find("{*}AnsvarForRapport/{*}AnsvarligRapport")),
        medications=meds,
    )


def parse_dialog(root: etree._Element) -> list[DialogNote]:
    """Every ``Notat`` (or stand-alone ``Foresporsel``) of a Dialogmelding 1.0/1.1."""
    out = []
    for n in root.findall("{*}Notat"):
        fq = n.find("{*}Foresporsel")
        roles = [
            hcp
            for hcp in (
                read_hcp(r.find("{*}HealthcareProfessional"))
                for r in n.findall("{*}RollerRelatertNotat")
            )
            if hcp is not None
        ]
        out.append(
            DialogNote(
                theme_code=read_coded(n.find("{*}TemaKodet")) or Coded(""),
                theme=_text(n, "{*}Tema"),
                text=_text(n, "{*}TekstNotatInnhold"),
                document_id=_text(n, "{*}DokIdNotat"),
                question_type=read_coded(fq.find("{*}TypeForesp")) if fq is not None else None,
                question=_text(fq, "{*}Sporsmal") if fq is not None else None,
                roles=roles,
            )
        )
    for fq in root.findall("{*}Foresporsel"):
        out.append(
            DialogNote(
                theme_code=read_coded(fq.find("{*}TypeForesp")) or Coded(""),
                theme=_text(fq, "{*}EmneSporsmal"),
                text=_text(fq, "{*}Sporsmal"),
                document_id=_text(fq, "{*}DokIdForesp"),
                question_type=read_coded(fq.find("{*}TypeForesp")),
                question=_text(fq, "{*}Sporsmal"),
            )
        )
    return out


def parse_plo(root: etree._Element) -> PloMessage:
    status = root.find("{*}InformasjonOmForsendelsen/{*}Forsendelsesstatus")
    return PloMessage(
        etree.QName(root).localname,
        (status.get("V") if status is not None else None) or "N",
        _journal_texts(root),
    )
