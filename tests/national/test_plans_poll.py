"""Changes others make to a patient's plan in NHN Pasientens planer are noticed (``interop
plans poll-nhn``, the worker's job) and made visible — a conflict on our CarePlan and a Task on
that patient's worklist, once per NHN version — never applied: our plan keeps judging by the
thresholds the GP approved, and the next export overwrites nothing. A revoke is not held up by
someone else's zones: the status reaches NHN, their zones stay.

Against the local contract server (``plans_server.py``)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest

from interop.care.plans import ranges_in_force
from interop.national.plans_api import PlansApiClient, PlansApiError
from interop.national.plans_export import link_of
from interop.national.plans_poll import PlansPoll, PollReport
from tests.live_server import live_server
from tests.messaging.test_gp_flow import FNR, address_book
from tests.national.plans_server import LocalPlans
from tests.national.test_plans import (
    FNR_B,
    ZONES,
    _activate,
    _care_plan,
    _deliver,
    _endpoint,
    _gp_hpr,
    _plan_rows,
    patient_b,
)

THEIRS = [{"level": "red", "condition": "Puls over 130", "action": "Ring 113"}]


def _poll(services: Any, base: str) -> PollReport:
    with httpx.Client() as http:
        return PlansPoll(services, PlansApiClient(base, http=http)).run()


def _changed_tasks(client: Any, patient: str | None = None) -> list[dict[str, Any]]:
    params = {"patient": patient} if patient else {}
    bundle = client.get("/fhir/Task", params={**params, "_count": 100}).json()
    return [
        e["resource"]
        for e in bundle.get("entry", [])
        if e["resource"]["code"]["coding"][0]["code"] == "nhn-plan-changed"
    ]


def _world(client: Any, services: Any, tmp_path: Path) -> tuple[dict[str, str], str]:
    services.settings.nhn_plans_helseid = False  # NHN's development environment
    ids = address_book(client, tmp_path)
    return ids, _gp_hpr(client, ids)


def _exported(
    client: Any, services: Any, hpr: str, server: LocalPlans, base: str
) -> tuple[str, str]:
    """An active plan exported to the contract server at ``base``: (CarePlan id, NHN id)."""
    _endpoint(client, base)
    ours = _activate(client, hpr)
    _deliver(services)
    [nhn_id] = server.plans
    return ours, nhn_id


def test_a_change_by_someone_else_is_made_visible_never_applied(
    client: Any, services: Any, tmp_path: Path
) -> None:
    ids, hpr = _world(client, services, tmp_path)
    server = LocalPlans()
    with live_server(server.app()) as base:
        ours, nhn_id = _exported(client, services, hpr, server, base)
        assert _poll(services, base).unchanged == 1  # nothing changed there: nothing to tell
        assert _changed_tasks(client) == []
        server.change_by_someone_else(nhn_id, zones=THEIRS)
        report = _poll(services, base)
        assert report.changed == 1 and report.errors == []
        # our plan: the same thresholds, judging as before; nothing from NHN applied
        with services.engine.connect() as conn:
            ranges = ranges_in_force(conn, ids["patient"], datetime.now(UTC) + timedelta(seconds=1))
        assert ranges["8867-4"].green == (Decimal(50), Decimal(100))
        cp = _care_plan(client, ours)
        assert cp["status"] == "active"
        link = link_of(cp) or {}
        assert link["version"] == 1 and link["noticed"] == 2  # the version we know stays
        assert "Rita Lin" in link["conflict"] and "sonene er endret" in link["conflict"]
        # the care team's Task, on this patient, about our plan, in Norwegian
        [task] = _changed_tasks(client)
        assert task["for"]["reference"] == f"Patient/{ids['patient']}"
        assert task["focus"]["reference"] == f"CarePlan/{ours}"
        assert task["code"]["text"] == "Planen er endret i Pasientens planer"
        assert "versjon 2" in task["description"] and " kl. " in task["description"]
        assert "grenseverdiene fastlegen godkjente" in task["description"]
        # told once per NHN version
        assert _poll(services, base).already_told == 1
        assert len(_changed_tasks(client)) == 1
        # a further change there: a note on the open Task, not a second Task
        server.change_by_someone_else(nhn_id, zones=THEIRS[:0])
        assert _poll(services, base).changed == 1
        [task] = _changed_tasks(client)
        assert "versjon 3" in task["note"][-1]["text"]
        # the next plan version meets the 409 and overwrites nothing
        _activate(client, hpr, [{**ZONES[0], "green": {"low": 55, "high": 95}}])
        _deliver(services)
        assert server.current(nhn_id)["clinical_content"]["zones"] == []
        assert _plan_rows(services)[-1].status == "dead"
    assert server.problems == []


def test_a_comment_or_our_own_lost_write_is_caught_up_quietly(
    client: Any, services: Any, tmp_path: Path
) -> None:
    _ids, hpr = _world(client, services, tmp_path)
    server = LocalPlans()
    with live_server(server.app()) as base:
        ours, nhn_id = _exported(client, services, hpr, server, base)
        server.change_by_someone_else(nhn_id, comment="lest av fastlegen")
        assert _poll(services, base).caught_up == 1
        assert (link_of(_care_plan(client, ours)) or {})["version"] == 2
        assert _changed_tasks(client) == []
        # the next version goes out with the version caught up: no 409 on the way
        _activate(client, hpr, [{**ZONES[0], "green": {"low": 55, "high": 95}}])
        _deliver(services)
    puts = [b["version"] for m, _p, b in server.requests if m == "PUT" and b]
    assert puts == [2]
    assert server.current(nhn_id)["version"] == 3
    # a status we did not set is a change too
    server.plans[nhn_id][-1]["status"] = "completed"
    server.change_by_someone_else(nhn_id, comment="avsluttet i EPJ")
    with live_server(server.app()) as base:
        assert _poll(services, base).changed == 1
    [task] = _changed_tasks(client)
    assert "status er satt til «completed»" in task["description"]


def test_each_change_lands_on_its_own_patient_only(
    client: Any, services: Any, tmp_path: Path
) -> None:
    ids, hpr = _world(client, services, tmp_path)
    b = patient_b(client, ids)
    server = LocalPlans()
    with live_server(server.app()) as base:
        _endpoint(client, base)
        plan_a = _activate(client, hpr)
        r = client.put(
            f"/api/v1/patients/{FNR_B}/plan", json={"approvedBy": {"hpr": hpr}, "zones": ZONES}
        )
        assert r.status_code in (200, 201), r.text
        plan_b = r.json()["carePlan"]["id"]
        _deliver(services)
        by_number = {p[-1]["subject"]["value"]: p[-1]["id"] for p in server.plans.values()}
        server.change_by_someone_else(by_number[FNR_B], zones=THEIRS)
        report = _poll(services, base)
        assert report.changed == 1 and report.unchanged == 1
        assert _changed_tasks(client, ids["patient"]) == []
        [task] = _changed_tasks(client, b)
        assert task["focus"]["reference"] == f"CarePlan/{plan_b}"
        assert (link_of(_care_plan(client, plan_a)) or {}).get("conflict") is None
        # A's NHN plan answered with another person as subject (a faulty server): refused,
        # nothing recorded on A, no Task
        server.change_by_someone_else(by_number[FNR], zones=THEIRS)
        server.plans[by_number[FNR]][-1]["subject"] = {
            "system": "urn:oid:2.16.578.1.12.4.1.4.1",
            "value": FNR_B,
        }
        report = _poll(services, base)
        assert report.changed == 0 and len(report.errors) == 1
        assert "another person" in report.errors[0] and FNR_B not in report.errors[0]
        assert _changed_tasks(client, ids["patient"]) == []
        assert (link_of(_care_plan(client, plan_a)) or {}).get("conflict") is None
    # the centre's nurse sees B's Task on B's row, not on A's
    org = client.get(f"/fhir/Organization/{ids['centre']}").json()
    orgnr = org["identifier"][0]["value"]
    key = client.post(
        "/api/v1/actors", json={"role": "followup", "organization": {"orgnr": orgnr}}
    ).json()["key"]
    rows = client.get(
        "/api/v1/worklist",
        params={"organization": orgnr},
        headers={"Authorization": f"Bearer {key}"},
    ).json()["rows"]
    types = {row["patient"]["nationalId"]: [t["type"] for t in row["tasks"]] for row in rows}
    assert types.get(FNR_B) == ["nhn-plan-changed"]
    assert "nhn-plan-changed" not in types.get(FNR, [])


def test_a_revoke_reaches_nhn_despite_someone_elses_zones_which_stay(
    client: Any, services: Any, tmp_path: Path
) -> None:
    _ids, hpr = _world(client, services, tmp_path)
    server = LocalPlans()
    with live_server(server.app()) as base:
        ours, nhn_id = _exported(client, services, hpr, server, base)
        server.change_by_someone_else(nhn_id, zones=THEIRS)
        r = client.post(f"/api/v1/patients/{FNR}/plan/{ours}/revoke", json={"reason": "Innlagt"})
        assert r.status_code == 200, r.text
        _deliver(services)
        now = server.current(nhn_id)
        assert now["status"] == "revoked" and now["version"] == 3
        assert now["clinical_content"]["zones"] == THEIRS  # their zones, not ours
        assert now["comment"].startswith("Innlagt (") and "ikke overskrevet" in now["comment"]
        [method, _path, body] = server.requests[-1]
        assert method == "PUT" and body is not None and "clinical_content" not in body
        assert _plan_rows(services)[-1].status == "transport-acked"
        link = link_of(_care_plan(client, ours)) or {}
        assert link["conflict"] and link["version"] == 1
        # the poll tells the care team of the zones someone else wrote, and who (not us,
        # though our status update is the newest version)
        assert _poll(services, base).changed == 1
        [task] = _changed_tasks(client)
        assert "Rita Lin" in task["description"] and "versjon 2" in task["description"]
    assert server.problems == []


def test_cli_poll(client: Any, services: Any, tmp_path: Path, monkeypatch: Any) -> None:
    from typer.testing import CliRunner

    from interop.cli import app
    from interop.config import reset_settings_cache

    _ids, hpr = _world(client, services, tmp_path)
    server = LocalPlans()
    with live_server(server.app()) as base:
        _ours, nhn_id = _exported(client, services, hpr, server, base)
        server.change_by_someone_else(nhn_id, zones=THEIRS)
        for name, value in {
            "INTEROP_DATABASE_URL": services.settings.database_url,
            "INTEROP_NHN_PLANS_BASE_URL": base,
            "INTEROP_NHN_PLANS_HELSEID": "false",
        }.items():
            monkeypatch.setenv(name, value)
        reset_settings_cache()
        try:
            result = CliRunner().invoke(app, ["plans", "poll-nhn"])
        finally:
            reset_settings_cache()
    assert result.exit_code == 0, result.output
    assert "'changed': 1" in result.output
    assert len(_changed_tasks(client)) == 1


def test_the_worker_polls_what_is_exported(client: Any, services: Any, tmp_path: Path) -> None:
    """The worker's job polls INTEROP_NHN_PLANS_BASE_URL, else the one Endpoint the plans are
    exported to; with neither it does nothing, with 0 seconds it is not scheduled."""
    from interop.national.cli import national_jobs

    _ids, hpr = _world(client, services, tmp_path)
    services.settings.nhn_plans_base_url = None
    services.settings.nhn_plans_poll_seconds = 0
    assert "nhn-plans-poll" not in [name for name, _i, _f in national_jobs(services)]
    services.settings.nhn_plans_poll_seconds = 600
    jobs = {name: (interval, fn) for name, interval, fn in national_jobs(services)}
    interval, job = jobs["nhn-plans-poll"]
    assert interval == 600
    assert job() is None  # nothing exported to NHN, nothing to poll
    server = LocalPlans()
    with live_server(server.app()) as base:
        # only the export's Endpoint is configured: the poll reads from its address
        _ours, nhn_id = _exported(client, services, hpr, server, base)
        server.change_by_someone_else(nhn_id, zones=THEIRS)
        summary = job()
    assert isinstance(summary, dict) and summary["changed"] == 1
    assert len(_changed_tasks(client)) == 1
    # a second export Endpoint leaves open which to poll: refused, with the setting to use
    _endpoint(client, "http://127.0.0.1:9/elsewhere")
    with pytest.raises(PlansApiError, match="INTEROP_NHN_PLANS_BASE_URL"):
        job()


def test_an_answer_off_the_contract_is_an_error_for_that_patient_only(
    client: Any, services: Any, tmp_path: Path
) -> None:
    ids, hpr = _world(client, services, tmp_path)
    server = LocalPlans()
    with live_server(server.app()) as base:
        ours, nhn_id = _exported(client, services, hpr, server, base)
        del server.plans[nhn_id][-1]["version"]
        report = _poll(services, base)
    assert report.changed == 0 and len(report.errors) == 1
    assert "off the contract" in report.errors[0] and FNR not in report.errors[0]
    assert (link_of(_care_plan(client, ours)) or {}).get("conflict") is None
    assert _changed_tasks(client, ids["patient"]) == []
