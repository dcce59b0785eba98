"""The receive checklist through the real inbox (store, outbox, FHIR): the catalogue's case 1
and its cancellation (case 1-21), AppRecs as the sender needs them (roles, IssueDate echoed),
and a second AppRec for a message already answered."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import orjson
from sqlalchemy import select

from adapters.base import FNR_OID
from interop.identifiers import HERID_OID, ORGNR_OID, generate_orgnr
from interop.messaging.addressbook import TRANSPORT_SYSTEM, Destination
from interop.messaging.inbound import KithInbox, TrustedChannel
from interop.messaging.runtime import kith_for
from interop.routing.outbox import enqueue
from interop.store.schema import inbound_message_table, outbox_table
from plo_messages.xmlsafe import parse_xml
from tests.conftest import SHARED

CATALOGUE = SHARED / "corpus" / "kith" / "sarepta" / "mo-v1.5"
CASE_1 = (CATALOGUE / "Case1_2-Svar-Medisinske_opplysninger-v1_5.xml").read_bytes()
CASE_1_21 = (CATALOGUE / "Case1-21-Svar-Medisinske_opplysninger-v1_5.xml").read_bytes()
CASE_1_MSGID = "0e9a00f0-df38-11de-8a39-0800200c9a66"
APPRECS = SHARED / "corpus" / "kith" / "ks-fiks-nhn" / "app-rec"
APPREC_FOR = "a6967e6a-8c0a-4be4-a647-c921d3086423"


def _post(client: Any, resource: dict[str, Any]) -> str:
    r = client.post(f"/fhir/{resource['resourceType']}", json=resource)
    assert r.status_code == 201, r.text
    return str(r.json()["id"])


def _book(client: Any, folder: Path) -> Destination:
    """Alvdal kommune (99387) with its nursing service (5078) following Roland Gundersen, and
    the GP's practice Kattskinnet (56704) reachable by file drop, as the catalogue sets up."""
    rng = random.Random(3)

    def org(name: str, her: str, part_of: str | None = None) -> str:
        res: dict[str, Any] = {
            "resourceType": "Organization",
            "name": name,
            "identifier": [
                {"system": ORGNR_OID, "value": generate_orgnr(rng)},
                {"system": HERID_OID, "value": her},
            ],
        }
        if part_of:
            res["partOf"] = {"reference": f"Organization/{part_of}"}
        return _post(client, res)

    municipality = org("Alvdal kommune", "99387")
    service = org("Sykepleietjeneste, pleie- og omsorg", "5078", municipality)
    practice = org("Kattskinnet legesenter", "56704")
    endpoint = _post(
        client,
        {
            "resourceType": "Endpoint",
            "status": "active",
            "connectionType": {"system": TRANSPORT_SYSTEM, "code": "file-drop"},
            "managingOrganization": {"reference": f"Organization/{practice}"},
            "payloadType": [{"text": "KITH"}],
            "address": (folder / "gp").as_uri(),
        },
    )
    _post(
        client,
        {
            "resourceType": "Patient",
            "identifier": [{"system": FNR_OID, "value": "15076500565"}],
            "name": [{"family": "Gundersen", "given": ["Roland"]}],
            "managingOrganization": {"reference": f"Organization/{service}"},
        },
    )
    return Destination(f"Endpoint/{endpoint}", "file-drop", (folder / "gp").as_uri())


def _rows(services: Any, table: Any) -> list[Any]:
    with services.engine.connect() as conn:
        return list(conn.execute(select(table)).all())


def test_apprec_echoes_issue_date_as_sent_with_the_version_s_roles(
    client: Any, services: Any, tmp_path: Path
) -> None:
    source = _book(client, tmp_path)
    got = KithInbox(services).receive(CASE_1, channel=TrustedChannel("file-drop"), source=source)
    assert got.outcome == "accepted"
    [ack] = [r for r in _rows(services, outbox_table) if r.kind == "apprec"]
    root = parse_xml(bytes(ack.payload))
    # v1.5 is answered with AppRec 1.0; IssueDate exactly as the message's GenDate was written
    assert root.findtext("{*}OriginalMsgId/{*}IssueDate") == "2006-06-05T12:30:47.0Z"
    roles = [
        (r.get("V"), r.get("DN"))
        for r in (root.find("{*}Sender/{*}Role"), root.find("{*}Receiver/{*}Role"))
        if r is not None
    ]
    assert roles == [("REQ", "Rekvirent"), ("RECEIVER", "Mottaker")]


def test_a_cancellation_cancels_the_message_it_refers_to(
    client: Any, services: Any, tmp_path: Path
) -> None:
    """Catalogue criterion 21: case 1, then its cancellation 1-21."""
    source = _book(client, tmp_path)
    inbox = KithInbox(services)
    first = inbox.receive(CASE_1, channel=TrustedChannel("file-drop"), source=source)
    assert first.outcome == "accepted" and first.communication
    cancel = inbox.receive(CASE_1_21, channel=TrustedChannel("file-drop"), source=source)
    assert cancel.outcome == "accepted" and cancel.communication is None
    rows = {r.message_id: r for r in _rows(services, inbound_message_table)}
    original = orjson.loads(rows[CASE_1_MSGID].report)
    assert original["outcome"] == "cancelled"
    assert original["cancelledBy"] == "60e7ae10-7215-11df-93f2-0800200c9a66"
    assert orjson.loads(rows["60e7ae10-7215-11df-93f2-0800200c9a66"].report)["cancels"] == (
        CASE_1_MSGID
    )
    comm = client.get(f"/fhir/{first.communication}").json()
    assert comm["status"] == "entered-in-error" and "Kansellert" in comm["note"][-1]["text"]
    assert len(client.get("/fhir/Communication").json().get("entry", [])) == 1
    # each was acknowledged once; the cancellation is not tied to our AppRec for case 1
    assert len([r for r in _rows(services, outbox_table) if r.kind == "apprec"]) == 2
    listed = client.get("/api/v1/messages", params={"direction": "in"}).json()
    assert {m["msgId"]: m["status"] for m in listed}[CASE_1_MSGID] == "cancelled"


def test_a_cancellation_of_another_sender_s_message_cancels_nothing(
    client: Any, services: Any, tmp_path: Path
) -> None:
    source = _book(client, tmp_path)
    inbox = KithInbox(services)
    first = inbox.receive(CASE_1, channel=TrustedChannel("file-drop"), source=source)
    forged = CASE_1_21.replace(b"<Id>369.767</Id>", b"<Id>369.768</Id>")
    inbox.receive(forged, channel=TrustedChannel("file-drop"), source=source)
    comm = client.get(f"/fhir/{first.communication}").json()
    assert comm["status"] == "completed"


def test_a_second_apprec_for_an_answered_message_is_not_processed(
    client: Any, services: Any, tmp_path: Path
) -> None:
    _book(client, tmp_path)
    with services.engine.begin() as conn:
        enqueue(
            conn,
            event="triage.red",
            kind="plo",
            destination="Endpoint/x",
            transport="file-drop",
            address="file:///nowhere",
            content_type="application/xml",
            payload=b"<MsgHead/>",
            msg_id=APPREC_FOR,
            expects_apprec=True,
        )
    inbox = KithInbox(services)
    ok = (APPRECS / "1.0-example-ok.xml").read_bytes()
    rejected = (APPRECS / "1.0-example-avvist.xml").read_bytes()
    kith = kith_for(services.settings)
    assert kith is not None
    assert kith.read(rejected).apprec.original_msg_id == APPREC_FOR  # type: ignore[union-attr]
    first = inbox.receive(ok, channel=TrustedChannel("file-drop"))
    assert first.outcome == "apprec" and first.closed == APPREC_FOR
    second = inbox.receive(rejected, channel=TrustedChannel("file-drop"))
    assert second.outcome == "duplicate-apprec" and second.closed is None
    [row] = [r for r in _rows(services, outbox_table) if r.msg_id == APPREC_FOR]
    assert (row.status, row.apprec_status, row.apprec_errors) == ("apprec-ok", "ok", None)
    kept = [r for r in _rows(services, inbound_message_table)]
    assert len(kept) == 2, "the second AppRec is kept for an operator, not dropped"
