"""MLLP listener: ACK after durable storage, AR for unusable input, duplicates not reprocessed."""

from __future__ import annotations

import asyncio
import socket
import threading

from sqlalchemy import select

from adapters.base import vendor_user_system
from adapters.hl7v2_segments import parse
from adapters.mllp import MllpDecoder, mllp_frame
from interop.inbox import InboxProcessor
from interop.mllp import MllpServer
from interop.patients import link_patient
from interop.store.schema import inbound_message_table
from tests.conftest import CONFORMANCE
from tests.live_server import free_port

FNR = "13031353453"


def _send(port: int, payload: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(mllp_frame(payload))
        dec = MllpDecoder()
        while True:
            chunk = s.recv(65536)
            assert chunk, "connection closed without an ACK"
            for msg in dec.feed(chunk):
                return msg


def test_mllp_ack_store_process_and_duplicates(client, services) -> None:  # type: ignore[no-untyped-def]
    pid = client.post(
        "/fhir/Patient",
        json={
            "resourceType": "Patient",
            "identifier": [{"system": "urn:oid:2.16.578.1.12.4.1.4.1", "value": FNR}],
        },
    ).json()["id"]
    with services.store.write() as tx:
        link_patient(tx.conn, vendor_user_system("Imaginary Hospital"), "789567", FNR)
    processor = InboxProcessor(services)
    server = MllpServer(services, processor)
    port = free_port()
    loop = asyncio.new_event_loop()
    started = threading.Event()

    def run() -> None:
        asyncio.set_event_loop(loop)
        loop.run_until_complete(server.start("127.0.0.1", port))
        started.set()
        loop.run_forever()

    t = threading.Thread(target=run, daemon=True)
    t.start()
    started.wait(10)
    try:
        raw = (CONFORMANCE / "vendor/continua-ipf/valid-bp-continua-wan.hl7v2").read_bytes()
        ack = parse(_send(port, raw))
        assert ack[1][1] == "AA" and ack[1][2] == "MSGID1234"
        with services.store.reader() as conn:
            rows = conn.execute(
                select(inbound_message_table.c.status, inbound_message_table.c.raw)
            ).all()
        assert len(rows) == 1 and bytes(rows[0].raw) == raw  # stored before the ACK
        again = parse(_send(port, raw))
        assert again[1][1] == "AA"
        assert processor.process_pending() == 1
        assert processor.process_pending() == 0
        found = client.get(
            "/fhir/Observation", params={"patient": pid, "code": "http://loinc.org|85354-9"}
        ).json()
        assert found["total"] == 1
        comps = found["entry"][0]["resource"]["component"]
        assert [c["valueQuantity"]["value"] for c in comps] == [120, 80, 100]
        nack = parse(_send(port, b"hello, not hl7"))
        assert nack[1][1] == "AR" and nack[2].name == "ERR"
        adt = raw.replace(b"ORU^R01^ORU_R01", b"ADT^A01^ADT_A01").replace(b"MSGID1234", b"MSG-ADT")
        assert parse(_send(port, adt))[1][1] == "AR"
    finally:
        asyncio.run_coroutine_threadsafe(server.close(), loop).result(5)
        loop.call_soon_threadsafe(loop.stop)
        t.join(5)
