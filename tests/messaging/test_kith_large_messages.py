"""Attachments up to the national size limit: a message whose attachment is a text node above
libxml2's 10 MB default is read (it was refused T01 before); a message above the configured
byte limit is refused unread (T99), answered to its sender when the start of it names one."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from plo_messages import KithMessages
from plo_messages.content import DialogNote, build_dialog_note
from plo_messages.model import Attachment, Coded, Header, Ident, Organisation, PatientInfo
from plo_messages.xmlsafe import TooLarge, parse_xml

MB = 1024 * 1024


@pytest.fixture(scope="module")
def kith(kith_schema_dir: Path) -> KithMessages:
    return KithMessages(kith_schema_dir)


def _message(kith: KithMessages, attachment: bytes) -> bytes:
    header = Header(
        type=Coded("DIALOG_HELSEFAGLIG", "Helsefaglig dialog"),
        msg_id="5b7c2d4e-6f80-4a1b-9c2d-3e4f5a6b7c8d",
        gen_date="2026-12-01T09:30:00",
        sender=Organisation(
            "Kattskinnet legesenter",
            [Ident("56704", "HER")],
        ),
        receiver=Organisation(
            "Alvdal kommune",
            [Ident("99387", "HER")],
            unit=Organisation("Hjemmesykepleien", [Ident("5078", "HER")]),
        ),
        patient=PatientInfo("13116900216", "FNR", "Danser", "Line"),
    )
    note = DialogNote(
        Coded("6", "Henvendelse om pasient", "2.16.578.1.12.4.1.1.7322"), None, "Røntgenbilder."
    )
    return kith.build(
        header, build_dialog_note(note), [Attachment("application/pdf", attachment, "Bilder")]
    )


def test_an_11_mb_attachment_is_read_whole(kith: KithMessages) -> None:
    pdf = b"%PDF-1.4\n" + os.urandom(11 * MB)
    data = _message(kith, pdf)
    assert len(data) > 14 * MB  # base64: one text node of ~15 MB
    got = kith.receive(data, own_her_ids={"99387", "5078"})
    assert got.outcome == "accepted", got.errors
    assert got.attachments[0].data == pdf


def test_above_the_byte_limit_is_refused_unread_and_answered(
    kith_schema_dir: Path, kith: KithMessages
) -> None:
    data = _message(kith, b"%PDF-1.4\n" + os.urandom(2 * MB))
    small = KithMessages(kith_schema_dir, max_bytes=1 * MB)
    with pytest.raises(TooLarge):
        parse_xml(data, max_bytes=1 * MB)
    got = small.receive(data, own_her_ids={"99387", "5078"})
    assert [e.v for e in got.errors] == ["T99"] and got.outcome == "rejected"
    assert [o.addressed_her_id for o in got.answer_from] == ["5078"]
    assert got.header is not None and got.header.sender.her_ids() == ["56704"]
