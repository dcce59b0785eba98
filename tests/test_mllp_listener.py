"""MLLP listener: ACK after durable storage (and not before its commit), AR for unusable
input, duplicates (also concurrent ones) acknowledged and not reprocessed, stored messages
turned into Observations by the in-process processor while the listener keeps acknowledging,
and the group-committing acceptor behind it."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import func, select, text

from adapters.base import vendor_user_system
from adapters.hl7v2_segments import parse
from adapters.mllp import MllpDecoder, OversizedFrame, mllp_frame
from interop.ingest import inbox as inbox_module
from interop.ingest.inbox import GroupAcceptor, InboxProcessor, Incoming, accept_many
from interop.ingest.mllp import MllpServer, start_processor_thread
from interop.patients import link_patient
from interop.store.context import WriteContext
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


RAW = (CONFORMANCE / "vendor/continua-ipf/valid-bp-continua-wan.hl7v2").read_bytes()


@pytest.fixture(autouse=True)
def _listed_sender(services, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """The conformance messages' sender (MSH-3 AcmeInc, MSH-4 empty) on this machine, listed
    as the municipality's own engine (a vendor's limits: tests/access/test_vendor_writes.py)."""
    path = tmp_path / "mllp-senders.yaml"
    path.write_text(
        "senders:\n  - {application: AcmeInc, facility: '', peers: [127.0.0.1], role: followup}\n"
    )
    services.settings.mllp_senders = path


def _message(n: int) -> bytes:
    """The conformance message with its own control id and measurement time."""
    return RAW.replace(b"MSGID1234", f"MSG-{n}".encode()).replace(
        b"20090813095715", f"2009081309{n // 60:02d}{n % 60:02d}".encode()
    )


def _setup_patient(client: Any, services: Any) -> str:
    pid = client.post(
        "/fhir/Patient",
        json={
            "resourceType": "Patient",
            "identifier": [{"system": "urn:oid:2.16.578.1.12.4.1.4.1", "value": FNR}],
        },
    ).json()["id"]
    with services.store.write(WriteContext.service()) as tx:
        link_patient(tx.conn, vendor_user_system("Imaginary Hospital"), "789567", FNR)
    return str(pid)


@contextmanager
def _listener(services: Any, processor: InboxProcessor | None = None) -> Iterator[int]:
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
    assert started.wait(10)
    try:
        yield port
    finally:
        asyncio.run_coroutine_threadsafe(server.close(), loop).result(15)
        loop.call_soon_threadsafe(loop.stop)
        t.join(5)
        loop.close()


def _rows(services: Any) -> list[Any]:
    with services.store.reader() as conn:
        return list(
            conn.execute(
                select(
                    inbound_message_table.c.message_id,
                    inbound_message_table.c.status,
                    inbound_message_table.c.raw,
                )
            ).all()
        )


@contextmanager
def _inbox_writes_blocked(services: Any) -> Iterator[None]:
    """Hold a transaction that keeps any other from writing the inbox until the block ends."""
    with services.engine.begin() as conn:
        if services.store.is_postgres:
            conn.execute(text("LOCK TABLE inbound_message IN EXCLUSIVE MODE"))
        # on SQLite this transaction holds the database's (and the process's) write lock
        yield


def test_mllp_ack_store_process_and_duplicates(client, services) -> None:  # type: ignore[no-untyped-def]
    pid = _setup_patient(client, services)
    processor = InboxProcessor(services)
    with _listener(services, processor) as port:
        ack = parse(_send(port, RAW))
        assert ack[1][1] == "AA" and ack[1][2] == "MSGID1234"
        rows = _rows(services)
        assert len(rows) == 1 and bytes(rows[0].raw) == RAW  # stored before the ACK
        again = parse(_send(port, RAW))
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
        adt = RAW.replace(b"ORU^R01^ORU_R01", b"ADT^A01^ADT_A01").replace(b"MSGID1234", b"MSG-ADT")
        assert parse(_send(port, adt))[1][1] == "AR"


def test_the_ack_waits_for_the_commit(services) -> None:  # type: ignore[no-untyped-def]
    with _listener(services) as port, ThreadPoolExecutor(1) as pool:
        with _inbox_writes_blocked(services):
            pending = pool.submit(_send, port, _message(1))
            time.sleep(0.5)
            assert not pending.done()  # no ACK while the message cannot be committed
        ack = parse(pending.result(10))
        assert ack[1][1] == "AA" and ack[1][2] == "MSG-1"
        assert [r.message_id for r in _rows(services)] == ["MSG-1"]


def test_nothing_stored_means_ae_not_aa(services, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    def fail(*_a: Any, **_k: Any) -> Any:
        raise RuntimeError("disk full")

    monkeypatch.setattr(inbox_module, "accept_many", fail)
    with _listener(services) as port:
        ack = parse(_send(port, _message(1)))
    assert ack[1][1] == "AE"
    assert _rows(services) == []


def test_concurrent_duplicates_are_stored_once(services) -> None:  # type: ignore[no-untyped-def]
    processor = InboxProcessor(services)
    with _listener(services) as port, ThreadPoolExecutor(8) as pool:
        acks = [parse(a) for a in pool.map(lambda _: _send(port, _message(7)), range(8))]
    assert {(a[1][1], a[1][2]) for a in acks} == {("AA", "MSG-7")}
    assert len(_rows(services)) == 1
    assert processor.process_pending() == 1
    assert processor.process_pending() == 0


def test_messages_are_processed_while_the_listener_acknowledges(client, services) -> None:  # type: ignore[no-untyped-def]
    pid = _setup_patient(client, services)
    processor = InboxProcessor(services)
    thread, stop = start_processor_thread(processor)
    n = 40
    try:
        with _listener(services, processor) as port, ThreadPoolExecutor(4) as pool:
            acks = [parse(a) for a in pool.map(lambda i: _send(port, _message(i)), range(n))]
            assert all(a[1][1] == "AA" for a in acks)
            deadline = time.monotonic() + 60
            while {r.status for r in _rows(services)} != {"processed"}:
                assert time.monotonic() < deadline, "processing did not complete"
                time.sleep(0.05)
    finally:
        stop.set()
        processor.wake.set()
        thread.join(10)
    assert len(_rows(services)) == n
    found = client.get(
        "/fhir/Observation",
        params={"patient": pid, "code": "http://loinc.org|85354-9", "_summary": "count"},
    ).json()
    assert found["total"] == n


def test_accept_many_recognises_duplicates_in_the_batch_and_before_it(services) -> None:  # type: ignore[no-untyped-def]
    def item(msg_id: str, ack: bytes) -> Incoming:
        return Incoming("mllp", "Lab", msg_id, "hl7v2", b"raw " + msg_id.encode(), ack)

    first = accept_many(services, [item("A", b"ack A")])
    got = accept_many(services, [item("B", b"ack B"), item("A", b"ack A2"), item("B", b"ack B2")])
    assert not first[0].duplicate and not got[0].duplicate
    assert got[1].duplicate and got[1].id == first[0].id and got[1].previous_ack == b"ack A"
    assert got[2].duplicate and got[2].id == got[0].id and got[2].previous_ack == b"ack B"
    with services.store.reader() as conn:
        count = conn.execute(select(func.count()).select_from(inbound_message_table)).scalar()
    assert count == 2


def test_a_failed_group_commit_is_retried_message_by_message(services, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    real = inbox_module.accept_many
    batches: list[list[str]] = []

    def flaky(svc: Any, items: list[Incoming]) -> Any:
        batches.append([i.message_id for i in items])
        if len(items) > 1 or items[0].message_id == "BAD":
            raise RuntimeError("shared transaction failed")
        return real(svc, items)

    monkeypatch.setattr(inbox_module, "accept_many", flaky)
    acceptor = GroupAcceptor(services)
    try:
        with _inbox_writes_blocked(services):
            futures = [acceptor.submit(Incoming("mllp", "Lab", "M0", "hl7v2", b"0"))]
            time.sleep(0.2)  # M0 is being written (waits for the block); the rest queue up
            futures += [
                acceptor.submit(Incoming("mllp", "Lab", m, "hl7v2", m.encode()))
                for m in ("M1", "BAD", "M2")
            ]
            time.sleep(0.1)
        results = [f.exception(10) or f.result() for f in futures]
    finally:
        acceptor.close()
    assert batches[:2] == [["M0"], ["M1", "BAD", "M2"]]  # the second one was a group commit
    assert isinstance(results[2], RuntimeError)
    assert [r.duplicate for i, r in enumerate(results) if i != 2] == [False, False, False]  # type: ignore[union-attr]
    assert sorted(r.message_id for r in _rows(services)) == ["M0", "M1", "M2"]


def test_a_closed_acceptor_refuses_new_messages(services) -> None:  # type: ignore[no-untyped-def]
    acceptor = GroupAcceptor(services)
    stored = acceptor.submit(Incoming("mllp", "Lab", "M1", "hl7v2", b"1")).result(10)
    acceptor.close()
    assert not stored.duplicate
    with pytest.raises(RuntimeError):
        acceptor.submit(Incoming("mllp", "Lab", "M2", "hl7v2", b"2"))


@pytest.mark.parametrize("batch", [True, False])
def test_a_claimed_batch_is_processed_together_each_with_its_own_outcome(
    client, services, batch: bool
) -> None:  # type: ignore[no-untyped-def]
    pid = _setup_patient(client, services)
    raws = [RAW.replace(b"MSGID1234", f"MSGB{i}".encode()) for i in range(3)]
    # the second message is a reading of its own: another value, taken a minute later
    raws[1] = (
        raws[1]
        .replace(b"|1.0.1.1|120|", b"|1.0.1.1|121|")
        .replace(b"|||20090813095715+0000", b"|||20090813095815+0000")
    )
    ids = [
        inbox_module.accept(
            services,
            channel="mllp",
            sender="AcmeInc|",
            message_id=f"MSGB{i}",
            adapter="hl7v2",
            raw=r,
        ).id
        for i, r in enumerate(raws)
    ]
    bad = inbox_module.accept(
        services,
        channel="mllp",
        sender="AcmeInc|",
        message_id="BAD",
        adapter="hl7v2",
        raw=b"MSH|nope",
    ).id
    processor = InboxProcessor(services, batch=batch)
    assert processor.process_pending(limit=10) == 4
    with services.store.reader() as conn:
        status = dict(
            conn.execute(select(inbound_message_table.c.id, inbound_message_table.c.status)).all()
        )
    assert [status[i] for i in ids] == ["processed"] * 3 and status[bad] == "failed"
    found = client.get(
        "/fhir/Observation", params={"patient": pid, "code": "http://loinc.org|85354-9"}
    ).json()
    values = sorted(e["resource"]["component"][0]["valueQuantity"]["value"] for e in found["entry"])
    assert values == [120, 121]  # the first and third message are the same reading


# ---- limits: idle connections, oversized frames, malformed messages ----------------------


def _limited(services: Any, **limits: Any) -> None:
    services.settings = services.settings.model_copy(update=limits)


def _ack_fields(ack: bytes) -> tuple[str, str, bytes]:
    """(MSA-1, MSA-2, the whole ACK) of an acknowledgement."""
    msa = next(seg for seg in ack.split(b"\r") if seg.startswith(b"MSA"))
    parts = msa.decode().split("|")
    return parts[1], parts[2], ack


def _exchange(s: socket.socket, dec: MllpDecoder, payload: bytes) -> bytes:
    s.sendall(mllp_frame(payload))
    while True:
        chunk = s.recv(65536)
        assert chunk, "connection closed without an ACK"
        for msg in dec.feed(chunk):
            return msg


def test_an_idle_connection_is_closed(services) -> None:  # type: ignore[no-untyped-def]
    _limited(services, mllp_idle_timeout_seconds=0.5)
    with _listener(services) as port:
        # silent from the start: closed after the timeout
        with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
            t0 = time.monotonic()
            assert s.recv(100) == b""
            assert 0.3 < time.monotonic() - t0 < 5
        # a sender that stops half-way through a frame is closed too
        with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
            s.sendall(b"\x0bMSH|^~\\&|half")
            assert s.recv(100) == b""
        # while it keeps sending it stays open; after its last ACK the timeout runs again
        with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
            dec = MllpDecoder()
            for n in range(3):
                assert _ack_fields(_exchange(s, dec, _message(700 + n)))[0] == "AA"
                time.sleep(0.2)
            assert s.recv(100) == b""


def test_a_frame_over_the_limit_is_answered_ar_and_never_kept(services) -> None:  # type: ignore[no-untyped-def]
    _limited(services, mllp_max_frame_size=8192)
    big = _message(800).rstrip(b"\r") + b"\rNTE|1||" + b"x" * 50_000 + b"\r"
    with (
        _listener(services) as port,
        socket.create_connection(("127.0.0.1", port), timeout=10) as s,
    ):
        dec = MllpDecoder()
        code, control_id, ack = _ack_fields(_exchange(s, dec, big))
        assert (code, control_id) == ("AR", "MSG-800")
        assert b"ERR|" in ack and b"larger than the limit" in ack
        # the connection goes on: the next message is taken
        assert _ack_fields(_exchange(s, dec, _message(801)))[:2] == ("AA", "MSG-801")
        # a frame over the limit whose start is not HL7 at all: AR without a control id
        assert _ack_fields(_exchange(s, dec, b"\x00\xff" * 10_000))[0] == "AR"
    assert [r.message_id for r in _rows(services)] == ["MSG-801"]


def test_an_endless_frame_is_read_past_in_bounded_memory() -> None:
    dec = MllpDecoder(max_message=4096)
    out: list[Any] = []
    out.extend(dec.feed_frames(b"\x0bMSH|^~\\&|A|B"))
    for _ in range(2000):  # 128 MB that never ends the frame
        out.extend(dec.feed_frames(b"y" * 65536))
        assert len(dec.buffer) <= 65536
    assert out == []
    frames = list(dec.feed_frames(b"\x1c\r" + mllp_frame(b"MSH|ok")))
    assert [type(f).__name__ for f in frames] == ["OversizedFrame", "bytes"]
    assert frames[0].head.startswith(b"MSH|^~\\&|A|B") and len(frames[0].head) <= 4096  # type: ignore[union-attr]
    assert frames[1] == b"MSH|ok"


@pytest.mark.parametrize(
    "payload",
    [
        b"\x00\x01\x02\xff\xfe" * 40,
        b"MSH",
        b"MSH|",
        b"MSH|^~\\&",
        b"MSH|^~\\&|A|B|C|D|20260101||ORU^R01",  # no MSH-10
        b"MSH|^~\\&|A|B|C|D|20260101||ADT^A01|X1|P|2.5",  # not a type we take
        b"MSH" + b"|" * 60_000,
        b"\xef\xbb\xbfMSH|\xff\xfe|",
        b"MSH|^~\\&|A|B|C|D|20260101||ORU^R01|X\x001|P|2.5\rOBX|1|NM|8867-4^HR^LN||70",
    ],
)
def test_malformed_hl7_over_mllp_is_answered_ar(services, payload: bytes) -> None:  # type: ignore[no-untyped-def]
    with (
        _listener(services) as port,
        socket.create_connection(("127.0.0.1", port), timeout=10) as s,
    ):
        dec = MllpDecoder()
        assert _ack_fields(_exchange(s, dec, payload))[0] == "AR"
        assert _ack_fields(_exchange(s, dec, _message(900)))[0] == "AA"  # still listening


@given(
    st.lists(st.binary(max_size=60), min_size=1, max_size=6),
    st.integers(min_value=1, max_value=40),
    st.integers(min_value=1, max_value=23),
)
def test_the_decoder_reports_frames_over_the_limit_however_they_are_split(
    messages: list[bytes], limit: int, chunk: int
) -> None:
    messages = [m.replace(b"\x0b", b"v").replace(b"\x1c", b"f") for m in messages]
    stream = b"noise" + b"".join(mllp_frame(m) for m in messages)
    dec = MllpDecoder(max_message=limit)
    out: list[Any] = []
    for i in range(0, len(stream), chunk):
        out.extend(dec.feed_frames(stream[i : i + chunk]))
    assert out == [m if len(m) <= limit else OversizedFrame(m[:4096], len(m)) for m in messages]
