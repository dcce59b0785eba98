"""Domain objects for Norwegian health messages: who sends, who receives, about which patient.

These are what builders take and parsers give back; they carry no XML.
"""

from __future__ import annotations

from dataclasses import dataclass, field

HER_OID = "2.16.578.1.12.4.1.1.9051"
"""Kodeverk 9051: identifier types for organisations (HER-id, ENH = organisasjonsnummer, …)."""
PERSON_ID_OID = "2.16.578.1.12.4.1.1.8116"
"""Kodeverk 8116: identifier types for persons (FNR, DNR, HNR, HPR, HER …)."""
ROLE_OID = "2.16.578.1.12.4.1.1.9034"
"""Kodeverk 9034: a health professional's role to the patient (6 = fastlege)."""


@dataclass(frozen=True, slots=True)
class Coded:
    """A KITH CV/CS value: code ``V``, display ``DN``, code system OID ``S``, original text ``OT``."""

    v: str
    dn: str | None = None
    s: str | None = None
    ot: str | None = None


@dataclass(frozen=True, slots=True)
class Ident:
    id: str
    type: str
    """HER, ENH (org.nr), HPR, FNR, DNR, HNR …"""
    oid: str | None = None
    display: str | None = None


@dataclass(slots=True)
class HealthcareProfessional:
    family_name: str | None = None
    given_name: str | None = None
    middle_name: str | None = None
    idents: list[Ident] = field(default_factory=list)
    role_to_patient: Coded | None = None
    profession: Coded | None = None
    """TypeHealthcareProfessional (kodeverk 9060: LE = lege, SP = sykepleier …)."""
    phone: str | None = None

    @property
    def name(self) -> str:
        return " ".join(x for x in (self.given_name, self.middle_name, self.family_name) if x)

    def ident(self, type_: str) -> str | None:
        return next((i.id for i in self.idents if i.type == type_), None)


@dataclass(slots=True)
class Organisation:
    """An organisation, optionally with a sub-unit (service) and a person — MsgHead's nesting."""

    name: str
    idents: list[Ident] = field(default_factory=list)
    unit: Organisation | None = None
    person: HealthcareProfessional | None = None

    def ident(self, type_: str) -> str | None:
        return next((i.id for i in self.idents if i.type == type_), None)

    @property
    def her_id(self) -> str | None:
        return self.ident("HER")

    def her_ids(self) -> list[str]:
        """Every HER-id on the path, organisation first (organisation, unit, person)."""
        out: list[str] = []
        node: Organisation | None = self
        while node is not None:
            if node.her_id:
                out.append(node.her_id)
            if node.person and node.person.ident("HER"):
                out.append(node.person.ident("HER") or "")
            node = node.unit
        return out

    @property
    def addressed_her_id(self) -> str | None:
        """The most specific HER-id: the one a message is actually addressed to."""
        ids = self.her_ids()
        return ids[-1] if ids else None


@dataclass(slots=True)
class PatientInfo:
    national_id: str | None
    """Fødselsnummer or D-nummer (11 digits)."""
    id_type: str = "FNR"
    family_name: str | None = None
    given_name: str | None = None
    middle_name: str | None = None
    birth_date: str | None = None
    sex: Coded | None = None

    @property
    def name(self) -> str:
        return " ".join(x for x in (self.given_name, self.middle_name, self.family_name) if x)


@dataclass(frozen=True, slots=True)
class ConversationRef:
    ref_to_parent: str
    ref_to_conversation: str


@dataclass(frozen=True, slots=True)
class Attachment:
    mime_type: str
    data: bytes
    description: str | None = None
    file_reference: str | None = None


@dataclass(slots=True)
class Header:
    """MsgHead ``MsgInfo``: type, id, date, conversation, sender, receiver, patient."""

    type: Coded
    msg_id: str
    gen_date: str
    sender: Organisation
    receiver: Organisation
    patient: PatientInfo | None = None
    conversation_ref: ConversationRef | None = None
    mig_version: str = "v1.2 2006-05-24"
    other_receivers: list[Organisation] = field(default_factory=list)
    """Copy receivers (``OtherReceiver`` with an organisation)."""
