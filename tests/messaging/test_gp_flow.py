"""End to end: a red measurement → PLO *Ønske om legevurdering* to the patient's GP (routed by
the address book), delivered by file drop, closed by the GP's AppRec; the GP's answer becomes
a Communication linked to the Task; every received message is acknowledged once."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

from sqlalchemy import select

from adapters.base import FNR_OID, LOINC, AdapterResult, Code, IngestMeta, Measurement, PatientRef
from interop.identifiers import HERID_OID, HPR_OID, ORGNR_OID, generate_hpr, generate_orgnr
from interop.ingest.pipeline import IngestPipeline
from interop.messaging.addressbook import TRANSPORT_SYSTEM
from interop.messaging.filedrop import poll_file_drop
from interop.messaging.runtime import kith_for
from interop.national.wiring import default_transports
from interop.routing.outbox import Outbox
from interop.routing.worker import DeliveryWorker
from interop.store.schema import outbox_table
from plo_messages.apprec import AppRec, error
from plo_messages.content import DialogNote, HelseopplysningerTilLege, build_dialog_note
from plo_messages.model import Coded, ConversationRef, Header, Ident, Organisation, PatientInfo
from plo_messages.msghead import local_timestamp

FNR = "13116900216"
HER = {"municipality": "80001", "centre": "80002", "practice": "80010", "gp": "80011"}


def _post(client, resource: dict[str, Any]) -> str:  # type: ignore[no-untyped-def]
    r = client.post(f"/fhir/{resource['resourceType']}", json=resource)
    assert r.status_code == 201, r.text
    return str(r.json()["id"])


def address_book(client, folder: Path, *, with_gp: bool = True) -> dict[str, str]:  # type: ignore[no-untyped-def]
    rng = random.Random(7)
    ids: dict[str, str] = {}

    def org(key: str, name: str, part_of: str | None = None) -> str:
        res: dict[str, Any] = {
            "resourceType": "Organization",
            "identifier": [
                {"system": ORGNR_OID, "value": generate_orgnr(rng)},
                {"system": HERID_OID, "value": HER[key]},
            ],
            "name": name,
        }
        if part_of:
            res["partOf"] = {"reference": f"Organization/{part_of}"}
        ids[key] = _post(client, res)
        return ids[key]

    org("municipality", "Fjordvik kommune")
    org("centre", "Oppfølgingssenteret", ids["municipality"])
    org("practice", "Kattskinnet legesenter")
    ids["gp-endpoint"] = _post(
        client,
        {
            "resourceType": "Endpoint",
            "status": "active",
            "connectionType": {"system": TRANSPORT_SYSTEM, "code": "file-drop"},
            "managingOrganization": {"reference": f"Organization/{ids['practice']}"},
            "payloadType": [{"text": "PLO"}],
            "address": (folder / "gp").as_uri(),
        },
    )
    ids["practitioner"] = _post(
        client,
        {
            "resourceType": "Practitioner",
            "identifier": [{"system": HPR_OID, "value": generate_hpr(rng)}],
            "name": [{"family": "Lin", "given": ["Rita"]}],
        },
    )
    ids["role"] = _post(
        client,
        {
            "resourceType": "PractitionerRole",
            "identifier": [{"system": HERID_OID, "value": HER["gp"]}],
            "practitioner": {"reference": f"Practitioner/{ids['practitioner']}"},
            "organization": {"reference": f"Organization/{ids['practice']}"},
            "endpoint": [{"reference": f"Endpoint/{ids['gp-endpoint']}"}],
        },
    )
    patient: dict[str, Any] = {
        "resourceType": "Patient",
        "identifier": [{"system": FNR_OID, "value": FNR}],
        "name": [{"family": "Danser", "given": ["Line"]}],
        "managingOrganization": {"reference": f"Organization/{ids['centre']}"},
    }
    if with_gp:
        patient["generalPractitioner"] = [{"reference": f"PractitionerRole/{ids['role']}"}]
    ids["patient"] = _post(client, patient)
    return ids


def _heart_rate(value: str, minutes_ago: float) -> Measurement:
    return Measurement(
        Code(LOINC, "8867-4"),
        Decimal(value),
        "/min",
        datetime.now(UTC) - timedelta(minutes=minutes_ago),
        PatientRef(FNR_OID, FNR),
        f"hr {minutes_ago}",
    )


def _ingest(services, *items: Measurement) -> None:  # type: ignore[no-untyped-def]
    IngestPipeline(services).ingest_result(
        "test", AdapterResult(measurements=list(items)), IngestMeta(source="test")
    )


def _outbox(services) -> list[Any]:  # type: ignore[no-untyped-def]
    with services.engine.connect() as conn:
        return list(conn.execute(select(outbox_table).order_by(outbox_table.c.seq)).all())


def test_red_measurement_reaches_the_gp_and_the_answer_comes_back(
    client, services, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    ids = address_book(client, tmp_path)
    kith = kith_for(services.settings)
    assert kith is not None
    _ingest(services, _heart_rate("72", 30), _heart_rate("150", 20))

    [row] = _outbox(services)
    assert row.kind == "plo-helseopplysninger-lege" and row.transport == "file-drop"
    assert row.destination == f"Endpoint/{ids['gp-endpoint']}" and row.expects_apprec
    assert row.focus.startswith("Task/") and row.patient_id == ids["patient"]
    sent = kith.read(bytes(row.payload))
    assert sent.outcome == "accepted" and sent.header is not None
    assert sent.header.msg_id == row.msg_id
    assert sent.header.receiver.addressed_her_id == HER["gp"]
    assert sent.header.receiver.her_id == HER["practice"]
    assert sent.header.sender.her_ids() == [HER["municipality"], HER["centre"]]
    assert sent.header.patient and sent.header.patient.national_id == FNR
    assert isinstance(sent.content, HelseopplysningerTilLege)
    assert sent.content.content_type.v == "3"
    assert "Rødt avvik" in sent.content.notes[0].text and "150" in sent.content.notes[0].text
    assert sent.attachments[0].mime_type == "application/pdf"
    assert sent.attachments[0].data.startswith(b"%PDF-1.4")

    # another red value on the same open Task: no second message
    _ingest(services, _heart_rate("155", 10))
    assert len(_outbox(services)) == 1

    # the worker drops the file in <folder>/out/
    DeliveryWorker(Outbox(services.engine), default_transports()).run_once()
    out = tmp_path / "gp" / "out" / f"{row.msg_id}.xml"
    assert out.read_bytes() == bytes(row.payload)
    assert _outbox(services)[0].status == "sent"

    # the GP system answers with an AppRec OK in <folder>/in/
    gp = sent.header.receiver
    centre = sent.header.sender
    incoming = tmp_path / "gp" / "in"
    incoming.mkdir(parents=True)
    apprec = AppRec(
        version="1.1",
        status="1",
        original_msg_id=row.msg_id,
        original_type=sent.header.type,
        original_issue_date=sent.header.gen_date,
        sender=gp,
        receiver=centre,
        id="5d2b7e0c-0d5e-4d36-9a53-1f7c3d0b2a10",
        gen_date=local_timestamp(),
    )
    (incoming / "apprec.xml").write_bytes(kith.build_apprec(apprec, "1.1"))
    assert poll_file_drop(services) == {"apprec": 1}
    assert _outbox(services)[0].status == "apprec-ok"
    assert (incoming / "processed" / "apprec.xml").exists()

    # the GP answers the question with a Dialogmelding in the same conversation
    answer = build_dialog_note(
        DialogNote(
            Coded("6", "Henvendelse om pasient", "2.16.578.1.12.4.1.1.7322"),
            "Svar på ønske om legevurdering",
            "Øk Burinex til 2 mg i tre dager, ny kontroll fredag.",
        )
    )
    header = Header(
        type=Coded("DIALOG_HELSEFAGLIG", "Helsefaglig dialog"),
        msg_id="6f0f2bb4-5a89-4a53-8b0e-1d4f1f3f0c22",
        gen_date=local_timestamp(),
        sender=gp,
        receiver=centre,
        patient=PatientInfo(FNR, "FNR", "Danser", "Line"),
        conversation_ref=ConversationRef(row.msg_id, row.msg_id),
    )
    data = kith.build(header, answer)
    (incoming / "answer.xml").write_bytes(data)
    assert poll_file_drop(services) == {"accepted": 1}
    comms = client.get("/fhir/Communication", params={"patient": ids["patient"]}).json()
    [comm] = [e["resource"] for e in comms["entry"]]
    assert comm["basedOn"] == [{"reference": row.focus}]
    assert "Øk Burinex" in comm["payload"][0]["contentString"]
    assert comm["identifier"][0]["value"] == header.msg_id
    task = client.get(f"/fhir/{row.focus}").json()
    assert task["businessStatus"]["text"] == "Svar fra lege mottatt"
    assert task["status"] != "completed"  # a person completes it
    # one AppRec OK back to the GP's Endpoint
    apprecs = [r for r in _outbox(services) if r.kind == "apprec"]
    assert len(apprecs) == 1 and apprecs[0].destination == f"Endpoint/{ids['gp-endpoint']}"
    back = kith.read(bytes(apprecs[0].payload))
    assert back.apprec and back.apprec.status == "1"
    assert back.apprec.original_msg_id == header.msg_id
    assert back.apprec.sender.addressed_her_id == HER["centre"]

    # the same message again: ignored, no second AppRec, no second Communication
    (incoming / "again.xml").write_bytes(data)
    assert poll_file_drop(services) == {"duplicate": 1}
    assert len([r for r in _outbox(services) if r.kind == "apprec"]) == 1

    # a message for somebody else: kept as rejected, but no AppRec in another organisation's name
    other = Header(
        type=header.type,
        msg_id="0c9f6d1e-4f0a-4f43-9c52-7b1b0a3e9d33",
        gen_date=header.gen_date,
        sender=gp,
        receiver=type(centre)("Et annet sted", [type(gp.idents[0])("99999", "HER")]),
        patient=header.patient,
    )
    (incoming / "other.xml").write_bytes(kith.build(other, answer))
    assert poll_file_drop(services) == {"rejected": 1}
    assert len([r for r in _outbox(services) if r.kind == "apprec"]) == 1

    # unreadable bytes: T01 cannot be addressed; kept for an operator, the file moves on
    (incoming / "garbage.xml").write_bytes(b"<MsgHead><oops>")
    assert poll_file_drop(services) == {"unreadable": 1}

    # the message store lists what was sent for the patient
    listed = client.get("/api/v1/messages", params={"patient": FNR}).json()
    assert any(m["msgId"] == row.msg_id and m["status"] == "apprec-ok" for m in listed)
    assert error  # imported for the AppRec codes above


def test_a_patient_without_a_gp_is_not_silently_dropped(client, services, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    address_book(client, tmp_path, with_gp=False)
    _ingest(services, _heart_rate("150", 5))
    [row] = _outbox(services)
    assert row.status == "dead" and "generalPractitioner" in row.last_error
    assert row.destination == "unroutable:red-deviation-to-gp"


def test_periodic_status_report_once_per_period(client, services, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from interop.messaging.status import send_periodic_status

    address_book(client, tmp_path)
    _ingest(services, _heart_rate("70", 60), _heart_rate("72", 30))
    assert send_periodic_status(services, days=7) == {"sent": 1, "skipped": 0, "unroutable": 0}
    [row] = _outbox(services)
    assert row.event == "status.periodic" and row.kind == "plo-helseopplysninger-lege"
    kith = kith_for(services.settings)
    assert kith is not None
    sent = kith.read(bytes(row.payload))
    assert isinstance(sent.content, HelseopplysningerTilLege)
    assert sent.content.content_type == Coded("2", "Statusrapport")
    assert "Puls: siste 72 /min" in sent.content.notes[0].text
    # nothing is due again within the period; no patient is measured twice
    assert send_periodic_status(services, days=7)["sent"] == 0
    assert len(_outbox(services)) == 1


def test_inbound_over_http_and_the_message_list(client, services, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    ids = address_book(client, tmp_path)
    _ingest(services, _heart_rate("150", 5))
    [row] = _outbox(services)
    kith = kith_for(services.settings)
    assert kith is not None
    sent = kith.read(bytes(row.payload))
    assert sent.header is not None
    header = Header(
        type=Coded("DIALOG_HELSEFAGLIG", "Helsefaglig dialog"),
        msg_id="8d1e2f3a-4b5c-4d6e-8f70-8192a3b4c5d6",
        gen_date=local_timestamp(),
        sender=sent.header.receiver,
        receiver=sent.header.sender,
        patient=sent.header.patient,
        conversation_ref=ConversationRef(row.msg_id, row.msg_id),
    )
    note = DialogNote(Coded("6", "Henvendelse om pasient", "2.16.578.1.12.4.1.1.7322"), None, "OK.")
    data = kith.build(header, build_dialog_note(note))
    xml = {"Content-Type": "application/xml"}
    r = client.post(
        "/api/v1/messages/inbound", content=data, headers={**xml, "X-Correlation-ID": "corr-42"}
    )
    assert r.status_code == 202, r.text
    [ack] = [x for x in _outbox(services) if x.kind == "apprec"]
    assert ack.correlation_id == "corr-42"  # carried from the request to the AppRec it caused
    assert r.json()["outcome"] == "accepted" and r.json()["communication"].startswith(
        "Communication/"
    )
    assert client.post("/api/v1/messages/inbound", content=data, headers=xml).status_code == 200
    bad = client.post("/api/v1/messages/inbound", content=b"<MsgHead>", headers=xml)
    assert bad.status_code == 422 and "T01" in bad.text
    listed = client.get("/api/v1/messages", params={"patient": FNR}).json()
    directions = {(m["direction"], m["type"]) for m in listed}
    assert ("out", "plo-helseopplysninger-lege") in directions
    assert ("in", "dialog-helsefaglig") in directions
    incoming = client.get("/api/v1/messages", params={"direction": "in"}).json()
    assert {m["status"] for m in incoming} == {"accepted", "unreadable"}
    assert ids


def test_a_sent_plo_message_can_be_cancelled(client, services, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    address_book(client, tmp_path)
    _ingest(services, _heart_rate("150", 5))
    [row] = _outbox(services)
    r = client.post(f"/api/v1/messages/{row.id}/cancel")
    assert r.status_code == 201, r.text
    cancel = next(x for x in _outbox(services) if x.id == r.json()["id"])
    kith = kith_for(services.settings)
    assert kith is not None
    got = kith.read(bytes(cancel.payload))
    assert isinstance(got.content, HelseopplysningerTilLege) and got.content.status == "C"
    assert got.header and got.header.conversation_ref == ConversationRef(row.msg_id, row.msg_id)
    assert got.header.msg_id == cancel.msg_id != row.msg_id
    assert cancel.destination == row.destination and cancel.event == "cancel"
    again = client.post(f"/api/v1/messages/{cancel.id}/cancel")
    assert again.status_code == 409
    assert client.post("/api/v1/messages/nope/cancel").status_code == 404


def test_unusable_schemas_dead_letter_instead_of_failing_the_ingest(
    client, services, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    empty = tmp_path / "no-schemas"
    empty.mkdir()
    services.settings.kith_schema_dir = empty
    address_book(client, tmp_path)
    _ingest(services, _heart_rate("150", 5))
    [row] = _outbox(services)
    assert row.status == "dead" and "KITH schemas unusable" in row.last_error
    found = client.get("/fhir/Observation", params={"patient": row.patient_id}).json()
    assert found["entry"], "the measurement itself is stored"


def test_an_apprec_with_nowhere_to_go_is_dead_lettered_not_dropped(
    client, services, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    """A message over HTTP from a sender the address book does not know: it is taken, and its
    AppRec waits as a dead letter an operator can reprocess to the sender's address."""
    address_book(client, tmp_path)
    kith = kith_for(services.settings)
    assert kith is not None
    gp_unknown = Organisation("Ukjent legekontor", [Ident("99998", "HER")])
    centre = Organisation(
        "Fjordvik kommune",
        [Ident(HER["municipality"], "HER")],
        unit=Organisation("Oppfølgingssenteret", [Ident(HER["centre"], "HER")]),
    )
    header = Header(
        type=Coded("DIALOG_HELSEFAGLIG", "Helsefaglig dialog"),
        msg_id="2a4b6c8d-0e1f-4a2b-8c3d-4e5f6a7b8c9d",
        gen_date=local_timestamp(),
        sender=gp_unknown,
        receiver=centre,
        patient=PatientInfo(FNR, "FNR", "Danser", "Line"),
    )
    note = DialogNote(
        Coded("6", "Henvendelse om pasient", "2.16.578.1.12.4.1.1.7322"), None, "Hei."
    )
    r = client.post(
        "/api/v1/messages/inbound",
        content=kith.build(header, build_dialog_note(note)),
        headers={"Content-Type": "application/xml"},
    )
    assert r.status_code == 202, r.text
    [ack] = [x for x in _outbox(services) if x.kind == "apprec"]
    assert ack.status == "dead" and "99998" in ack.last_error
    assert kith.read(bytes(ack.payload)).apprec is not None  # the AppRec itself is kept
