"""Concurrency on PostgreSQL with real processes: 4 API workers (``interop serve --workers 4``)
and 4 delivery workers (``interop worker``) under load.

While client threads write through the API (plan changes for one patient, measurements for
the same patient, message-store reads) and other threads enqueue outbox messages, the
workers deliver everything over the ``http`` transport to a receiver in this process. At the
end: every message delivered exactly once and in per-destination order, none left
queued/sending, every plan change in the plan's history as one linear chain of versions, and
every accepted measurement stored.

Runs whenever PostgreSQL is configured (``INTEROP_TEST_PG_URL``; ``make test`` always sets it).
"""

from __future__ import annotations

import contextlib
import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from sqlalchemy import Engine, func, select, text

from tests.address_book import patient_with_gp

PG_URL = os.environ.get("INTEROP_TEST_PG_URL")
needs_pg = pytest.mark.skipif(not PG_URL, reason="needs PostgreSQL (INTEROP_TEST_PG_URL)")

ADMIN_KEY = "conc-admin-key"
FNR_OID = "urn:oid:2.16.578.1.12.4.1.4.1"
FNR = "13031353453"
API_WORKERS = 4
DELIVERY_WORKERS = 4
DESTINATIONS = 12
ENQUEUE_THREADS = 3
PLAN_THREADS = 4
PLAN_PUTS_PER_THREAD = 4
OBSERVATION_THREADS = 2
LOAD_SECONDS = 10.0
"""At least this long; longer while plan updates are still retrying."""
DRAIN_SECONDS = 30.0


def _plan(n: int) -> dict[str, Any]:
    """A plan whose green systolic ceiling says which update it was."""
    return {
        "approvedBy": {"hpr": "9144889"},
        "title": f"update {n}",
        "zones": [
            {
                "code": "8480-6",
                "unit": "mm[Hg]",
                "green": {"low": 100, "high": 140 + n % 20},
                "yellow": {"low": 90, "high": 170},
            }
        ],
    }


class Receiver:
    """The receiving system: records every accepted X-Message-Id per destination, in arrival
    order; now and then answers 503 (not accepted, so the worker must retry)."""

    def __init__(self, fail_share: float = 0.03) -> None:
        self.lock = threading.Lock()
        self.by_destination: dict[str, list[str]] = defaultdict(list)
        self.counts: Counter[str] = Counter()
        self.refused = 0
        rng = random.Random(7)
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:  # noqa: N802
                self.rfile.read(int(self.headers.get("Content-Length", 0)))
                msg_id = self.headers.get("X-Message-Id", "")
                destination = self.path.rsplit("/", 1)[-1]
                with outer.lock:
                    refuse = rng.random() < fail_share
                    if refuse:
                        outer.refused += 1
                    else:
                        outer.counts[msg_id] += 1
                        outer.by_destination[destination].append(msg_id)
                self.send_response(503 if refuse else 200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.base = f"http://127.0.0.1:{self.server.server_address[1]}/inbox"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def total(self) -> int:
        with self.lock:
            return sum(self.counts.values())

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def pg_database() -> Iterator[tuple[str, Engine]]:
    """A fresh, migrated PostgreSQL database of its own (dropped afterwards)."""
    from interop.store.db import create_db_engine, normalise_url
    from interop.store.migrate import upgrade

    assert PG_URL is not None
    name = f"interop_conc_{os.getpid()}"
    admin = create_db_engine(PG_URL)

    def recreate(drop_only: bool = False) -> None:
        with admin.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            if not drop_only:
                conn.execute(text(f'CREATE DATABASE "{name}"'))

    recreate()
    url = normalise_url(PG_URL).rsplit("/", 1)[0] + f"/{name}"
    engine = create_db_engine(url)
    upgrade(engine)
    try:
        yield url, engine
    finally:
        engine.dispose()
        recreate(drop_only=True)
        admin.dispose()


class Processes:
    """Child processes, each in its own process group (uvicorn's workers go with their
    parent); all of them are ended in ``stop``."""

    def __init__(self, logs: Path, env: dict[str, str]) -> None:
        self.logs = logs
        self.env = env
        self.procs: list[tuple[str, subprocess.Popen[bytes]]] = []

    def start(self, name: str, *args: str) -> subprocess.Popen[bytes]:
        log = open(self.logs / f"{name}.log", "wb")  # noqa: SIM115 - closed with the process
        proc = subprocess.Popen(
            [sys.executable, "-m", "interop.cli", *args],
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()
        self.procs.append((name, proc))
        return proc

    def check_alive(self) -> None:
        dead = [(n, p.returncode) for n, p in self.procs if p.poll() is not None]
        assert not dead, f"child processes exited early: {dead}\n{self.tails()}"

    def tails(self, lines: int = 15) -> str:
        out = []
        for name, _ in self.procs:
            text_ = (self.logs / f"{name}.log").read_text(errors="replace").splitlines()
            out.append(f"--- {name} ---\n" + "\n".join(text_[-lines:]))
        return "\n".join(out)

    def stop(self) -> None:
        for _, proc in self.procs:
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + 15
        for _, proc in self.procs:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            # the whole group: uvicorn's worker processes too, even when the parent is gone
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=5)


def _wait_ready(base: str, procs: Processes, timeout: float = 45.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        procs.check_alive()
        try:
            if httpx.get(f"{base}/readyz", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise AssertionError(f"the API did not become ready\n{procs.tails()}")


def _run_threads(targets: list[Callable[[], None]]) -> tuple[list[threading.Thread], list[str]]:
    errors: list[str] = []

    def wrap(fn: Callable[[], None]) -> Callable[[], None]:
        def run() -> None:
            try:
                fn()
            except BaseException as exc:  # noqa: BLE001 - reported by the test
                errors.append(f"{fn.__name__}: {type(exc).__name__}: {exc}")

        return run

    threads = [threading.Thread(target=wrap(fn), daemon=True) for fn in targets]
    for t in threads:
        t.start()
    return threads, errors


@needs_pg
def test_api_and_delivery_workers_under_load(pg_database, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from interop.care.plans import plan_versions
    from interop.routing.outbox import enqueue
    from interop.store.schema import (
        history_table,
        observation_table,
        outbox_table,
        resource_table,
    )

    url, engine = pg_database
    receiver = Receiver()
    env = {
        **os.environ,
        "INTEROP_DATABASE_URL": url,
        "INTEROP_ADMIN_KEY": ADMIN_KEY,
        "INTEROP_LOG_JSON": "false",
    }
    env.pop("INTEROP_MLLP_PORT", None)
    procs = Processes(tmp_path, env)
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    headers = {"Authorization": f"Bearer {ADMIN_KEY}"}
    try:
        procs.start(
            "api",
            "serve",
            "--port",
            str(port),
            "--workers",
            str(API_WORKERS),
            "--log-level",
            "warning",
        )
        for i in range(DELIVERY_WORKERS):
            procs.start(f"worker{i}", "worker", "--concurrency", "4")
        _wait_ready(base, procs)

        http = httpx.Client(base_url=base, headers=headers, timeout=30)
        patient_id = patient_with_gp(http, FNR)
        r = http.put(f"/api/v1/patients/{FNR}/plan", json=_plan(0))
        assert r.status_code == 201, r.text

        stop = threading.Event()
        lock = threading.Lock()
        enqueued: dict[str, str] = {}  # msg_id → destination
        plan_updates: list[str] = []  # CarePlan ids of successful PUTs
        plan_retries = Counter[int]()
        observations: list[str] = []

        def enqueue_load() -> None:
            rng = random.Random(threading.get_ident())
            while not stop.is_set():
                batch = []
                with engine.begin() as conn:
                    for _ in range(rng.randint(1, 4)):
                        dest = f"d{rng.randrange(DESTINATIONS)}"
                        row_id = enqueue(
                            conn,
                            event="load",
                            kind="fhir-resource",
                            destination=f"Endpoint/{dest}",
                            transport="http",
                            address=f"{receiver.base}/{dest}",
                            content_type="application/json",
                            payload=orjson.dumps({"destination": dest}),
                            patient_id=patient_id,
                        )
                        msg_id = conn.execute(
                            select(outbox_table.c.msg_id).where(outbox_table.c.id == row_id)
                        ).scalar_one()
                        batch.append((msg_id, dest))
                with lock:  # committed: now it must arrive
                    enqueued.update(batch)
                time.sleep(rng.uniform(0.03, 0.1))

        def plan_load() -> None:
            with httpx.Client(base_url=base, headers=headers, timeout=30) as c:
                for _ in range(PLAN_PUTS_PER_THREAD):
                    for attempt in range(50):
                        current = c.get(f"/api/v1/patients/{FNR}/plan")
                        assert current.status_code == 200, current.text
                        n = len(plan_updates) + attempt + 1
                        r = c.put(
                            f"/api/v1/patients/{FNR}/plan",
                            json=_plan(n),
                            headers={"If-Match": current.headers.get("ETag", "")},
                        )
                        if r.status_code in (409, 412):
                            plan_retries[attempt] += 1
                            time.sleep(random.uniform(0, 0.02 * (attempt + 1)))
                            continue
                        assert r.status_code == 200, r.text
                        with lock:
                            plan_updates.append(r.json()["carePlan"]["id"])
                        break
                    else:
                        raise AssertionError("a plan update never got through")

        def observation_load() -> None:
            rng = random.Random(threading.get_ident())
            with httpx.Client(base_url=base, headers=headers, timeout=30) as c:
                while not stop.is_set():
                    when = datetime.now(UTC) - timedelta(minutes=rng.randint(1, 600))
                    r = c.post(
                        "/fhir/Observation",
                        json={
                            "resourceType": "Observation",
                            "status": "final",
                            "code": {"coding": [{"system": "http://loinc.org", "code": "8480-6"}]},
                            "subject": {"reference": f"Patient/{patient_id}"},
                            "effectiveDateTime": when.isoformat(timespec="milliseconds"),
                            "valueQuantity": {
                                # green and yellow only: a red one would (rightly) start
                                # a message to the GP, which is not this test's subject
                                "value": rng.randint(95, 165),
                                "unit": "mm[Hg]",
                                "system": "http://unitsofmeasure.org",
                                "code": "mm[Hg]",
                            },
                        },
                    )
                    assert r.status_code == 201, r.text
                    with lock:
                        observations.append(r.json()["id"])
                    r = c.get("/api/v1/messages", params={"patient": FNR, "limit": 20})
                    assert r.status_code == 200, r.text
                    time.sleep(rng.uniform(0.02, 0.08))

        started = time.monotonic()
        background, errors = _run_threads(
            [enqueue_load] * ENQUEUE_THREADS + [observation_load] * OBSERVATION_THREADS
        )
        planners, plan_errors = _run_threads([plan_load] * PLAN_THREADS)
        for t in planners:
            t.join(timeout=90)  # only a guard against a hang; normally a few seconds
        while time.monotonic() - started < LOAD_SECONDS and not errors:
            time.sleep(0.2)
        stop.set()
        for t in background:
            t.join(timeout=30)
        assert not errors and not plan_errors, (errors, plan_errors)
        assert not any(t.is_alive() for t in background + planners)
        procs.check_alive()
        load_done = time.monotonic()

        # drain: every committed message reaches the receiver
        deadline = time.monotonic() + DRAIN_SECONDS
        while time.monotonic() < deadline:
            with engine.connect() as conn:
                pending = conn.execute(
                    select(func.count()).where(
                        outbox_table.c.event == "load",
                        outbox_table.c.status.in_(("queued", "sending")),
                    )
                ).scalar_one()
            if pending == 0 and receiver.total() >= len(enqueued):
                break
            time.sleep(0.2)
        drained = time.monotonic()
        time.sleep(1.0)  # anything delivered twice would show up now
        procs.check_alive()

        # --- messages: each exactly once, none lost, per-destination order -------------------
        with receiver.lock:
            counts = Counter(receiver.counts)
            arrived = {d: list(ids) for d, ids in receiver.by_destination.items()}
        duplicates = {m: n for m, n in counts.items() if n > 1}
        assert not duplicates, f"delivered more than once: {duplicates}"
        assert len(enqueued) > 200, f"too little load: {len(enqueued)} messages"
        missing = set(enqueued) - set(counts)
        assert not missing, f"{len(missing)} of {len(enqueued)} messages never arrived"
        assert set(counts) == set(enqueued)
        with engine.connect() as conn:
            rows = conn.execute(
                select(
                    outbox_table.c.msg_id,
                    outbox_table.c.destination,
                    outbox_table.c.status,
                    outbox_table.c.seq,
                ).where(outbox_table.c.event == "load")
            ).all()
        assert len(rows) == len(enqueued)
        statuses = Counter(r.status for r in rows)
        assert statuses == {"transport-acked": len(enqueued)}, statuses
        for dest, ids in arrived.items():
            in_order = [
                r.msg_id
                for r in sorted(rows, key=lambda r: r.seq)
                if r.destination == f"Endpoint/{dest}"
            ]
            assert ids == in_order, f"{dest}: delivered out of order"
        assert receiver.refused > 0, "the receiver's refusals exercise the retry path"

        # --- plan: every successful update is a version, one linear chain --------------------
        expected_updates = PLAN_THREADS * PLAN_PUTS_PER_THREAD
        assert len(plan_updates) == expected_updates
        with engine.connect() as conn:
            versions = plan_versions(conn, patient_id)
        assert len(versions) == expected_updates + 1
        assert {v["id"] for v in versions[1:]} == set(plan_updates)
        active = [v for v in versions if v["status"] == "active"]
        assert [v["id"] for v in active] == [versions[-1]["id"]], "exactly one plan in force"
        for before, after in zip(versions, versions[1:], strict=False):
            assert after["replaces"] == [{"reference": f"CarePlan/{before['id']}"}], (
                "each version replaces the one before it (no update lost on a side branch)"
            )
            assert before["status"] == "completed"
            assert before["period"]["end"] == after["period"]["start"]
        with engine.connect() as conn:
            # the current version in the resource table, the ones before it in the history
            careplan_versions = dict(
                conn.execute(
                    select(resource_table.c.res_id, resource_table.c.version).where(
                        resource_table.c.res_type == "CarePlan"
                    )
                ).all()
            )
            archived = dict(
                conn.execute(
                    select(history_table.c.res_id, func.max(history_table.c.version))
                    .where(history_table.c.res_type == "CarePlan")
                    .group_by(history_table.c.res_id)
                ).all()
            )
        assert archived == {v["id"]: 1 for v in versions[:-1]}, archived
        # created, then completed once by the version that replaced it (never twice)
        assert careplan_versions == {
            v["id"]: 2 if v is not versions[-1] else 1 for v in versions
        }, careplan_versions
        current = http.get(f"/api/v1/patients/{FNR}/plan").json()
        assert current["version"] == expected_updates + 1
        assert current["carePlan"]["id"] == versions[-1]["id"]

        # --- measurements: every accepted one is stored --------------------------------------
        with engine.connect() as conn:
            stored = conn.execute(
                select(func.count())
                .select_from(observation_table)
                .where(
                    observation_table.c.patient_id == patient_id,
                    observation_table.c.is_primary.is_(True),
                )
            ).scalar_one()
        assert stored == len(observations) > 0
        http.close()
        print(
            f"\n{len(enqueued)} messages to {DESTINATIONS} destinations delivered once each "
            f"({receiver.refused} refusals retried); {len(plan_updates)} plan updates "
            f"({sum(plan_retries.values())} conflicts retried); {len(observations)} observations; "
            f"load {load_done - started:.1f} s, drain {drained - load_done:.1f} s"
        )
    except AssertionError:
        print(procs.tails(40))
        raise
    finally:
        procs.stop()
        receiver.close()


@needs_pg
def test_first_messages_on_a_fresh_database(pg_database) -> None:  # type: ignore[no-untyped-def]
    """The outbox counter is created by the first message; several first messages at once
    all get a sequence number (a plain INSERT let only one of them commit)."""
    from interop.routing.outbox import enqueue
    from interop.store.schema import outbox_table

    _url, engine = pg_database
    barrier = threading.Barrier(8)

    def first() -> None:
        with engine.begin() as conn:
            barrier.wait(timeout=10)
            enqueue(
                conn,
                event="first",
                kind="text",
                destination="Endpoint/a",
                transport="http",
                address="http://127.0.0.1:9/",
                content_type="text/plain",
                payload=b"x",
            )

    threads, errors = _run_threads([first] * 8)
    for t in threads:
        t.join(timeout=30)
    assert not errors, errors
    with engine.connect() as conn:
        seqs = sorted(r[0] for r in conn.execute(select(outbox_table.c.seq)))
    assert seqs == list(range(1, 9))


def test_plan_put_if_match(client) -> None:  # type: ignore[no-untyped-def]
    """The plan endpoint's optimistic concurrency: ETag on GET and PUT, 412 for a stale
    If-Match, nothing written then."""
    patient_with_gp(client, FNR)
    first = client.put(f"/api/v1/patients/{FNR}/plan", json=_plan(0))
    assert first.status_code == 201 and first.headers["ETag"] == 'W/"1"'
    got = client.get(f"/api/v1/patients/{FNR}/plan")
    assert got.headers["ETag"] == 'W/"1"' and got.json()["version"] == 1
    second = client.put(
        f"/api/v1/patients/{FNR}/plan", json=_plan(1), headers={"If-Match": got.headers["ETag"]}
    )
    assert second.status_code == 200 and second.json()["version"] == 2
    assert second.headers["ETag"] == 'W/"2"'
    stale = client.put(f"/api/v1/patients/{FNR}/plan", json=_plan(2), headers={"If-Match": 'W/"1"'})
    assert stale.status_code == 412, stale.text
    assert "version 1" in stale.text and "current version is 2" in stale.text
    bad = client.put(f"/api/v1/patients/{FNR}/plan", json=_plan(2), headers={"If-Match": "x"})
    assert bad.status_code == 400
    now = client.get(f"/api/v1/patients/{FNR}/plan").json()
    assert now["version"] == 2 and now["carePlan"]["id"] == second.json()["carePlan"]["id"]
    assert client.put(f"/api/v1/patients/{FNR}/plan", json=_plan(3)).status_code == 200
