"""Outbox and delivery worker against real local receivers (HTTP and a folder)."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from sqlalchemy import select

from interop.national.wiring import default_transports
from interop.routing.outbox import Outbox, enqueue
from interop.routing.worker import DeliveryWorker
from interop.store.context import WriteContext
from interop.store.schema import outbox_table


class Receiver:
    """A local HTTP receiver that records what it got and can be told to fail."""

    def __init__(self) -> None:
        self.received: list[tuple[str, bytes]] = []
        self.fail_next: list[int] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                status = outer.fail_next.pop(0) if outer.fail_next else 200
                if status == 200:
                    outer.received.append((self.headers.get("X-Message-Id", ""), body))
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()


def _enqueue(
    services, n: int, address: str, destination: str = "Endpoint/a", transport: str = "http"
) -> list[str]:  # type: ignore[no-untyped-def]
    ids = []
    with services.store.write(WriteContext.service()) as tx:
        for i in range(n):
            ids.append(
                enqueue(
                    tx.conn,
                    event="test",
                    kind="text",
                    destination=destination,
                    transport=transport,
                    address=address,
                    content_type="text/plain",
                    payload=f"message {i}".encode(),
                )
            )
    return ids


def _statuses(services) -> dict[str, str]:  # type: ignore[no-untyped-def]
    with services.store.reader() as conn:
        return {
            r.id: r.status for r in conn.execute(select(outbox_table.c.id, outbox_table.c.status))
        }


def test_delivers_in_order_with_retry_and_dead_letter(services) -> None:  # type: ignore[no-untyped-def]
    rx = Receiver()
    try:
        ids = _enqueue(services, 5, rx.url)
        outbox = Outbox(services.engine, max_attempts=3)
        worker = DeliveryWorker(outbox, default_transports())
        rx.fail_next = [503]  # first attempt fails transiently
        assert worker.run_once() == 1  # one per destination per round
        assert _statuses(services)[ids[0]] == "queued"
        # make the retry due now and drain
        with services.engine.begin() as conn:
            conn.execute(outbox_table.update().values(next_attempt=0))
        for _ in range(10):
            worker.run_once()
        assert [b for _, b in rx.received] == [f"message {i}".encode() for i in range(5)]
        assert set(_statuses(services).values()) == {"transport-acked"}

        dead = _enqueue(services, 1, rx.url, destination="Endpoint/b")[0]
        rx.fail_next = [400]
        worker.run_once()
        assert _statuses(services)[dead] == "dead"
        again = outbox.reprocess(dead)
        worker.run_once()
        st = _statuses(services)
        assert st[again] == "transport-acked" and st[dead] == "dead"
        with services.store.reader() as conn:
            row = conn.execute(select(outbox_table).where(outbox_table.c.id == again)).first()
        assert row.reprocess_of == dead
    finally:
        rx.close()


def test_file_drop_writes_out_folder(services, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    ids = _enqueue(services, 2, f"file://{tmp_path}", transport="file-drop")
    worker = DeliveryWorker(Outbox(services.engine), default_transports())
    for _ in range(3):
        worker.run_once()
    files = sorted((tmp_path / "out").iterdir())
    assert len(files) == 2 and all(f.suffix == ".json" or f.suffix == ".xml" for f in files)
    assert set(_statuses(services)[i] for i in ids) == {"sent"}


def test_parallel_workers_deliver_each_message_once(services) -> None:  # type: ignore[no-untyped-def]
    rx = Receiver()
    try:
        for d in range(8):
            _enqueue(services, 10, rx.url, destination=f"Endpoint/{d}")
        workers = [DeliveryWorker(Outbox(services.engine), default_transports()) for _ in range(4)]
        stop = threading.Event()

        def run(w: DeliveryWorker) -> None:
            while not stop.is_set():
                if w.run_once() == 0 and len(rx.received) >= 80:
                    return

        threads = [threading.Thread(target=run, args=(w,)) for w in workers]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=60)
        stop.set()
        ids = [m for m, _ in rx.received]
        assert len(ids) == 80 and len(set(ids)) == 80
    finally:
        rx.close()


def test_messages_api_lists_by_patient(client, services) -> None:  # type: ignore[no-untyped-def]
    fnr = "13031353453"
    pid = client.post(
        "/fhir/Patient",
        json={
            "resourceType": "Patient",
            "identifier": [{"system": "urn:oid:2.16.578.1.12.4.1.4.1", "value": fnr}],
        },
    ).json()["id"]
    with services.store.write(WriteContext.service()) as tx:
        enqueue(
            tx.conn,
            event="triage.red",
            kind="plo-helseopplysninger-lege",
            destination="Endpoint/gp",
            transport="file-drop",
            address="file:///tmp/x",
            content_type="application/xml",
            payload=b"<MsgHead/>",
            patient_id=pid,
        )
    r = client.get("/api/v1/messages", params={"patient": fnr})
    assert r.status_code == 200
    [m] = r.json()
    assert {"id", "msgId", "type", "direction", "destination", "status"} <= set(m)
    assert m["type"] == "plo-helseopplysninger-lege" and m["status"] == "queued"
    assert client.get(f"/api/v1/messages/{m['id']}/content").content == b"<MsgHead/>"
    assert client.get("/api/v1/messages", params={"patient": "123"}).status_code == 422
    assert "dho_outbox_depth" in client.get("/metrics").text


def test_fhir_rest_batch_with_failed_entries_is_not_taken_as_delivered() -> None:
    """A FHIR batch is answered 200 even when entries failed: a refused entry dead-letters the
    message, a server error on an entry retries it, all entries 2xx is delivered."""
    import orjson
    import pytest
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    from interop.routing.outbox import OutboxMessage
    from interop.routing.transports import (
        FhirRestTransport,
        PermanentDeliveryError,
        TransientDeliveryError,
    )
    from tests.live_server import live_server

    answers = {
        "ok": ["201 Created", "200 OK"],
        "refused": ["201 Created", "422 Unprocessable"],
        "busy": ["201 Created", "503 Service Unavailable"],
    }

    async def batch(request: Request) -> JSONResponse:
        sent = orjson.loads(await request.body())
        assert sent["type"] == "batch"
        outcome = {"resourceType": "OperationOutcome", "issue": [{"diagnostics": "bad unit"}]}
        return JSONResponse(
            {
                "resourceType": "Bundle",
                "type": "batch-response",
                "entry": [
                    {"response": {"status": s, "outcome": outcome}}
                    for s in answers[request.path_params["case"]]
                ],
            }
        )

    app = Starlette(routes=[Route("/{case}", batch, methods=["POST"])])
    bundle = orjson.dumps({"resourceType": "Bundle", "type": "batch", "entry": [{}, {}]})

    def msg(case: str, base: str) -> OutboxMessage:
        return OutboxMessage(
            "r",
            "m",
            "Endpoint/x",
            "fhir-rest",
            f"{base}/{case}",
            "application/fhir+json",
            bundle,
            "pmd-observations",
            1,
            False,
            None,
        )

    with live_server(app) as base:
        transport = FhirRestTransport()
        assert transport.deliver(msg("ok", base)) is True
        with pytest.raises(PermanentDeliveryError, match="entry 1: 422 Unprocessable bad unit"):
            transport.deliver(msg("refused", base))
        with pytest.raises(TransientDeliveryError, match="503"):
            transport.deliver(msg("busy", base))
