"""The keyed audit chain: every kind of tampering is detected, the key never reaches the
database, keys rotate, heads are exported (by the command and by the worker)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from sqlalchemy import text

from interop.access.actor import ADMIN, Actor
from interop.access.audit import audit_log, build_event
from interop.access.audit.chain import GENESIS, legacy_link, verify
from interop.access.audit.heads import export_head, read_heads
from interop.access.audit.keys import (
    Keyring,
    default_keyring,
    key_id,
    read_key_file,
    reset_keyring_cache,
    write_new_key,
)
from interop.config import reset_settings_cache

GP = Actor(id="gp-1", role="gp", hpr="9144889", name="Kari Lege", orgnr="974703300")


@pytest.fixture
def audit_key(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A real key file configured through INTEROP_AUDIT_KEY_FILE for this test."""
    path = tmp_path / "keys" / "current.key"
    write_new_key(path)
    monkeypatch.setenv("INTEROP_AUDIT_KEY_FILE", str(path))
    monkeypatch.delenv("INTEROP_AUDIT_KEY", raising=False)
    monkeypatch.delenv("INTEROP_AUDIT_KEY_DIR", raising=False)
    reset_settings_cache()
    reset_keyring_cache()
    yield path
    reset_settings_cache()
    reset_keyring_cache()


def _cli(settings: Any, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "interop.cli", "audit", *args],
        env={**os.environ, "INTEROP_DATABASE_URL": settings.database_url, **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


def _record(services: Any, n: int, patient: str = "p1") -> None:
    log = audit_log(services.store)
    for i in range(n):
        log.record_now(build_event(GP, "read", f"Observation/o{i}", [patient]))


def _chain(services: Any) -> list[Any]:
    with services.engine.connect() as conn:
        return list(conn.execute(text("SELECT * FROM audit_chain ORDER BY seq")))


def _verify(services: Any, keyring: Keyring | None = None, heads: Any = ()) -> Any:
    with services.store.reader() as conn:
        return verify(conn, keyring or default_keyring(), heads)


def _set_content(services: Any, res_id: str, content: bytes) -> None:
    with services.engine.begin() as conn:
        conn.execute(
            text("UPDATE audit_chain SET content=:c WHERE res_id=:i"),
            {"c": content, "i": res_id},
        )


def _content(services: Any, res_id: str) -> dict[str, Any]:
    with services.engine.connect() as conn:
        raw = conn.execute(
            text("SELECT content FROM audit_chain WHERE res_id=:i"),
            {"i": res_id},
        ).scalar()
    return orjson.loads(bytes(raw))  # type: ignore[no-any-return]


def _remove(services: Any, seq: int) -> str:
    with services.engine.begin() as conn:
        res_id = conn.execute(
            text("SELECT res_id FROM audit_chain WHERE seq=:s"), {"s": seq}
        ).scalar()
        conn.execute(text("DELETE FROM audit_patient WHERE seq=:s"), {"s": seq})
        conn.execute(text("DELETE FROM audit_chain WHERE seq=:s"), {"s": seq})
    return str(res_id)


def test_intact_chain_verifies_with_links_keyed_and_named(services, audit_key) -> None:  # type: ignore[no-untyped-def]
    _record(services, 5)
    rows = _chain(services)
    kid = key_id(read_key_file(audit_key))
    assert [r.seq for r in rows] == [1, 2, 3, 4, 5]
    assert {r.key_id for r in rows} == {kid}
    assert rows[0].prev_hash == GENESIS and rows[1].prev_hash == rows[0].hash
    result = _verify(services)
    assert result.ok and result.links == 5, result.problems


def test_changed_event_is_detected(services, settings, audit_key) -> None:  # type: ignore[no-untyped-def]
    _record(services, 6)
    victim = _chain(services)[2].res_id
    event = _content(services, victim)
    event["outcome"] = "4"  # a granted read made to look refused
    _set_content(services, victim, orjson.dumps(event))
    result = _verify(services)
    assert not result.ok
    assert result.message.startswith(f"link 3 (AuditEvent/{victim}): the event does not match")
    cli = _cli(settings, "verify", INTEROP_AUDIT_KEY_FILE=str(audit_key))
    assert cli.returncode == 1 and f"link 3 (AuditEvent/{victim})" in cli.stderr


def test_removed_event_in_the_middle_is_detected(services, audit_key) -> None:  # type: ignore[no-untyped-def]
    _record(services, 6)
    _remove(services, 4)
    result = _verify(services)
    assert not result.ok and "link(s) 4..4 are missing before link 5" in result.message
    # removing the event but leaving its link is caught as well
    with services.engine.begin() as conn:
        res_id = conn.execute(text("SELECT res_id FROM audit_chain WHERE seq=2")).scalar()
        conn.execute(text("UPDATE audit_chain SET content=NULL WHERE seq=2"))
    result = _verify(services)
    assert f"link 2 (AuditEvent/{res_id}): the event is missing" in result.message


def test_truncation_behind_an_exported_head_is_detected(
    services, settings, audit_key, tmp_path
) -> None:  # type: ignore[no-untyped-def]
    heads = tmp_path / "offsite" / "audit-heads.jsonl"
    _record(services, 3)
    cli = _cli(
        settings,
        "export-head",
        INTEROP_AUDIT_KEY_FILE=str(audit_key),
        INTEROP_AUDIT_HEAD_FILE=str(heads),
    )
    assert cli.returncode == 0, cli.stderr
    assert orjson.loads(cli.stdout)["seq"] == 3
    _record(services, 2)
    export_head(services.engine, heads)
    exported = list(read_heads(heads))
    assert [h.seq for h in exported] == [3, 5]
    assert _verify(services, heads=exported).ok
    # the last two events are removed: the chain itself is still consistent …
    _remove(services, 5)
    _remove(services, 4)
    assert _verify(services).ok
    # … but not with the head exported before
    result = _verify(services, heads=exported)
    assert not result.ok
    assert "the log ends at link 3" in result.message and "link 5" in result.message
    assert "truncated" in result.message
    cli = _cli(settings, "verify", "--heads", str(heads), INTEROP_AUDIT_KEY_FILE=str(audit_key))
    assert cli.returncode == 1 and "the log ends at link 3" in cli.stderr


def test_rechained_log_without_the_key_is_detected(services, audit_key) -> None:  # type: ignore[no-untyped-def]
    """Someone with database access rewrites an event and re-computes every link after it:
    with a key of their own (keeping our key id, or naming theirs) or with plain SHA-256."""
    _record(services, 4)
    rows = _chain(services)
    forged_key = os.urandom(32)
    for kid_of_forger in (rows[0].key_id, key_id(forged_key), None):
        prev = GENESIS
        for row in rows:
            event = _content(services, row.res_id)
            if row.seq == 2:
                event["agent"][0]["who"]["display"] = "someone else"
                _set_content(services, row.res_id, orjson.dumps(event))
            import hashlib
            import hmac as hmac_

            from interop.access.audit.chain import canonical

            link = (
                legacy_link(prev, event)
                if kid_of_forger is None
                else hmac_.new(
                    forged_key, prev.encode() + canonical(event), hashlib.sha256
                ).hexdigest()
            )
            with services.engine.begin() as conn:
                conn.execute(
                    text("UPDATE audit_chain SET prev_hash=:p, hash=:h, key_id=:k WHERE seq=:s"),
                    {"p": prev, "h": link, "k": kid_of_forger, "s": row.seq},
                )
            prev = link
        result = _verify(services)
        assert not result.ok, kid_of_forger
        if kid_of_forger == rows[0].key_id:
            assert result.message.startswith("every one of the 4 keyed links fails, from link 1")
            assert "first: link 1 (AuditEvent/" in result.message
        elif kid_of_forger is None:
            assert "none of the 4 links is keyed" in result.message
            with_head = _verify(services, heads=[_head_of(rows[-1])])
            assert any("link 4 differs from the head" in p for p in with_head.problems)
        else:
            assert f"made with key id {kid_of_forger}, which is not a configured key" in (
                result.message
            )


def _head_of(row: Any) -> Any:
    from interop.access.audit.chain import Head

    return Head(row.seq, row.hash, "2026-12-06T03:00:00+00:00", "test")


def test_a_wrong_key_fails_every_link(services, audit_key, settings, tmp_path) -> None:  # type: ignore[no-untyped-def]
    _record(services, 3)
    wrong = Keyring.of(os.urandom(32))
    result = _verify(services, wrong)
    assert not result.ok and "not a configured key" in result.message
    other = tmp_path / "other.key"
    write_new_key(other)
    cli = _cli(settings, "verify", INTEROP_AUDIT_KEY_FILE=str(other))
    assert cli.returncode == 1 and "every one of the 3 keyed links fails" in cli.stderr


def test_rotated_keys_verify_from_the_key_folder(
    services, audit_key, monkeypatch, tmp_path
) -> None:  # type: ignore[no-untyped-def]
    _record(services, 2)
    old_dir = tmp_path / "old-keys"
    old_dir.mkdir()
    audit_key.rename(old_dir / "2026-12.key")
    new = tmp_path / "new.key"
    write_new_key(new)
    monkeypatch.setenv("INTEROP_AUDIT_KEY_FILE", str(new))
    reset_settings_cache()
    reset_keyring_cache()
    _record(services, 2)  # a fresh AuditLog per store reads the keyring at each append
    kids = [r.key_id for r in _chain(services)]
    assert kids[0] == kids[1] != kids[2] == kids[3]
    result = _verify(services)
    assert (
        not result.ok and "link 1 " in result.message and "not a configured key" in result.message
    )
    monkeypatch.setenv("INTEROP_AUDIT_KEY_DIR", str(old_dir))
    reset_settings_cache()
    reset_keyring_cache()
    assert _verify(services).ok


def test_the_key_never_reaches_the_database(client, services, audit_key) -> None:  # type: ignore[no-untyped-def]
    key = read_key_file(audit_key)
    gp_key = client.post("/api/v1/actors", json={"role": "gp", "hpr": "9144889"}).json()["key"]
    pid = client.post("/fhir/Patient", json={"resourceType": "Patient"}).json()["id"]
    client.get(f"/fhir/Patient/{pid}", headers={"Authorization": f"Bearer {gp_key}"})
    _record(services, 3)
    needles = [key.hex().encode(), key.hex().upper().encode(), key, key.hex()[:32].encode()]
    import base64

    needles.append(base64.b64encode(key).rstrip(b"="))
    from interop.store.schema import metadata

    seen = 0
    with services.engine.connect() as conn:
        for table in metadata.sorted_tables:
            for row in conn.execute(table.select()):
                for value in row:
                    if value is None:
                        continue
                    blob = (
                        bytes(value)
                        if isinstance(value, bytes | memoryview)
                        else str(value).encode()
                    )
                    seen += 1
                    for needle in needles:
                        assert needle not in blob, f"the audit key is in table {table.name}"
    assert seen > 50 and len(_chain(services)) >= 4


def test_development_key_is_generated_outside_the_database(tmp_path, monkeypatch, caplog) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.chdir(tmp_path)
    for name in ("INTEROP_AUDIT_KEY_FILE", "INTEROP_AUDIT_KEY", "INTEROP_AUDIT_KEY_DIR"):
        monkeypatch.delenv(name, raising=False)
    import interop.access.audit.keys as keys

    monkeypatch.setattr(keys, "_warned", False)
    reset_settings_cache()
    reset_keyring_cache()
    try:
        with caplog.at_level("WARNING", logger="interop.audit"):
            first = default_keyring()
            reset_keyring_cache()
            second = default_keyring()
        assert (tmp_path / "var" / "audit.key").exists()
        assert first.current == second.current  # the same file is used again
        warnings = [r for r in caplog.records if "no audit key configured" in r.message]
        assert len(warnings) == 1
        assert (tmp_path / "var" / "audit.key").stat().st_mode & 0o077 == 0
    finally:
        reset_settings_cache()
        reset_keyring_cache()


def test_bad_keys_are_refused_with_a_clear_message(settings, tmp_path) -> None:  # type: ignore[no-untyped-def]
    bad = tmp_path / "short.key"
    bad.write_text("abcd\n")
    cli = _cli(settings, "verify", INTEROP_AUDIT_KEY_FILE=str(bad))
    assert cli.returncode == 1 and "at least 32 bytes" in cli.stderr
    cli = _cli(settings, "verify", INTEROP_AUDIT_KEY="not hex at all")
    assert cli.returncode == 1 and "INTEROP_AUDIT_KEY" in cli.stderr
    out = tmp_path / "made.key"
    made = _cli(settings, "keygen", "--out", str(out))
    assert made.returncode == 0 and key_id(read_key_file(out)) in made.stderr
    again = _cli(settings, "keygen", "--out", str(out))
    assert again.returncode == 1 and "never overwritten" in again.stderr


def test_the_worker_exports_the_head_periodically(services, audit_key, tmp_path) -> None:  # type: ignore[no-untyped-def]
    from interop.national.wiring import default_transports
    from interop.routing.outbox import Outbox
    from interop.routing.worker import DeliveryWorker, audit_head_export

    heads = tmp_path / "heads.jsonl"
    settings = services.settings.model_copy(
        update={"audit_head_file": heads, "audit_head_export_seconds": 0.01}
    )
    _record(services, 2)
    worker = DeliveryWorker(Outbox(services.engine), default_transports())
    job = audit_head_export(services.engine, settings)
    assert job is not None and job[0] == "audit-head-export"
    worker.periodic.append(job)
    worker.run_once()
    _record(services, 1)
    import time

    time.sleep(0.02)
    worker.run_once()
    lines = [orjson.loads(line) for line in heads.read_text().splitlines()]
    assert [h["seq"] for h in lines] == [2, 3]
    assert lines[-1]["link"] == _chain(services)[-1].hash
    assert lines[-1]["keyId"] == key_id(read_key_file(audit_key))
    off = settings.model_copy(update={"audit_head_export_seconds": 0})
    assert audit_head_export(services.engine, off) is None


def test_bootstrap_admin_writes_are_audited(client, services, audit_key) -> None:  # type: ignore[no-untyped-def]
    pid = client.post("/fhir/Patient", json={"resourceType": "Patient"}).json()["id"]
    events = client.get("/fhir/AuditEvent", params={"patient": pid}).json().get("entry", [])
    assert len(events) == 1
    agent = events[0]["resource"]["agent"][0]
    assert agent["altId"] == ADMIN.id and agent["who"]["display"] == ADMIN.name
    assert events[0]["resource"]["action"] == "C"
    client.get(f"/fhir/Patient/{pid}")  # the bootstrap key's reads are not audited
    assert len(client.get("/fhir/AuditEvent", params={"patient": pid}).json()["entry"]) == 1
    assert client.delete(f"/fhir/Patient/{pid}").status_code in (200, 204)
    events = client.get("/fhir/AuditEvent", params={"patient": pid}).json()["entry"]
    assert sorted(e["resource"]["action"] for e in events) == ["C", "D"]


def test_actors_created_and_revoked_are_audited(client, audit_key) -> None:  # type: ignore[no-untyped-def]
    made = client.post("/api/v1/actors", json={"role": "gp", "hpr": "9144889"}).json()
    assert client.delete(f"/api/v1/actors/{made['id']}").status_code == 200
    events = [
        e["resource"] for e in client.get("/fhir/AuditEvent", params={"_count": 50}).json()["entry"]
    ]
    about = {
        (e["action"], e["entity"][0]["what"]["display"])
        for e in events
        if made["id"] in e["entity"][0]["what"].get("display", "")
    }
    assert about == {
        ("C", f"API actor {made['id']}: role gp, HPR 9144889"),
        ("D", f"API actor {made['id']}: key revoked"),
    }
    assert client.delete("/api/v1/actors/no-such-actor").status_code == 404
