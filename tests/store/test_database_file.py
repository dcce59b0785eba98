"""The SQLite database file removed or replaced under a running server, and writers failing in
the middle of their transactions, over real HTTP on a real uvicorn server.

Before: every write after the file was removed or replaced was answered 201 and went into the
old, unlinked file (gone at the next start), while connections opened afterwards saw the new
file. Now every request is a 503 OperationOutcome saying what happened, none a 500 or a
dropped connection, and the write lock is free afterwards."""

from __future__ import annotations

import os
import random
import shutil
import threading
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from interop.api.app import create_app
from interop.config import Settings
from interop.services import Services, build_services
from interop.store.db import dispose_engines, write_lock_of
from tests.conftest import ADMIN_HEADERS, KITH_SCHEMAS
from tests.live_server import live_server

FNR_SYSTEM = "urn:test:patient-number"


@contextmanager
def _server(db: Path) -> Iterator[tuple[httpx.Client, Services]]:
    settings = Settings(
        database_url=f"sqlite:///{db}", admin_key="test-admin-key", kith_schema_dir=KITH_SCHEMAS
    )
    services = build_services(settings)
    try:
        with (
            live_server(create_app(settings, services=services)) as base,
            httpx.Client(base_url=base, headers=ADMIN_HEADERS, timeout=60) as http,
        ):
            yield http, services
    finally:
        dispose_engines()


def _patient(n: int) -> dict[str, Any]:
    return {
        "resourceType": "Patient",
        "identifier": [{"system": FNR_SYSTEM, "value": f"0101{n:07d}"}],
        "name": [{"family": "Prøve", "given": [f"P{n}"]}],
    }


def _every_kind(http: httpx.Client, known: str, n: int) -> dict[str, httpx.Response]:
    """One request of each kind that reads or writes the database."""
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {"resource": _patient(n), "request": {"method": "POST", "url": "Patient"}},
        ],
    }
    return {
        "create": http.post("/fhir/Patient", json=_patient(n + 1)),
        "update": http.put(f"/fhir/Patient/{known}", json={**_patient(n + 2), "id": known}),
        "read": http.get(f"/fhir/Patient/{known}"),
        "search": http.get("/fhir/Patient", params={"name": "Prøve"}),
        "history": http.get(f"/fhir/Patient/{known}/_history"),
        "transaction": http.post("/fhir", json=bundle),
    }


@pytest.mark.parametrize("how", ["removed", "replaced", "moved away"])
def test_a_removed_or_replaced_database_file_is_a_503_never_a_lost_write(
    tmp_path: Path, how: str
) -> None:
    db = tmp_path / "interop.db"
    with _server(db) as (http, services):
        r = http.post("/fhir/Patient", json=_patient(1))
        assert r.status_code == 201, r.text
        known = r.json()["id"]
        answers: Counter[int | str] = Counter()
        stop = threading.Event()

        def writer(i: int) -> None:  # writing all the while the file goes
            with httpx.Client(base_url=str(http.base_url), headers=ADMIN_HEADERS, timeout=60) as c:
                n = 0
                while not stop.is_set():
                    n += 1
                    try:
                        got = c.post("/fhir/Patient", json=_patient(1000 * i + n))
                        answers[got.status_code] += 1
                    except httpx.HTTPError as exc:
                        answers[type(exc).__name__] += 1

        writers = [threading.Thread(target=writer, args=(i,)) for i in range(1, 5)]
        for t in writers:
            t.start()
        try:
            threading.Event().wait(0.5)
            if how == "removed":
                for suffix in ("", "-wal", "-shm"):
                    Path(f"{db}{suffix}").unlink(missing_ok=True)
            elif how == "replaced":  # another file put in its place (a backup, an empty one)
                other = tmp_path / "other.db"
                other.write_bytes(b"")
                os.replace(other, db)
            else:
                shutil.move(db, tmp_path / "elsewhere.db")
            threading.Event().wait(0.5)
        finally:
            stop.set()
            for t in writers:
                t.join(30)
        assert answers[201] > 0, answers
        assert set(answers) <= {201, 503}, answers  # never a 500, never a dropped connection

        for kind, got in _every_kind(http, known, 5000).items():
            assert got.status_code == 503, (kind, got.status_code, got.text)
            outcome = got.json()
            assert outcome["resourceType"] == "OperationOutcome"
            [issue] = outcome["issue"]
            assert issue["code"] == "transient"
            word = "was removed" if how != "replaced" else "was replaced by another file"
            assert f"the database file {db} {word}" in issue["diagnostics"], kind
        threading.Event().wait(1.2)  # a few rounds of the WAL checkpoint thread
        ready = http.get("/readyz")  # what an operator's probe sees
        assert (
            ready.status_code == 503 and "the database file" in ready.json()["checks"]["database"]
        )
        lock = write_lock_of(services.engine)
        assert lock is not None and not lock.locked()
    if how == "replaced":  # nothing of the old database copied into the file put there
        assert db.stat().st_size <= 4096, db.stat().st_size
    else:  # no new, empty database made where the old one was (the next start would use it)
        assert not db.exists()


def test_writers_failing_mid_transaction_never_leave_the_lock_held(tmp_path: Path) -> None:
    """Transaction Bundles that fail at a random entry after writing the ones before (a
    version conflict, an invalid resource) run beside creates and good Bundles: each failed
    Bundle leaves nothing, each good one all its entries, no request is a 5xx, and the lock
    is free at the end."""
    db = tmp_path / "interop.db"
    with _server(db) as (http, services):
        r = http.post("/fhir/Patient", json=_patient(1))
        assert r.status_code == 201, r.text
        known = r.json()["id"]
        statuses: Counter[tuple[str, int]] = Counter()
        outcome: dict[str, bool] = {}
        guard = threading.Lock()

        def bundle(tag: str, fail_at: int | None) -> dict[str, Any]:
            entries = []
            for k in range(4):
                p = _patient(0)
                p["identifier"] = [{"system": "urn:test:bundle", "value": f"{tag}-{k}"}]
                if k == fail_at:
                    if k % 2:
                        entries.append(
                            {
                                "resource": {**p, "id": known},
                                "request": {
                                    "method": "PUT",
                                    "url": f"Patient/{known}",
                                    "ifMatch": 'W/"999"',
                                },
                            }
                        )
                        continue
                    p["birthDate"] = "not a date"
                entries.append({"resource": p, "request": {"method": "POST", "url": "Patient"}})
            return {"resourceType": "Bundle", "type": "transaction", "entry": entries}

        def client(i: int) -> None:
            rng = random.Random(i)
            with httpx.Client(base_url=str(http.base_url), headers=ADMIN_HEADERS, timeout=60) as c:
                for n in range(12):
                    tag = f"c{i}-{n}"
                    kind = rng.choice(["create", "good", "bad"])
                    if kind == "create":
                        got = c.post("/fhir/Patient", json=_patient(100 * i + n))
                    else:
                        fail_at = rng.randrange(1, 4) if kind == "bad" else None
                        got = c.post("/fhir", json=bundle(tag, fail_at))
                        with guard:
                            outcome[tag] = kind == "good"
                    with guard:
                        statuses[(kind, got.status_code)] += 1

        threads = [threading.Thread(target=client, args=(i,)) for i in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        assert all(not t.is_alive() for t in threads)
        assert not any(code >= 500 for _kind, code in statuses), statuses
        assert {code for kind, code in statuses if kind == "bad"} <= {400, 409, 412, 422}
        assert {code for kind, code in statuses if kind != "bad"} <= {200, 201}
        for tag, good in outcome.items():
            wanted = ",".join(f"urn:test:bundle|{tag}-{k}" for k in range(4))
            found = http.get("/fhir/Patient", params={"identifier": wanted}).json()
            kept = {
                i["value"]
                for e in found.get("entry", [])
                for i in e["resource"].get("identifier", [])
                if i["value"].startswith(f"{tag}-")
            }
            assert len(kept) == (4 if good else 0), (tag, good, kept)
        lock = write_lock_of(services.engine)
        assert lock is not None and not lock.locked()
        assert http.post("/fhir/Patient", json=_patient(9)).status_code == 201


def test_a_new_connection_never_makes_a_new_file_where_the_database_was(tmp_path: Path) -> None:
    """SQLite creates a missing file when it connects: after the database was removed, a new
    pooled connection or a new fast-path reader was an empty database at the path, which the
    next start would have taken for the service's own."""
    from sqlalchemy import text

    from interop.store.db import create_db_engine
    from interop.store.fastread import FastReader
    from interop.store.sqlite_file import StoreUnavailable

    db = tmp_path / "interop.db"
    engine = create_db_engine(f"sqlite:///{db}")
    try:
        with engine.connect() as conn:
            conn.execute(text("CREATE TABLE t (x)"))
        for suffix in ("", "-wal", "-shm"):
            Path(f"{db}{suffix}").unlink(missing_ok=True)
        engine.dispose()  # the pool's connections gone: the next one is opened anew
        with pytest.raises(StoreUnavailable, match="was removed"), engine.connect():
            pass
        reader = FastReader(engine)
        with pytest.raises(StoreUnavailable, match="was removed"):
            reader.scalar("SELECT 1")
        assert not db.exists()
    finally:
        engine.dispose()
        dispose_engines()
