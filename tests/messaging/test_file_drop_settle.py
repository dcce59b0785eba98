"""File drop: a file a sender is still writing is never read half-way — neither one that is
still changing (settle time) nor one under a temporary name waiting to be renamed into place."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from sqlalchemy import select

from interop.messaging.filedrop import poll_file_drop
from interop.messaging.runtime import kith_for
from interop.store.schema import inbound_message_table
from plo_messages.content import DialogNote, build_dialog_note
from plo_messages.model import Coded, Header, Ident, Organisation, PatientInfo
from plo_messages.msghead import local_timestamp
from tests.messaging.test_gp_flow import FNR, HER, address_book


def _message(services: Any) -> bytes:
    kith = kith_for(services.settings)
    assert kith is not None
    header = Header(
        type=Coded("DIALOG_HELSEFAGLIG", "Helsefaglig dialog"),
        msg_id="3c5d7e9f-1a2b-4c3d-8e4f-5a6b7c8d9e0f",
        gen_date=local_timestamp(),
        sender=Organisation("Kattskinnet legesenter", [Ident(HER["practice"], "HER")]),
        receiver=Organisation(
            "Fjordvik kommune",
            [Ident(HER["municipality"], "HER")],
            unit=Organisation("Oppfølgingssenteret", [Ident(HER["centre"], "HER")]),
        ),
        patient=PatientInfo(FNR, "FNR", "Danser", "Line"),
    )
    note = DialogNote(
        Coded("6", "Henvendelse om pasient", "2.16.578.1.12.4.1.1.7322"), None, "Hei."
    )
    return kith.build(header, build_dialog_note(note))


def _stored(services: Any) -> list[Any]:
    with services.engine.connect() as conn:
        return list(conn.execute(select(inbound_message_table)).all())


def test_a_file_still_being_written_is_not_read_until_it_settles(
    client: Any, services: Any, tmp_path: Path
) -> None:
    address_book(client, tmp_path)
    services.settings.file_drop_settle_seconds = 2.0
    incoming = tmp_path / "gp" / "in"
    incoming.mkdir(parents=True)
    data = _message(services)
    path = incoming / "answer.xml"
    path.write_bytes(data[: len(data) // 2])  # the sender has written half of it
    assert poll_file_drop(services) == {"settling": 1}
    assert path.exists() and _stored(services) == []
    with path.open("ab") as f:  # the sender finishes
        f.write(data[len(data) // 2 :])
    assert poll_file_drop(services) == {"settling": 1}, "just changed: not settled yet"
    past = time.time() - 5
    os.utime(path, (past, past))  # unchanged for longer than the settle time
    assert poll_file_drop(services) == {"accepted": 1}
    [row] = _stored(services)
    assert bytes(row.raw) == data and row.status == "processed"


def test_a_file_under_a_temporary_name_waits_for_its_rename(
    client: Any, services: Any, tmp_path: Path
) -> None:
    address_book(client, tmp_path)
    incoming = tmp_path / "gp" / "in"
    incoming.mkdir(parents=True)
    data = _message(services)
    for name in ("answer.xml.part", "answer.xml.tmp", ".answer.xml"):
        (incoming / name).write_bytes(data[:100])
    assert poll_file_drop(services) == {}
    (incoming / "answer.xml.tmp").write_bytes(data)
    os.replace(incoming / "answer.xml.tmp", incoming / "answer.xml")  # renamed into place
    assert poll_file_drop(services) == {"accepted": 1}
