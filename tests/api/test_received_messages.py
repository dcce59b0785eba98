"""Messages taken over MLLP are acknowledged before they are processed; what became of each
(created, duplicate, quarantined, rejected with the reasons, or still pending) is visible
afterwards through GET /api/v1/ingest/messages and `interop inbox`: every message to an
admin, a vendor's own to the vendor, nothing to other roles."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from interop.ingest import inbox
from interop.ingest.inbox import InboxProcessor
from tests.conftest import CONFORMANCE

FNR = "13031353453"
VENDOR, OTHER_VENDOR = "841672119", "974760673"
RAW = (CONFORMANCE / "vendor/continua-ipf/valid-bp-continua-wan.hl7v2").read_bytes()


@pytest.fixture
def world(client, services, tmp_path: Path) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    senders = tmp_path / "mllp-senders.yaml"
    senders.write_text(
        "senders:\n"
        f"  - {{application: AcmeInc, facility: '', peers: [127.0.0.1], role: vendor,"
        f" orgnr: '{VENDOR}', patientIdScopes: [Imaginary Hospital]}}\n"
        f"  - {{application: OtherGW, facility: '', peers: [127.0.0.1], role: vendor,"
        f" orgnr: '{OTHER_VENDOR}'}}\n"
    )
    services.settings.mllp_senders = senders
    client.post(
        "/fhir/Patient",
        json={
            "resourceType": "Patient",
            "identifier": [{"system": "urn:oid:2.16.578.1.12.4.1.4.1", "value": FNR}],
        },
    )
    r = client.post(
        "/api/v1/patient-links",
        json={"source": "Imaginary Hospital", "userId": "789567", "nationalId": FNR},
    )
    assert r.status_code == 201, r.text

    def key(body: dict[str, Any]) -> dict[str, str]:
        r = client.post("/api/v1/actors", json=body)
        assert r.status_code == 201, r.text
        return {"Authorization": f"Bearer {r.json()['key']}"}

    def take(sender: str, msg_id: str, raw: bytes) -> str:
        return inbox.accept(
            services, channel="mllp", sender=sender, message_id=msg_id, adapter="hl7v2", raw=raw
        ).id

    ids = {
        "created": take("AcmeInc|", "M-1", RAW.replace(b"MSGID1234", b"M-1")),
        # the same reading under another message id: nothing new
        "duplicate": take("AcmeInc|", "M-2", RAW.replace(b"MSGID1234", b"M-2")),
        "unreadable": take("AcmeInc|", "M-3", b"MSH|^~\\&|AcmeInc||x"),
        "other": take(
            "OtherGW|",
            "O-1",
            RAW.replace(b"MSGID1234", b"O-1").replace(b"|AcmeInc^", b"|OtherGW^"),
        ),
    }
    ids["pending"] = "later"
    assert InboxProcessor(services).process_pending(limit=10) == 4
    ids["pending"] = take("AcmeInc|", "M-4", RAW.replace(b"MSGID1234", b"M-4"))
    return {
        "ids": ids,
        "vendor": key({"role": "vendor", "organization": {"orgnr": VENDOR}}),
        "gp": key({"role": "gp", "hpr": "9144889"}),
    }


def test_every_message_and_its_outcome_for_the_admin(client, world) -> None:  # type: ignore[no-untyped-def]
    ids = world["ids"]
    r = client.get("/api/v1/ingest/messages")
    assert r.status_code == 200, r.text
    by_id = {m["id"]: m for m in r.json()}
    assert set(ids.values()) <= set(by_id)
    assert by_id[ids["created"]]["outcome"] == "created"
    assert by_id[ids["created"]]["counts"]["created"] == 1
    assert by_id[ids["duplicate"]]["outcome"] == "duplicate"
    assert by_id[ids["pending"]]["outcome"] == "pending"
    bad = by_id[ids["unreadable"]]
    assert bad["outcome"] == "rejected" and bad["status"] == "failed"
    assert bad["reasons"] and "is not an observation result" in bad["reasons"][0]
    assert [m["id"] for m in r.json()][0] == ids["pending"]  # newest first

    shown = client.get(f"/api/v1/ingest/messages/{ids['created']}").json()
    assert shown["resources"] and shown["resources"][0].startswith("Observation/")
    assert shown["messageId"] == "M-1" and shown["channel"] == "mllp"
    # checked against HL7 v2.6's structure for the operator: the device leaves OBX-11 empty
    assert any("OBX.OBX_11" in p for p in shown["structure"]), shown["structure"]
    unreadable = client.get(f"/api/v1/ingest/messages/{ids['unreadable']}").json()
    assert unreadable["structure"][0].startswith("Error: ")
    rejected = client.get("/api/v1/ingest/messages", params={"outcome": "rejected"}).json()
    assert ids["unreadable"] in {m["id"] for m in rejected}
    assert {m["outcome"] for m in rejected} == {"rejected"}
    # the other vendor's message names a patient not linked to it: refused, with the reason
    assert by_id[ids["other"]]["outcome"] == "rejected" and by_id[ids["other"]]["reasons"]
    assert client.get("/api/v1/ingest/messages", params={"outcome": "nope"}).status_code == 400
    assert client.get("/api/v1/ingest/messages/nope").status_code == 404


def test_a_vendor_sees_its_own_messages_only(client, world) -> None:  # type: ignore[no-untyped-def]
    ids, vendor = world["ids"], world["vendor"]
    r = client.get("/api/v1/ingest/messages", headers=vendor)
    assert r.status_code == 200, r.text
    assert {m["id"] for m in r.json()} == {
        ids["created"],
        ids["duplicate"],
        ids["unreadable"],
        ids["pending"],
    }
    other = client.get(f"/api/v1/ingest/messages/{ids['other']}", headers=vendor)
    assert other.status_code == 404
    assert "O-1" not in other.text
    assert (
        client.get(f"/api/v1/ingest/messages/{ids['created']}", headers=vendor).status_code == 200
    )


def test_other_roles_see_none(client, world) -> None:  # type: ignore[no-untyped-def]
    assert client.get("/api/v1/ingest/messages", headers=world["gp"]).status_code == 403
    ident = world["ids"]["created"]
    assert client.get(f"/api/v1/ingest/messages/{ident}", headers=world["gp"]).status_code == 403


def test_the_inbox_command(settings, world) -> None:  # type: ignore[no-untyped-def]
    env = {**os.environ, "INTEROP_DATABASE_URL": settings.database_url}

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "interop.cli", "inbox", *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )

    listed = run("list")
    assert listed.returncode == 0, listed.stderr
    assert "M-1" in listed.stdout and "created" in listed.stdout
    assert "M-3" in listed.stdout and "rejected" in listed.stdout
    rejected = run("list", "--outcome", "rejected")
    assert "M-3" in rejected.stdout and "M-1" not in rejected.stdout
    shown = run("show", world["ids"]["unreadable"])
    assert shown.returncode == 0 and "is not an observation result" in shown.stdout
    missing = run("show", "nope")
    assert missing.returncode != 0 and "nope" in missing.stderr
