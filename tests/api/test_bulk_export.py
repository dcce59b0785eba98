"""Bulk data export: kick-off, status, NDJSON files, access by the policy."""

from __future__ import annotations

import json
import time
from typing import Any

from fastapi.testclient import TestClient

from interop.api.app import create_app
from interop.config import Settings
from tests.api.test_r4_types import SYNTHEA, _load_synthea

ASYNC = {"Prefer": "respond-async"}


def _client(settings: Settings, services: Any, tmp_path) -> TestClient:  # type: ignore[no-untyped-def]
    configured = Settings(**{**settings.model_dump(), "export_dir": tmp_path / "exports"})
    services.settings = configured
    return TestClient(
        create_app(configured, services=services),
        headers={"Authorization": "Bearer test-admin-key"},
    )


def _wait(
    client: TestClient, status_url: str, headers: dict[str, str] | None = None
) -> dict[str, Any]:
    for _ in range(300):
        r = client.get(status_url, headers=headers or {})
        if r.status_code == 200:
            return dict(r.json())
        assert r.status_code == 202, r.text
        time.sleep(0.1)
    raise AssertionError("export did not finish")


def test_patient_export_of_synthea_patients(settings, services, tmp_path) -> None:  # type: ignore[no-untyped-def]
    with _client(settings, services, tmp_path) as c:
        bundles = []
        for path in sorted(SYNTHEA.glob("*.json"))[:2]:
            bundle, _pid = _load_synthea(c, path)
            bundles.append(bundle)
        r = c.get("/fhir/Patient/$export?_type=Patient,Condition,Encounter", headers=ASYNC)
        assert r.status_code == 202, r.text
        status_url = r.headers["content-location"].replace("http://testserver", "")
        manifest = _wait(c, status_url)
        counts = {o["type"]: o["count"] for o in manifest["output"]}
        want: dict[str, int] = {}
        for b in bundles:
            for e in b["entry"]:
                t = e["resource"]["resourceType"]
                if t in ("Patient", "Condition", "Encounter"):
                    want[t] = want.get(t, 0) + 1
        assert counts == want
        enc = next(o for o in manifest["output"] if o["type"] == "Encounter")
        f = c.get(enc["url"].replace("http://testserver", ""))
        assert f.headers["content-type"].startswith("application/fhir+ndjson")
        lines = [json.loads(line) for line in f.text.splitlines()]
        assert len(lines) == want["Encounter"] and all(
            x["resourceType"] == "Encounter" for x in lines
        )
        # another actor never sees the job
        key = c.post(
            "/api/v1/actors", json={"role": "followup", "organization": {"orgnr": "987789328"}}
        ).json()["key"]
        other = {"Authorization": f"Bearer {key}"}
        assert c.get(status_url, headers=other).status_code == 404
        assert c.get(enc["url"].replace("http://testserver", ""), headers=other).status_code == 404
        # a followup centre with no patients exports nothing; the system level is for admins
        r = c.get("/fhir/Patient/$export", headers={**ASYNC, **other})
        assert r.status_code == 202
        mine = _wait(c, r.headers["content-location"].replace("http://testserver", ""), other)
        assert mine["output"] == []
        assert c.get("/fhir/$export", headers={**ASYNC, **other}).status_code == 403
        assert c.delete(status_url).status_code == 202
        assert c.get(status_url).status_code == 404


def test_export_refusals(settings, services, tmp_path) -> None:  # type: ignore[no-untyped-def]
    with _client(settings, services, tmp_path) as c:
        assert c.get("/fhir/$export").status_code == 400  # not asynchronous
        assert c.get("/fhir/$export?_outputFormat=text/csv", headers=ASYNC).status_code == 400
        assert c.get("/fhir/Patient/$export?_type=Questionnaire", headers=ASYNC).status_code == 400
        assert c.get("/fhir/$export-status/not.a.job").status_code == 404
        assert c.get("/fhir/$export-status/00000000-0000-0000-0000-000000000000").status_code == 404
        r = c.get("/fhir/$export?_type=Patient", headers=ASYNC)
        assert r.status_code == 202
        manifest = _wait(c, r.headers["content-location"].replace("http://testserver", ""))
        assert manifest["output"] == []


def test_the_capability_statement_names_the_export_operations(client) -> None:  # type: ignore[no-untyped-def]
    """$export is listed where it is served: the system, Patient (type) and Group (instance)."""
    rest = client.get("/fhir/metadata").json()["rest"][0]
    bulk = "http://hl7.org/fhir/uv/bulkdata/OperationDefinition/"
    assert {"name": "export", "definition": bulk + "export"} in rest["operation"]
    ops = {r["type"]: r.get("operation", []) for r in rest["resource"]}
    assert {"name": "export", "definition": bulk + "patient-export"} in ops["Patient"]
    assert {"name": "export", "definition": bulk + "group-export"} in ops["Group"]
    # and the kick-off answers as the statement says (202 Accepted, a status URL)
    r = client.get("/fhir/$export", headers={"Prefer": "respond-async"})
    assert r.status_code == 202 and r.headers["content-location"]
