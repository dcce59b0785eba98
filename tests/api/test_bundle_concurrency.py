"""A transaction Bundle runs in a worker thread: while one waits on the database, the rest of
the process goes on answering (a GP's read, the health check). On the event loop, a Bundle
held every other request of the process until it was done."""

from __future__ import annotations

import threading
from typing import Any

import httpx
import orjson
from sqlalchemy import make_url

from tests.conftest import ADMIN_HEADERS
from tests.live_server import live_server


def _hold_write_lock(backend: str, url: str) -> Any:
    """A connection outside the service that keeps writes to the resource table waiting."""
    if backend == "sqlite":
        import sqlite3

        conn = sqlite3.connect(make_url(url).database or "", isolation_level=None)
        conn.execute("BEGIN IMMEDIATE")
        return conn
    import psycopg

    u = make_url(url)
    conn = psycopg.connect(
        host=u.host, port=u.port, user=u.username, password=u.password, dbname=u.database
    )
    conn.execute("LOCK TABLE resource IN EXCLUSIVE MODE")  # reads go on, writes wait
    return conn


def test_a_waiting_bundle_does_not_hold_other_requests(settings, services, backend) -> None:  # type: ignore[no-untyped-def]
    from interop.api.app import create_app

    app = create_app(settings, services=services)
    with live_server(app) as base, httpx.Client(base_url=base, headers=ADMIN_HEADERS) as c:
        pid = c.post("/fhir/Patient", content=orjson.dumps({"resourceType": "Patient"})).json()[
            "id"
        ]
        bundle = {
            "resourceType": "Bundle",
            "type": "transaction",
            "entry": [
                {
                    "resource": {"resourceType": "Patient"},
                    "request": {"method": "POST", "url": "Patient"},
                }
            ],
        }
        blocker = _hold_write_lock(backend, settings.database_url)
        answer: dict[str, Any] = {}

        def post_bundle() -> None:
            with httpx.Client(base_url=base, headers=ADMIN_HEADERS, timeout=60) as other:
                answer["bundle"] = other.post("/fhir", content=orjson.dumps(bundle))

        sender = threading.Thread(target=post_bundle)
        sender.start()
        try:
            sender.join(timeout=0.5)
            assert sender.is_alive()  # the Bundle waits for the lock held above
            r = c.get(f"/fhir/Patient/{pid}", timeout=10)
            assert r.status_code == 200
            assert sender.is_alive()  # answered while the Bundle was still waiting
        finally:
            blocker.rollback() if backend != "sqlite" else blocker.execute("ROLLBACK")
            blocker.close()
            sender.join(timeout=60)
        assert answer["bundle"].status_code == 200, answer["bundle"].text
