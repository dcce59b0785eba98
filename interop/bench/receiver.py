"""A fast local HTTP receiver for the outbox benchmark, run as its own process so it does not
share a GIL with the workers or the benchmark.

``python -m interop.bench.receiver PORT``: every POST is answered 200 at once (HTTP/1.1,
keep-alive) and its ``X-Message-Id`` counted; ``GET /stats`` answers
``{"requests": …, "distinct": …, "duplicates": …, "first": …, "last": …}`` (times from
``time.time()``), ``POST /reset`` forgets everything.
"""

from __future__ import annotations

import hashlib
import os
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import orjson


class _State:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.seen: dict[str, int] = {}
        self.requests = 0
        self.signed = 0
        """requests with ``Authorization: DPoP …`` and a ``DPoP`` proof"""
        self.first: float | None = None
        self.last: float | None = None

    def stats(self) -> dict[str, Any]:
        with self.lock:
            return {
                "requests": self.requests,
                "distinct": len(self.seen),
                "duplicates": self.requests - len(self.seen),
                "signed": self.signed,
                "first": self.first,
                "last": self.last,
            }


STATE = _State()


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def setup(self) -> None:
        super().setup()
        # an answer with a body is written in two parts (headers, body); without NODELAY the
        # second waits for the client's delayed ACK (~40 ms per request on Linux)
        self.request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def _answer(self, status: int, body: bytes = b"") -> None:
        self.send_response_only(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if body:
            self.wfile.write(body)

    def do_POST(self) -> None:  # noqa: N802
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        if self.path == "/reset":
            with STATE.lock:
                STATE.seen.clear()
                STATE.requests = 0
                STATE.first = STATE.last = None
                STATE.signed = 0
            self._answer(204)
            return
        # EDI 2.0 posts carry no X-Message-Id: each body (a MsgHead with its own MsgId) is one
        msg_id = self.headers.get("X-Message-Id") or hashlib.sha256(body).hexdigest()
        signed = self.headers.get("Authorization", "").startswith("DPoP ") and bool(
            self.headers.get("DPoP")
        )
        now = time.time()
        with STATE.lock:
            STATE.requests += 1
            STATE.signed += signed
            STATE.seen[msg_id] = STATE.seen.get(msg_id, 0) + 1
            if STATE.first is None:
                STATE.first = now
            STATE.last = now
        if self.path.endswith("/Messages"):  # EDI 2.0 v2: 201 and the new message id
            self._answer(201, orjson.dumps(str(uuid.uuid4())))
        else:
            self._answer(200)

    def do_GET(self) -> None:  # noqa: N802
        self._answer(200, orjson.dumps(STATE.stats()))

    def log_message(self, *args: object) -> None:
        pass


def serve(port: int) -> None:
    server = ThreadingHTTPServer(("127.0.0.1", port), _Handler)
    server.daemon_threads = True
    server.request_queue_size = 128
    server.serve_forever()


@dataclass
class RunningReceiver:
    url: str
    process: subprocess.Popen[bytes]

    def stats(self) -> dict[str, Any]:
        r = httpx.get(f"{self.url}/stats", timeout=10)
        r.raise_for_status()
        return dict(orjson.loads(r.content))

    def reset(self) -> None:
        httpx.post(f"{self.url}/reset", timeout=10).raise_for_status()


@contextmanager
def receiver_process(port: int) -> Iterator[RunningReceiver]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "interop.bench.receiver", str(port)], env=dict(os.environ)
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            if httpx.get(f"{url}/stats", timeout=2).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise RuntimeError("receiver did not start")
        time.sleep(0.05)
    try:
        yield RunningReceiver(url, proc)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


if __name__ == "__main__":
    serve(int(sys.argv[1]))
