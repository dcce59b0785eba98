"""``kill -9`` a real ``interop worker`` in the middle of delivering 1,000 messages to a local
receiver, start a new one: every message is delivered, none is lost, and none twice once the
receiver deduplicates on the message id.

Delivery is at-least-once: the messages the killed worker had taken (status ``sending``) and
not yet recorded go back to the queue when their lease runs out, so some of them reach the
receiver a second time at the HTTP level. The test bounds those to the messages that were
``sending`` at the kill, and checks that each destination still got its messages in order.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from sqlalchemy import func, select

from interop.routing.outbox import PENDING, enqueue
from interop.store.schema import outbox_table

MESSAGES = 1000
DESTINATIONS = 20
KILL_AT = 300
LEASE_SECONDS = 2
CONCURRENCY = 4
REPO = Path(__file__).resolve().parents[2]


class CountingReceiver:
    """Records the ``X-Message-Id`` of every request in arrival order (with the destination,
    taken from the path), takes ~2 ms per request, and SIGKILLs ``victim`` when request
    number ``kill_at`` arrives — before answering it, so that delivery is cut mid-flight."""

    def __init__(self, kill_at: int) -> None:
        self.lock = threading.Lock()
        self.log: list[tuple[str, str]] = []
        self.kill_at = kill_at
        self.victim: int | None = None
        self.killed = threading.Event()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:  # noqa: N802
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                with outer.lock:
                    outer.log.append((self.path, self.headers.get("X-Message-Id", "")))
                    n = len(outer.log)
                if n == outer.kill_at and outer.victim is not None:
                    os.kill(outer.victim, signal.SIGKILL)
                    outer.killed.set()
                time.sleep(0.002)
                try:
                    self.send_response_only(200)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                except OSError:
                    pass  # the worker is gone

            def log_message(self, *args: object) -> None:
                pass

        class Server(ThreadingHTTPServer):
            daemon_threads = True

            def handle_error(self, request: Any, client_address: Any) -> None:
                pass  # a connection cut by the kill

        self.server = Server(("127.0.0.1", 0), Handler)
        self.base = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def snapshot(self) -> list[tuple[str, str]]:
        with self.lock:
            return list(self.log)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def _start_worker(database_url: str, log: Path) -> subprocess.Popen[bytes]:
    env = dict(os.environ)
    env.update(
        {
            "INTEROP_DATABASE_URL": database_url,
            "INTEROP_OUTBOX_LEASE_SECONDS": str(LEASE_SECONDS),
            "INTEROP_LOG_JSON": "false",
        }
    )
    with log.open("ab") as f:
        return subprocess.Popen(
            [sys.executable, "-m", "interop.cli", "worker", "--concurrency", str(CONCURRENCY)],
            env=env,
            cwd=REPO,
            stdout=f,
            stderr=subprocess.STDOUT,
        )


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _rows(services: Any) -> list[Any]:
    o = outbox_table
    with services.engine.connect() as conn:
        return list(
            conn.execute(
                select(o.c.msg_id, o.c.destination, o.c.seq, o.c.status, o.c.attempts).order_by(
                    o.c.seq
                )
            )
        )


def _pending(services: Any) -> int:
    o = outbox_table
    with services.engine.connect() as conn:
        return int(conn.execute(select(func.count()).where(o.c.status.in_(PENDING))).scalar_one())


def test_kill_9_mid_delivery_then_restart_delivers_everything_once(
    services: Any, tmp_path: Path, record_property: Any
) -> None:
    rx = CountingReceiver(KILL_AT)
    log = tmp_path / "worker.log"
    procs: list[subprocess.Popen[bytes]] = []
    try:
        with services.engine.begin() as conn:
            for i in range(MESSAGES):
                d = i % DESTINATIONS
                enqueue(
                    conn,
                    event="crash-test",
                    kind="text",
                    destination=f"Endpoint/rx-{d}",
                    transport="http",
                    address=f"{rx.base}/rx-{d}",
                    content_type="text/plain",
                    payload=f"message {i} to {d}".encode(),
                )

        first = _start_worker(services.settings.database_url, log)
        procs.append(first)
        rx.victim = first.pid
        assert rx.killed.wait(60), f"the worker delivered nothing: {log.read_text()[-3000:]}"
        assert first.wait(10) == -signal.SIGKILL
        time.sleep(0.5)  # let the database finish with the dead worker's connections
        at_kill = _rows(services)
        sending_at_kill = {r.msg_id for r in at_kill if r.status == "sending"}
        acked_at_kill = sum(r.status == "transport-acked" for r in at_kill)
        assert acked_at_kill < MESSAGES and sending_at_kill  # killed in the middle

        second = _start_worker(services.settings.database_url, log)
        procs.append(second)
        deadline = time.monotonic() + 30
        while _pending(services) and time.monotonic() < deadline:
            assert second.poll() is None, log.read_text()[-3000:]
            time.sleep(0.1)
        _stop(second)

        rows = _rows(services)
        received = rx.snapshot()
        counts = Counter(m for _, m in received)
        duplicated = {m for m, c in counts.items() if c > 1}
        http_duplicates = len(received) - len(counts)
        record_property("http_duplicates", http_duplicates)
        record_property("sending_at_kill", len(sending_at_kill))
        print(
            f"\n[{services.engine.dialect.name}] killed after {KILL_AT} requests: "
            f"{acked_at_kill} recorded delivered, {len(sending_at_kill)} sending; "
            f"{len(received)} requests in all, {len(counts)} distinct MsgIds, "
            f"{http_duplicates} HTTP-level duplicate(s)"
        )

        # (c) every message ended delivered and acknowledged
        assert Counter(r.status for r in rows) == {"transport-acked": MESSAGES}, Counter(
            r.status for r in rows
        )
        # (a) none lost: the receiver saw every message id
        assert set(counts) == {r.msg_id for r in rows} and len(counts) == MESSAGES
        # (b) the only second deliveries are of messages the killed worker had in flight; the
        # one whose request the kill interrupted is certainly among them
        assert duplicated <= sending_at_kill
        assert 1 <= http_duplicates <= len(sending_at_kill)
        assert max(counts.values()) == 2
        # (d) per destination, first deliveries follow the enqueue order
        first_seen: dict[str, list[str]] = {}
        seen: set[str] = set()
        for path, msg_id in received:
            if msg_id not in seen:
                seen.add(msg_id)
                first_seen.setdefault(path.lstrip("/"), []).append(msg_id)
        for d in range(DESTINATIONS):
            expected = [r.msg_id for r in rows if r.destination == f"Endpoint/rx-{d}"]
            assert first_seen[f"rx-{d}"] == expected, f"destination rx-{d} out of order"
    finally:
        for p in procs:
            _stop(p)
        rx.close()
