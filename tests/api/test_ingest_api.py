"""POST /ingest/{adapter} and the `interop ingest` command."""

from __future__ import annotations

import os
import subprocess
import sys

from tests.conftest import CONFORMANCE

FNR = "13031353453"
V = CONFORMANCE / "vendor"


def _patient(client) -> str:  # type: ignore[no-untyped-def]
    return str(
        client.post(
            "/fhir/Patient",
            json={
                "resourceType": "Patient",
                "identifier": [{"system": "urn:oid:2.16.578.1.12.4.1.4.1", "value": FNR}],
            },
        ).json()["id"]
    )


def test_ingest_endpoint_reports_and_is_idempotent(client) -> None:  # type: ignore[no-untyped-def]
    pid = _patient(client)
    body = (V / "accu-chek-csv/ProperDiary.csv").read_bytes()
    r = client.post(
        "/ingest/mapped-csv",
        params={"profile": "accu-chek-csv", "patient": FNR},
        content=body,
        headers={"Content-Type": "text/csv"},
    )
    assert r.status_code == 200, r.text
    rep = r.json()
    assert (rep["created"], rep["rejected"], rep["items_seen"]) == (6, 0, 11)
    assert sum(d["code"] == "not-a-measurement" for d in rep["diagnostics"]) == 5
    again = client.post(
        "/ingest/mapped-csv",
        params={"profile": "accu-chek-csv", "patient": FNR},
        content=body,
        headers={"Accept": "application/fhir+json"},
    )
    oo = again.json()
    assert oo["resourceType"] == "OperationOutcome" and "created 0" in oo["issue"][0]["diagnostics"]
    found = client.get(
        "/fhir/Observation",
        params={"patient": pid, "code": "http://loinc.org|14743-9", "_summary": "count"},
    ).json()
    assert found["total"] == 6


def test_ingest_endpoint_errors(client) -> None:  # type: ignore[no-untyped-def]
    assert client.post("/ingest/no-such-adapter", content=b"x").status_code == 404
    r = client.post("/ingest/hl7v2", content=b"garbage")
    assert r.status_code == 422 and r.json()["rejected"] == 1
    assert client.post("/ingest/hl7v2", content=b"").status_code == 400
    assert (
        client.post("/ingest/openmhealth", params={"patient": "123"}, content=b"{}").status_code
        == 422
    )
    assert (
        client.post(
            "/ingest/hl7v2", content=b"x", headers={"Authorization": "Bearer nope"}
        ).status_code
        == 401
    )


def test_cli_ingest_exit_codes(settings, tmp_path) -> None:  # type: ignore[no-untyped-def]
    env = {**os.environ, "INTEROP_DATABASE_URL": settings.database_url}
    ok = subprocess.run(
        [
            sys.executable,
            "-m",
            "interop.cli",
            "ingest",
            "--adapter",
            "openmhealth",
            str(V / "openmhealth/schema_header-1.2.json"),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert ok.returncode == 0, ok.stderr
    bad = subprocess.run(
        [
            sys.executable,
            "-m",
            "interop.cli",
            "ingest",
            "--adapter",
            "hl7v2",
            str(V / "fhir-converter"),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert bad.returncode == 1 and "rejected" in bad.stderr
    missing = subprocess.run(
        [
            sys.executable,
            "-m",
            "interop.cli",
            "ingest",
            "--adapter",
            "hl7v2",
            str(tmp_path / "nope"),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert missing.returncode == 2
