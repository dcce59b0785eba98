"""KITH messages: every message we build validates against the official schemas; every valid
conformance sample parses into the right domain object; every broken one gets the AppRec error
the national receive checklist prescribes."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from plo_messages import InvalidOutgoingMessage, KithMessages
from plo_messages.apprec import AppRec, error
from plo_messages.content import (
    DialogNote,
    HelseopplysningerTilLege,
    JournalText,
    MedisinskeOpplysninger,
    PloMessage,
    build_dialog_note,
    build_helseopplysninger_til_lege,
)
from plo_messages.model import (
    Attachment,
    Coded,
    ConversationRef,
    Header,
    HealthcareProfessional,
    Ident,
    Organisation,
    PatientInfo,
)
from plo_messages.xmlsafe import NotWellFormed, parse_xml

KITH = "kith"


@pytest.fixture(scope="module")
def kith(kith_schema_dir: Path) -> KithMessages:
    return KithMessages(kith_schema_dir)


@pytest.fixture(scope="module")
def kith_samples(conformance_dir: Path) -> Path:
    return conformance_dir / KITH


def _header(type_code: str = "HELSEOPPLYSNINGER_LEGE", **kw: object) -> Header:
    return Header(
        type=Coded(type_code, "Helseopplysninger til lege"),
        msg_id=str(kw.get("msg_id", "7d6f3a52-8c8e-4f7b-9d55-0a3c1f1e2b10")),
        gen_date="2026-11-29T10:15:00",
        sender=Organisation(
            "Fjordvik kommune",
            [Ident("99387", "HER")],
            unit=Organisation("Oppfølgingssenteret", [Ident("5078", "HER")]),
        ),
        receiver=Organisation(
            "Kattskinnet legesenter",
            [Ident("91096", "HER")],
            person=HealthcareProfessional("September", "August", idents=[Ident("91100", "HER")]),
        ),
        patient=PatientInfo("13116900216", "FNR", "Danser", "Line"),
        conversation_ref=kw.get("conversation_ref"),  # type: ignore[arg-type]
    )


def _plo(content_type: str = "3") -> HelseopplysningerTilLege:
    return HelseopplysningerTilLege(
        Coded(content_type, {"3": "Ønske om legevurdering", "2": "Statusrapport"}[content_type]),
        [
            JournalText(
                "Rødt avvik: SpO2 86 % 29.11.2026 kl. 08:15 (grønn 92–100, gul 88–91).",
                Coded("PROB", "Aktuell problemstilling", "2.16.578.1.12.4.1.1.9142"),
            ),
            JournalText(
                "SpO2 siste 7 dager: 93, 92, 90, 89, 86 %.",
                Coded("FU", "Funn og undersøkelsesresultat", "2.16.578.1.12.4.1.1.9142"),
            ),
        ],
        responsible=HealthcareProfessional(
            "Omsorg",
            "Gunn",
            idents=[Ident("9144889", "HPR")],
            profession=Coded("SP", "Sykepleier"),
        ),
        approved_date="2026-11-29",
    )


def test_built_plo_messages_validate_and_read_back(kith: KithMessages) -> None:
    pdf = b"%PDF-1.4\n% trend chart\n"
    for content_type in ("3", "2"):
        data = kith.build(
            _header(),
            build_helseopplysninger_til_lege(_plo(content_type)),
            [Attachment("application/pdf", pdf, "Trend")],
        )
        assert data.startswith(b"<?xml")
        back = kith.read(data)
        assert back.outcome == "accepted", back.errors
        assert back.header is not None and back.header.msg_id.startswith("7d6f3a52")
        assert back.header.receiver.addressed_her_id == "91100"
        assert back.header.sender.her_ids() == ["99387", "5078"]
        assert back.header.patient and back.header.patient.national_id == "13116900216"
        assert isinstance(back.content, HelseopplysningerTilLege)
        assert back.content.content_type.v == content_type
        assert [n.heading.v for n in back.content.notes if n.heading] == ["PROB", "FU"]
        assert back.attachments == [Attachment("application/pdf", pdf, "Trend")]


def test_cancellation_and_conversation_ref(kith: KithMessages) -> None:
    plo = _plo()
    plo.status = "C"
    ref = ConversationRef(
        "11111111-1111-4111-8111-111111111111", "22222222-2222-4222-8222-222222222222"
    )
    data = kith.build(_header(conversation_ref=ref), build_helseopplysninger_til_lege(plo))
    back = kith.read(data)
    assert back.header and back.header.conversation_ref == ref
    assert isinstance(back.content, HelseopplysningerTilLege) and back.content.status == "C"


def test_dialog_note_validates_and_reads_back(kith: KithMessages) -> None:
    note = DialogNote(
        Coded("6", "Henvendelse om pasient", "2.16.578.1.12.4.1.1.7322"),
        "Spørsmål om egenbehandlingsplan",
        "Pasienten har hatt tre gule SpO2-målinger. Skal grensene justeres?",
    )
    data = kith.build(_header("DIALOG_HELSEFAGLIG"), build_dialog_note(note))
    back = kith.read(data)
    assert back.outcome == "accepted"
    assert isinstance(back.content, list) and back.content[0].text == note.text


@pytest.mark.parametrize("version", ["1.0", "1.1"])
@pytest.mark.parametrize("status,errors", [("1", []), ("2", ["T02"]), ("2", ["E21"])])
def test_apprec_builds_validates_and_parses(
    kith: KithMessages, version: str, status: str, errors: list[str]
) -> None:
    rec = AppRec(
        version=version,
        status=status,
        original_msg_id="7d6f3a52-8c8e-4f7b-9d55-0a3c1f1e2b10",
        original_type=Coded("HELSEOPPLYSNINGER_LEGE", "Helseopplysninger til lege"),
        original_issue_date="2026-11-29T10:15:00",
        sender=_header().receiver,
        receiver=_header().sender,
        id="9a0d4b4e-1c61-4a55-8f5c-7b8e2e0f3a11",
        gen_date="2026-11-29T10:16:00",
        errors=[error(e, "detail") for e in errors],
    )
    data = kith.build_apprec(rec, version)
    back = kith.read(data)
    assert back.outcome == "apprec" and back.apprec is not None
    assert back.apprec.version == version
    assert back.apprec.status == status and [e.v for e in back.apprec.errors] == errors
    assert back.apprec.original_msg_id == rec.original_msg_id
    assert back.apprec.sender.her_id == "91096"


def test_an_invalid_outgoing_message_never_leaves(kith: KithMessages) -> None:
    header = _header()
    header.msg_id = "x"
    plo = _plo()
    plo.content_type = Coded("3")
    payload = build_helseopplysninger_til_lege(plo)
    payload.find("{*}InformasjonOmForsendelsen").clear()  # type: ignore[union-attr]
    with pytest.raises(InvalidOutgoingMessage, match="Forsendelsesstatus"):
        kith.build(header, payload)


# --- the conformance samples -----------------------------------------------------------------

VALID = {
    "plo-1.6/Helseopplysninger_til_lege_v1-6_Ny.xml": (
        HelseopplysningerTilLege,
        "HELSEOPPLYSNINGER_LEGE",
    ),
    "plo-1.6/Helseopplysninger_til_lege_v1-6_Kansellering.xml": (
        HelseopplysningerTilLege,
        "HELSEOPPLYSNINGER_LEGE",
    ),
    "plo-1.5/Helseopplysninger_til_lege_v1-5_Ny.xml": (
        HelseopplysningerTilLege,
        "HELSEOPPLYSNINGER_LEGE",
    ),
    "plo-1.6/Medisinske_opplysninger_v1-6_Ny.xml": (
        MedisinskeOpplysninger,
        "MEDISINSKE_OPPLYSNINGER",
    ),
    "plo-1.6/Orientering_om_tjenestetilbud_v1-6_Ny.xml": (PloMessage, "ORIENTERING_TJENESTETILBUD"),
    "plo-1.6/Innleggelsesrapport_v1-6_Ny.xml": (PloMessage, "INNLEGGELSESRAPPORT"),
    "plo-1.6/Utskrivningsrapport_v1-6_Endring.xml": (PloMessage, "UTSKRIVNINGSRAPPORT"),
    "plo-1.6/Pasientlogistikk_Innlagt_pasient_v1-6_Ny.xml": (PloMessage, "LOG_INNLAGT"),
    "plo-1.6/Helseopplysninger_Varsel_om_innlagt_pasient_v1-6_Ny.xml": (
        PloMessage,
        "HELSEOPPL_SOKNAD",
    ),
    "dialogmelding-1.0/Dialogmelding_foresporsel_PLO_v1-0.xml": (list, "DIALOG_FORESPORSEL"),
    "dialogmelding-1.0/Dialogmelding_svar_foresporsel_PLO_v1-0.xml": (list, "DIALOG_SVAR"),
    "dialogmelding-1.0/Dialogmelding_avvik_v1-0.xml": (list, "DIALOG_AVVIK"),
    "dialogmelding-1.0/Case2_1-Dialogmelding-Foresporsel-Konsultasjon_fra_fastlegen.xml": (
        list,
        "DIALOG_FORESPORSEL",
    ),
    "dialogmelding-1.0-acceptance-tests/Case1.xml": (list, "DIALOG_FORESPORSEL"),
    "dialogmelding-1.0-acceptance-tests/Case3.xml": (list, "DIALOG_NOTAT"),
    "dialogmelding-1.0-acceptance-tests/Case1-14a.xml": (list, "DIALOG_FORESPORSEL"),
    "dialogmelding-1.1/Helsefaglig_dialog.xml": (list, "DIALOG_HELSEFAGLIG"),
}


@pytest.mark.parametrize("name", sorted(VALID))
def test_every_valid_sample_parses_into_its_domain_object(
    kith: KithMessages, kith_samples: Path, name: str
) -> None:
    cls, type_code = VALID[name]
    got = kith.read((kith_samples / name).read_bytes())
    assert got.outcome == "accepted", got.errors
    assert got.header is not None and got.header.type.v == type_code
    assert got.header.msg_id and (
        got.header.sender.addressed_her_id or got.header.sender.ident("ENH")
    )
    assert isinstance(got.content, cls)
    if isinstance(got.content, list):
        assert got.content and all(n.theme_code.v for n in got.content)


def test_sample_contents_are_read_faithfully(kith: KithMessages, kith_samples: Path) -> None:
    plo = kith.read((kith_samples / "plo-1.6/Helseopplysninger_til_lege_v1-6_Ny.xml").read_bytes())
    assert isinstance(plo.content, HelseopplysningerTilLege)
    assert plo.content.content_type.v == "3" and plo.content.status == "N"
    assert plo.content.notes[0].heading == Coded(
        "PROB", "Aktuell problemstilling", "2.16.578.1.12.4.1.1.9142"
    )
    assert plo.content.responsible and plo.content.responsible.ident("HPR") == "999888"
    assert plo.header and plo.header.patient and plo.header.patient.name == "Line Danser"
    assert plo.header.receiver.addressed_her_id == "91100"
    cancel = kith.read(
        (kith_samples / "plo-1.6/Helseopplysninger_til_lege_v1-6_Kansellering.xml").read_bytes()
    )
    assert isinstance(cancel.content, HelseopplysningerTilLege) and cancel.content.status == "C"
    med = kith.read((kith_samples / "plo-1.6/Medisinske_opplysninger_v1-6_Ny.xml").read_bytes())
    assert isinstance(med.content, MedisinskeOpplysninger)
    assert [d.v for d in med.content.diagnoses][:2] == ["K77", "L89"]
    assert "Burinex: 2 tabl kl 08 og 13" in med.content.medications
    svar = kith.read(
        (
            kith_samples / "dialogmelding-1.0/Dialogmelding_svar_foresporsel_PLO_v1-0.xml"
        ).read_bytes()
    )
    assert svar.header and svar.header.conversation_ref is not None
    assert isinstance(svar.content, list) and svar.content[0].theme_code.v == "5"
    assert svar.content[0].question and "fornyelse av resept" in svar.content[0].question
    dialog = kith.read((kith_samples / "dialogmelding-1.1/Helsefaglig_dialog.xml").read_bytes())
    assert dialog.attachments[0].mime_type == "application/pdf"
    assert dialog.attachments[0].data.startswith(b"%PDF")


@pytest.mark.parametrize(
    "name,status",
    [
        ("apprec/MetadataTests_Apprec10.xml", "1"),
        ("apprec/MetadataTests_Apprec11.xml", "1"),
        ("apprec/apprec-eksempel.xml", "3"),
        ("apprec/apprecErrorUkjentMottaker.xml", "2"),
    ],
)
def test_apprec_samples(kith: KithMessages, kith_samples: Path, name: str, status: str) -> None:
    got = kith.read((kith_samples / name).read_bytes())
    assert got.outcome == "apprec" and got.apprec is not None
    assert got.apprec.status == status and got.apprec.original_msg_id
    if status == "2":  # NAV's EI_fellesformat wrapper around an E21 rejection
        assert [e.v for e in got.apprec.errors] == ["E21"]
    if status == "3":
        assert len(got.apprec.errors) == 5 and got.apprec.errors[0].ot == "3"


# --- the receive checklist on the deliberately broken samples ---------------------------------


def _receive(kith: KithMessages, data: bytes, **kw: object):  # type: ignore[no-untyped-def]
    """Receive as the system the message is addressed to (unless told otherwise)."""
    own = kw.pop("own", None)
    if own is None:
        head = kith.read(data).header
        own = {head.receiver.addressed_her_id} if head else set()
    return kith.receive(data, own_her_ids=own, **kw)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "name,code,answered",
    [
        ("dialogmelding-1.0-acceptance-tests/Case1-2.xml", "T01", True),  # a closing tag removed
        ("dialogmelding-1.0-acceptance-tests/Case1-16b.xml", "T02", True),  # empty <Sender/>
        ("dialogmelding-1.0-acceptance-tests/Case1-17b.xml", "T02", True),  # Ident without Id
        ("dialogmelding-1.1/MetadataTestsDialogmelding11.xml", "T02", True),  # misspelt xsi ns
        ("dialogmelding-1.0-acceptance-tests/Case1-14a.xml", "E30", True),  # no patient ident
        ("plo-1.6/Innleggelsesrapport_v1-6_Ny.xml", "T10", True),  # a type we do not take
        ("ebxml/ebxml-eksempel.xml", "T10", False),  # a transport envelope, not a message
    ],
)
def test_broken_samples_get_the_right_apprec_error(
    kith: KithMessages, kith_samples: Path, name: str, code: str, answered: bool
) -> None:
    data = (kith_samples / name).read_bytes()
    own = {"369767"} if name.endswith(("Case1-2.xml", "Case1-16b.xml", "Case1-17b.xml")) else None
    got = _receive(kith, data, own=own)
    assert [e.v for e in got.errors] == [code]
    assert got.outcome != "accepted"
    assert bool(got.answer_from) is answered


def test_checklist_addressing_duplicates_and_patient(
    kith: KithMessages, kith_samples: Path
) -> None:
    data = (kith_samples / "dialogmelding-1.1/Helsefaglig_dialog.xml").read_bytes()
    ok = _receive(kith, data)
    assert ok.outcome == "accepted" and [o.addressed_her_id for o in ok.answer_from] == ["90998"]
    other = kith.receive(data, own_her_ids={"12345"})
    assert [e.v for e in other.errors] == ["E21"] and other.status == "2"
    dup = kith.receive(data, own_her_ids={"90998"}, seen=lambda msg_id: True)
    assert dup.outcome == "duplicate" and not dup.answer_from
    unknown = kith.receive(data, own_her_ids={"90998"}, patient_check=lambda p: "E35")
    assert [e.v for e in unknown.errors] == ["E35"] and unknown.answer_from
    wrong = data.replace(b"13116900216", b"13116900217")
    assert [e.v for e in _receive(kith, wrong).errors] == ["E31"]


@pytest.mark.parametrize(
    "doc",
    [
        b'<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;">]><MsgHead>&lol2;</MsgHead>',
        b'<?xml version="1.0"?><!DOCTYPE r [<!ENTITY x SYSTEM "file:///etc/passwd">]><r>&x;</r>',
        b"",
        b"not xml at all",
    ],
)
def test_hostile_or_garbage_input_is_t01(kith: KithMessages, doc: bytes) -> None:
    with pytest.raises(NotWellFormed):
        parse_xml(doc)
    got = kith.receive(doc, own_her_ids={"1"})
    assert [e.v for e in got.errors] == ["T01"] and not got.answer_from


@settings(max_examples=60, deadline=None)
@given(st.binary(max_size=300))
def test_receive_never_crashes_on_arbitrary_bytes(data: bytes) -> None:
    from plo_messages.schemas import SchemaSet
    from tests.conftest import KITH_SCHEMAS

    kith = _kith_cache(KITH_SCHEMAS)
    got = kith.receive(data, own_her_ids={"1"})
    assert got.outcome in ("unreadable", "rejected") and got.errors
    assert SchemaSet  # the module imports cleanly


_CACHE: dict[Path, KithMessages] = {}


def _kith_cache(path: Path) -> KithMessages:
    if path not in _CACHE:
        _CACHE[path] = KithMessages(path)
    return _CACHE[path]


@settings(max_examples=40, deadline=None)
@given(
    text=st.text(min_size=1, max_size=400).filter(lambda s: s.strip()),
    family=st.text(
        st.characters(codec="utf-8", exclude_categories=("Cs", "Cc")), min_size=1, max_size=40
    ),
)
def test_any_text_round_trips_through_a_valid_message(text: str, family: str) -> None:
    from tests.conftest import KITH_SCHEMAS

    kith = _kith_cache(KITH_SCHEMAS)
    text = "".join(
        ch
        for ch in text
        if ch in "\t\n\r"
        or (ord(ch) >= 0x20 and ch not in "\ufffe\uffff" and not 0xD800 <= ord(ch) <= 0xDFFF)
    )
    if not text.strip():
        return
    header = _header()
    assert header.patient is not None
    header.patient.family_name = family
    plo = _plo()
    plo.notes = [JournalText(text)]
    back = kith.read(kith.build(header, build_helseopplysninger_til_lege(plo)))
    assert isinstance(back.content, HelseopplysningerTilLege)
    assert back.header and back.header.patient
    assert back.content.notes[0].text == text.strip()
