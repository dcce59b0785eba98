"""The patient's right to see who has read their record: the access list lists every access
to that patient's data (a GP's read, a search that returned it, emergency access) and nothing
about other patients."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from interop.access.actor import Actor
from interop.access.audit import audit_log, build_event, is_emergency

FNR_SYSTEM = "urn:oid:2.16.578.1.12.4.1.4.1"
HPR = "urn:oid:2.16.578.1.12.4.1.4.4"
FNR_A, FNR_B, FNR_UNKNOWN = "13031353453", "02028099471", "01018010018"
JSON = {"Accept": "application/json"}


def _post(client: Any, path: str, body: dict[str, Any]) -> dict[str, Any]:
    r = client.post(path, json=body)
    assert r.status_code in (200, 201), r.text
    return r.json()  # type: ignore[no-any-return]


def _obs(pid: str) -> dict[str, Any]:
    return {
        "resourceType": "Observation",
        "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4"}]},
        "subject": {"reference": f"Patient/{pid}"},
        "effectiveDateTime": "2026-03-01T08:00:00+01:00",
        "valueQuantity": {
            "value": 70,
            "unit": "/min",
            "system": "http://unitsofmeasure.org",
            "code": "/min",
        },
    }


def _world(client: Any) -> dict[str, Any]:
    """Patient A (GP Kari, HPR 9144889) and patient B (another GP), one Observation each,
    and an API key for each GP."""
    w: dict[str, Any] = {}
    for name, hpr, fnr in (("a", "9144889", FNR_A), ("b", "1234567", FNR_B)):
        gp = _post(
            client,
            "/fhir/Practitioner",
            {"resourceType": "Practitioner", "identifier": [{"system": HPR, "value": hpr}]},
        )["id"]
        w[name] = _post(
            client,
            "/fhir/Patient",
            {
                "resourceType": "Patient",
                "identifier": [{"system": FNR_SYSTEM, "value": fnr}],
                "generalPractitioner": [{"reference": f"Practitioner/{gp}"}],
            },
        )["id"]
        w[f"o{name}"] = _post(client, "/fhir/Observation", _obs(w[name]))["id"]
        key = _post(
            client,
            "/api/v1/actors",
            {
                "role": "gp",
                "hpr": hpr,
                "name": f"Lege {name.upper()}",
                "organization": {"orgnr": "974703300"},
            },
        )["key"]
        w[f"gp_{name}"] = {"Authorization": f"Bearer {key}"}
    return w


def _accesses(client: Any, fnr: str, **params: str) -> list[dict[str, Any]]:
    r = client.get(f"/api/v1/audit/patients/{fnr}/accesses", params=params, headers=JSON)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["patient"] == fnr and body["count"] == len(body["accesses"])
    return body["accesses"]  # type: ignore[no-any-return]


def test_the_list_shows_the_gps_read_and_no_other_patients_accesses(client) -> None:  # type: ignore[no-untyped-def]
    w = _world(client)
    assert client.get(f"/fhir/Observation/{w['oa']}", headers=w["gp_a"]).status_code == 200
    assert client.get(f"/fhir/Observation/{w['ob']}", headers=w["gp_b"]).status_code == 200
    assert client.get(f"/fhir/Patient/{w['b']}", headers=w["gp_a"]).status_code == 403
    mine = _accesses(client, FNR_A)
    reads = [a for a in mine if a["action"] == "read"]
    assert [(a["what"], a["name"], a["hpr"], a["granted"], a["emergency"]) for a in reads] == [
        (f"Observation/{w['oa']}", "Lege A", "9144889", True, False)
    ]
    assert reads[0]["organisation"] == "org.nr 974703300 / HER-id -"
    # the writes about A (by the bootstrap admin key) are there too; nothing about B
    assert {a["what"] for a in mine} == {f"Patient/{w['a']}", f"Observation/{w['oa']}"}
    assert all(a["hpr"] != "1234567" for a in mine)
    theirs = _accesses(client, FNR_B)
    assert (f"Observation/{w['ob']}", "1234567", True) in {
        (a["what"], a["hpr"], a["granted"]) for a in theirs
    }
    # A's GP tried to read B: B sees the refused attempt, A does not
    assert (f"Patient/{w['b']}", "9144889", False) in {
        (a["what"], a["hpr"], a["granted"]) for a in theirs
    }
    # every listed event really names the patient
    for a in mine:
        event = client.get(f"/fhir/{a['event']}").json()
        assert f"Patient/{w['a']}" in {e["what"].get("reference") for e in event["entity"]}


def test_a_search_is_listed_for_every_patient_it_returned(client, services) -> None:  # type: ignore[no-untyped-def]
    w = _world(client)
    nurse = Actor(id="n1", role="followup", name="Sykepleier Nilsen", orgnr="974703300")
    audit_log(services.store).record_now(
        build_event(nurse, "search", "Observation?code=8867-4", [w["a"], w["b"], w["a"]])
    )
    for fnr in (FNR_A, FNR_B):
        found = [a for a in _accesses(client, fnr) if a["action"] == "search"]
        assert [(a["name"], a["what"]) for a in found] == [
            ("Sykepleier Nilsen", "Observation?code=8867-4")
        ]


def test_emergency_access_is_marked_nodrett(client, services) -> None:  # type: ignore[no-untyped-def]
    w = _world(client)
    doctor = Actor(id="akutt-1", role="hospital", hpr="9144889", name="Dr. Akutt", purpose="ETREAT")
    assert is_emergency(doctor)
    assert is_emergency(
        Actor(
            id="x", role="gp", purpose="http://terminology.hl7.org/CodeSystem/v3-ActReason|ETREAT"
        )
    )
    assert not is_emergency(Actor(id="x", role="gp", purpose="TREAT"))
    assert is_emergency(Actor(id="x", role="gp"), emergency=True)
    event = build_event(doctor, "read", f"Observation/{w['oa']}", [w["a"]])
    assert event["purposeOfEvent"][0]["coding"][0]["code"] == "ETREAT"
    audit_log(services.store).record_now(event)
    listed = [a for a in _accesses(client, FNR_A) if a["name"] == "Dr. Akutt"]
    assert len(listed) == 1 and listed[0]["emergency"] is True
    page = client.get(
        f"/api/v1/audit/patients/{FNR_A}/accesses", headers={"Accept": "text/html"}
    ).text
    assert "Nødrett" in page and "Dr. Akutt" in page


def test_html_page_in_bokmal_with_norwegian_times(client) -> None:  # type: ignore[no-untyped-def]
    w = _world(client)
    client.get(f"/fhir/Observation/{w['oa']}", headers=w["gp_a"])
    r = client.get(f"/api/v1/audit/patients/{FNR_A}/accesses", headers={"Accept": "text/html"})
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    page = r.text
    assert '<html lang="nb">' in page and "Hvem har sett journalen din" in page
    for heading in ("Tidspunkt", "Hvem", "Virksomhet", "Hva ble sett eller gjort", "Type tilgang"):
        assert f"<th>{heading}</th>" in page
    assert "HPR-nr. 9144889" in page and "Lege A" in page and "lest: Observation/" in page
    assert FNR_A not in page and FNR_A[:6] + "*****" in page  # the printed page masks the number
    read = next(a for a in _accesses(client, FNR_A) if a["action"] == "read")
    local = datetime.fromisoformat(read["time"]).astimezone(ZoneInfo("Europe/Oslo"))
    assert local.strftime("%d.%m.%Y kl. %H:%M") in page
    assert re.search(r"<td>\d{2}\.\d{2}\.\d{4} kl\. \d{2}:\d{2}</td>", page)


def test_period_and_errors(client) -> None:  # type: ignore[no-untyped-def]
    w = _world(client)
    client.get(f"/fhir/Observation/{w['oa']}", headers=w["gp_a"])
    today = datetime.now(ZoneInfo("Europe/Oslo")).date().isoformat()
    assert any(
        a["action"] == "read" for a in _accesses(client, FNR_A, **{"from": today, "to": today})
    )
    assert _accesses(client, FNR_A, **{"from": "2099-01-01"}) == []
    assert _accesses(client, FNR_A, to="2001-01-01") == []
    bad = client.get(f"/api/v1/audit/patients/{FNR_A}/accesses", params={"from": "i går"})
    assert bad.status_code == 400 and "from" in bad.json()["issue"][0]["diagnostics"]
    assert client.get(f"/api/v1/audit/patients/{FNR_UNKNOWN}/accesses").status_code == 404
    assert client.get("/api/v1/audit/patients/12345678901/accesses").status_code == 422
    assert (
        client.get(f"/api/v1/audit/patients/{FNR_A}/accesses", headers=w["gp_a"]).status_code == 403
    )


def test_an_admin_reading_the_list_is_itself_audited(client) -> None:  # type: ignore[no-untyped-def]
    w = _world(client)
    key = _post(client, "/api/v1/actors", {"role": "admin", "name": "Personvernombud"})["key"]
    admin = {"Authorization": f"Bearer {key}", **JSON}
    assert client.get(f"/api/v1/audit/patients/{FNR_A}/accesses", headers=admin).status_code == 200
    listed = [a for a in _accesses(client, FNR_A) if a["name"] == "Personvernombud"]
    assert [(a["action"], a["what"]) for a in listed] == [
        ("read", f"AuditEvent?patient=Patient/{w['a']}")
    ]
    assert not [a for a in _accesses(client, FNR_B) if a["name"] == "Personvernombud"]


def test_the_command_prints_json_and_html(client, settings) -> None:  # type: ignore[no-untyped-def]
    w = _world(client)
    client.get(f"/fhir/Observation/{w['oa']}", headers=w["gp_a"])
    env = {**os.environ, "INTEROP_DATABASE_URL": settings.database_url}

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "interop.cli", "audit", "patient", *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )

    import json

    out = run(FNR_A)
    assert out.returncode == 0, out.stderr
    listed = json.loads(out.stdout)["accesses"]
    assert (f"Observation/{w['oa']}", "9144889") in {(a["what"], a["hpr"]) for a in listed}
    assert f"Observation/{w['ob']}" not in out.stdout
    page = run(FNR_A, "--format", "html", "--from", "2020-01-01")
    assert page.returncode == 0 and "Hvem har sett journalen din" in page.stdout
    assert run(FNR_UNKNOWN).returncode == 1
    bad = run(FNR_A, "--to", "tomorrow")
    assert bad.returncode == 1 and "to:" in bad.stderr
