"""The KITH receive acceptance test for PLO *Medisinske opplysninger* v1.5 (the catalogue's
cases in ``corpus/kith/sarepta/mo-v1.5``), run as the catalogue describes them.

The catalogue (``Akseptansetest-mottak-PLO-Medisinske_opplysninger-v1_5``) sets the receiving
system up as the messages' receiver, Alvdal kommune (HER-id 99387) with its nursing service
(HER-id 5078), with the patient Roland Gundersen (15076500565) registered. Each case is loaded
on its own unless the catalogue gives an order (1-20a then 1-20b; case 1 then 1-21). The
verdicts: the catalogue's criterion per case, with the AppRec error codes of kodeverk 8221.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from plo_messages import KithMessages
from plo_messages.apprec import AppRec
from plo_messages.model import Coded, PatientInfo
from plo_messages.msghead import local_timestamp
from plo_messages.receive import Received
from plo_messages.xmlsafe import parse_xml
from tests.conftest import SHARED

CATALOGUE = SHARED / "corpus" / "kith" / "sarepta" / "mo-v1.5"
OURS = frozenset({"99387", "5078"})
"""Alvdal kommune and its nursing service, as the catalogue's messages address them."""
KNOWN_PATIENT = "15076500565"


def case(name: str) -> bytes:
    if name == "1":
        return (CATALOGUE / "Case1_2-Svar-Medisinske_opplysninger-v1_5.xml").read_bytes()
    if name == "1-21":
        return (CATALOGUE / "Case1-21-Svar-Medisinske_opplysninger-v1_5.xml").read_bytes()
    return (CATALOGUE / f"Case{name}-Medisinske_opplysninger-v1_5.xml").read_bytes()


@pytest.fixture(scope="module")
def kith(kith_schema_dir: Path) -> KithMessages:
    return KithMessages(kith_schema_dir)


def receive(
    kith: KithMessages, data: bytes, own: frozenset[str] = OURS, seen: set[str] | None = None
) -> Received:
    taken = seen if seen is not None else set()

    def patient_check(p: PatientInfo) -> str | None:
        return None if p.national_id == KNOWN_PATIENT else "E35"

    got = kith.receive(
        data, own_her_ids=own, seen=lambda m: m in taken, patient_check=patient_check
    )
    if got.header is not None and got.outcome != "duplicate":
        taken.add(got.header.msg_id)
    return got


def apprecs(kith: KithMessages, got: Received) -> list[AppRec]:
    """The AppRecs the receiver sends for ``got``, built and schema-validated, read back."""
    assert got.header is not None
    out = []
    for own, role in got.answers():
        rec = AppRec(
            version=got.apprec_version,
            status=got.status,
            original_msg_id=got.header.msg_id,
            original_type=Coded(got.header.type.v, got.header.type.dn),
            original_issue_date=got.header.gen_date,
            sender=own,
            receiver=got.header.sender,
            id=f"apprec-{len(out)}",
            gen_date=local_timestamp(),
            errors=got.errors,
            sender_role=role,
        )
        back = kith.read(kith.build_apprec(rec, got.apprec_version)).apprec
        assert back is not None
        out.append(back)
    return out


def test_case_1_is_taken_and_answered_ok_by_the_nursing_service(kith: KithMessages) -> None:
    got = receive(kith, case("1"))
    assert got.outcome == "accepted" and not got.errors
    [ack] = apprecs(kith, got)
    assert ack.status == "1" and ack.sender.addressed_her_id == "5078"
    assert ack.receiver.her_ids() == ["56704", "369767"]


def test_case_1_18_unknown_service_under_our_organisation_is_rejected_e21(
    kith: KithMessages,
) -> None:
    """Criterion 18: the right organisation, an unknown service (a local id, no HER-id)."""
    got = receive(kith, case("1-18"))
    assert got.outcome == "rejected" and [e.v for e in got.errors] == ["E21"]
    [ack] = apprecs(kith, got)
    assert ack.status == "2" and [e.v for e in ack.errors] == ["E21"]
    # answered by our organisation, never in the name of the service that does not exist
    assert ack.sender.her_ids() == ["99387"] and ack.sender.unit is None


def test_an_unknown_her_id_service_under_our_organisation_is_rejected_e21(
    kith: KithMessages,
) -> None:
    data = case("1").replace(b"<Id>5078</Id>", b"<Id>5079</Id>")
    got = receive(kith, data)
    assert [e.v for e in got.errors] == ["E21"]
    [ack] = apprecs(kith, got)
    assert ack.sender.her_ids() == ["99387"]


def test_case_1_19_as_copy_receiver_answers_with_role_cop(kith: KithMessages) -> None:
    """Criterion 19: the message reaches us only as copy receiver (``OtherReceiver``)."""
    got = receive(kith, case("1-19"))
    assert got.outcome == "accepted"
    assert [(o.addressed_her_id, role) for o, role in got.answers()] == [("5078", "copy")]
    [ack] = apprecs(kith, got)
    assert ack.sender_role == "copy" and ack.status == "1"
    xml = kith.build_apprec(
        AppRec(
            "1.0",
            "1",
            ack.original_msg_id,
            ack.original_type,
            ack.original_issue_date,
            ack.sender,
            ack.receiver,
            "x",
            local_timestamp(),
            sender_role="copy",
        ),
        "1.0",
    )
    role = parse_xml(xml).find("{*}Sender/{*}Role")
    assert role is not None and (role.get("V"), role.get("DN")) == ("COP", "Kopimottaker")


def test_case_1_20_receiver_and_copy_receiver_here_answer_once_each_then_duplicate(
    kith: KithMessages,
) -> None:
    """Criterion 20: both receivers registered here (so 9999 and the GP's HER-id are ours)."""
    own = OURS | {"9999", "369767"}
    seen: set[str] = set()
    first = receive(kith, case("1-20a"), own, seen)
    assert first.outcome == "accepted"
    assert [role for _o, role in first.answers()] == ["primary", "copy"]
    second = receive(kith, case("1-20b"), own, seen)
    assert second.outcome == "duplicate" and not second.answer_from


def test_case_1_2_not_well_formed_is_answered_t01_to_the_recovered_sender(
    kith: KithMessages,
) -> None:
    """Criterion 2: a syntax error (an end tag removed in the sender); sender and MsgId can be
    recovered, so the AppRec *Avvist* T01 goes back to that sender."""
    got = receive(kith, case("1-2"))
    assert [e.v for e in got.errors] == ["T01"] and got.outcome == "rejected"
    [ack] = apprecs(kith, got)
    assert ack.status == "2" and [e.v for e in ack.errors] == ["T01"]
    assert ack.receiver.her_ids() == ["56704", "369767"]
    assert ack.sender.addressed_her_id == "5078"
    assert ack.original_msg_id == "0e9a00f0-df38-11de-8a39-0800200c9a66"


def test_a_message_for_another_organisation_gets_no_apprec_in_its_name(
    kith: KithMessages,
) -> None:
    """The catalogue's request (case 1_1) goes from the municipality to the GP: neither
    level of its receiver is ours, so nobody here answers it."""
    data = (
        CATALOGUE / "Case1_1-Dialogmelding-Foresporsel_medisinske_opplysninger.xml"
    ).read_bytes()
    got = receive(kith, data)
    assert got.outcome == "rejected" and not got.answer_from
    # the same for a broken one: never a T01 in another organisation's name
    broken = receive(kith, case("1-2"), own=frozenset({"12345"}))
    assert [e.v for e in broken.errors] == ["T01"] and not broken.answer_from


@pytest.mark.parametrize(
    "name,code",
    [
        ("1-11a", "E30"),  # patient's name and number emptied
        ("1-12", "E35"),  # a patient not registered here
        ("1-14a", "E30"),  # fødselsnummer removed
        ("1-14b", "E31"),  # "adhd" instead of a fødselsnummer
        ("1-13a", "X99"),  # the sender's name, org.nr and HER-id emptied
        ("1-13b", "T02"),  # everything under the sender removed (schema-invalid)
        ("1-15a", "T02"),  # mandatory Forsendelsesstatus removed
        ("1-15b", "T02"),  # mandatory SvarPaaForesporsel emptied
    ],
)
def test_catalogue_error_cases_are_rejected_with_their_code(
    kith: KithMessages, name: str, code: str
) -> None:
    got = receive(kith, case(name))
    assert [e.v for e in got.errors] == [code]
    [ack] = apprecs(kith, got)
    assert ack.status == "2" and ack.sender.addressed_her_id == "5078"
