"""NHN Pasientens planer against the local contract server (``plans_server.py``: every body
checked with jsonschema against ``plan.schema.derived.json``, version/409/422 as NHN's
changelog says, HelseID + DPoP verified with real signatures when on).

An active plan is exported with its zones as Norwegian text and the patient's fødselsnummer;
the next version updates the same NHN plan with its version; a 409 is reconciled when the
zones on the server are the ones we exported, and recorded as a conflict — never overwritten —
when someone else changed them; a revoked plan updates the status. A patient's NHN plan is
imported as a draft that judges nothing, for that patient only."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest

from interop.messaging.addressbook import TRANSPORT_SYSTEM
from interop.national.plans_api import PlansApiClient, PlanVersionConflict
from interop.national.plans_export import link_of
from interop.national.wiring import default_transports
from interop.routing.outbox import Outbox
from interop.routing.worker import DeliveryWorker
from tests.live_server import live_server
from tests.messaging.test_gp_flow import FNR, _outbox, _post, address_book
from tests.national.conftest import National
from tests.national.nhn_auth import ApiGuard
from tests.national.plans_server import LocalPlans

SUBSCRIPTION_SYSTEM = "https://dho-interop.no/fhir/CodeSystem/subscription"
FNR_B = "02028099471"
ZONES = [
    {
        "code": "8867-4",
        "unit": "/min",
        "green": {"low": 50, "high": 100},
        "yellow": {"low": 40, "high": 120},
        "actions": {"yellow": "Mål igjen om en time", "red": "Ring legevakten"},
    }
]


def _endpoint(client, address: str) -> None:  # type: ignore[no-untyped-def]
    _post(
        client,
        {
            "resourceType": "Endpoint",
            "status": "active",
            "connectionType": {"system": TRANSPORT_SYSTEM, "code": "nhn-plans"},
            "payloadType": [{"coding": [{"system": SUBSCRIPTION_SYSTEM, "code": "nhn-plans"}]}],
            "address": address,
        },
    )


def _gp_hpr(client, ids: dict[str, str]) -> str:  # type: ignore[no-untyped-def]
    return str(
        client.get(f"/fhir/Practitioner/{ids['practitioner']}").json()["identifier"][0]["value"]
    )


def _activate(client, hpr: str, zones: list[dict[str, Any]] = ZONES) -> str:  # type: ignore[no-untyped-def]
    r = client.put(
        f"/api/v1/patients/{FNR}/plan", json={"approvedBy": {"hpr": hpr}, "zones": zones}
    )
    assert r.status_code in (200, 201), r.text
    return str(r.json()["carePlan"]["id"])


def _deliver(services) -> None:  # type: ignore[no-untyped-def]
    DeliveryWorker(
        Outbox(services.engine),
        default_transports(settings=services.settings, store=services.store),
    ).run_once()


def _plan_rows(services) -> list[Any]:  # type: ignore[no-untyped-def]
    return [r for r in _outbox(services) if r.kind == "nhn-plan"]


def _care_plan(client, plan_id: str) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    return dict(client.get(f"/fhir/CarePlan/{plan_id}").json())


def test_export_with_helseid_update_with_version_and_revoke(
    client, services, tmp_path: Path, national: National
) -> None:  # type: ignore[no-untyped-def]
    services.settings.helseid_tenants_file = national.helseid.tenants_file
    services.settings.nhn_plans_tenant = "fjordvik"
    guard = ApiGuard(national.helseid.issuer, "nhn:pasientens-planer", "nhn:pasientens-planer/api")
    server = LocalPlans(guard)
    ids = address_book(client, tmp_path)
    hpr = _gp_hpr(client, ids)
    with live_server(server.app()) as base:
        _endpoint(client, base)
        first = _activate(client, hpr)
        [row] = _plan_rows(services)
        assert row.transport == "nhn-plans" and row.content_type == "application/json"
        _deliver(services)
        [(nhn_id, versions)] = server.plans.items()
        plan = versions[-1]
        assert plan["subject"] == {"system": "urn:oid:2.16.578.1.12.4.1.4.1", "value": FNR}
        assert plan["status"] == "active" and plan["version"] == 1
        zones = {z["level"]: z for z in plan["clinical_content"]["zones"]}
        assert zones["green"]["condition"] == "Puls 50–100 /min"
        assert zones["yellow"]["condition"] == "Puls utenfor 50–100 /min, innenfor 40–120 /min"
        assert zones["yellow"]["action"] == "Mål igjen om en time"
        assert zones["red"]["condition"] == "Puls utenfor 40–120 /min"
        assert zones["red"]["action"] == "Ring legevakten"
        assert zones["green"]["action"] == "Ingen egen handling."
        link = link_of(_care_plan(client, first))
        assert link is not None and link["id"] == nhn_id and link["version"] == 1
        # the next plan version updates the same NHN plan with its version
        second = _activate(client, hpr, [{**ZONES[0], "green": {"low": 55, "high": 95}}])
        _deliver(services)
        assert list(server.plans) == [nhn_id]
        assert server.current(nhn_id)["version"] == 2
        assert server.current(nhn_id)["clinical_content"]["version"] == 2
        green = server.current(nhn_id)["clinical_content"]["zones"][0]
        assert green["condition"] == "Puls 55–95 /min"
        assert (link_of(_care_plan(client, second)) or {})["version"] == 2
        [method, path, body] = server.requests[-1]
        assert method == "PUT" and body is not None and body["version"] == 1
        assert "subject" not in body  # read-only after create
        # revoked: the status follows, the zones stay
        r = client.post(f"/api/v1/patients/{FNR}/plan/{second}/revoke", json={"reason": "Innlagt"})
        assert r.status_code == 200, r.text
        _deliver(services)
        assert server.current(nhn_id)["status"] == "revoked"
        assert server.current(nhn_id)["version"] == 3
        assert server.current(nhn_id)["clinical_content"]["version"] == 2
        assert server.current(nhn_id)["comment"] == "Innlagt"
    assert [r.status for r in _plan_rows(services)] == ["transport-acked"] * 3
    assert server.problems == [] and guard.checked >= 4


def _dev_setup(client, services, tmp_path: Path) -> tuple[LocalPlans, str]:  # type: ignore[no-untyped-def]
    services.settings.nhn_plans_helseid = False  # NHN's development environment
    ids = address_book(client, tmp_path)
    return LocalPlans(), _gp_hpr(client, ids)


def test_409_is_reconciled_when_the_zones_on_the_server_are_ours(
    client, services, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    server, hpr = _dev_setup(client, services, tmp_path)
    with live_server(server.app()) as base:
        _endpoint(client, base)
        _activate(client, hpr)
        _deliver(services)
        [nhn_id] = server.plans
        server.change_by_someone_else(nhn_id, comment="status sett av fastlegen")
        second = _activate(client, hpr, [{**ZONES[0], "green": {"low": 55, "high": 95}}])
        _deliver(services)
    puts = [(m, b["version"]) for m, p, b in server.requests if m == "PUT" and b]
    assert puts == [("PUT", 1), ("PUT", 2)]  # 409 on 1, read, sent again with 2
    assert server.current(nhn_id)["version"] == 3
    assert server.current(nhn_id)["clinical_content"]["zones"][0]["condition"] == "Puls 55–95 /min"
    assert (link_of(_care_plan(client, second)) or {})["version"] == 3
    assert [r.status for r in _plan_rows(services)] == ["transport-acked"] * 2
    assert server.problems == []


def test_409_after_someone_else_changed_the_zones_is_a_conflict_never_an_overwrite(
    client, services, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    server, hpr = _dev_setup(client, services, tmp_path)
    theirs = [{"level": "red", "condition": "Puls over 130", "action": "Ring 113"}]
    with live_server(server.app()) as base:
        _endpoint(client, base)
        _activate(client, hpr)
        _deliver(services)
        [nhn_id] = server.plans
        server.change_by_someone_else(nhn_id, zones=theirs)
        second = _activate(client, hpr, [{**ZONES[0], "green": {"low": 55, "high": 95}}])
        _deliver(services)
    assert server.current(nhn_id)["clinical_content"]["zones"] == theirs  # not overwritten
    assert server.current(nhn_id)["version"] == 2
    rows = _plan_rows(services)
    assert rows[-1].status == "dead"
    assert "changed by someone else" in rows[-1].last_error
    assert "not overwritten" in rows[-1].last_error
    link = link_of(_care_plan(client, second)) or {}
    assert link["conflict"] and "changed by someone else" in link["conflict"]
    assert link["version"] == 1  # still the version we know: no later export overwrites
    assert server.problems == []


def test_client_semantics_422_and_409_and_history(client, services, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    import httpx

    server = LocalPlans()
    with live_server(server.app()) as base, httpx.Client() as http:
        api = PlansApiClient(base, http=http)
        content = {"title": "Plan", "description": "d", "zones": []}
        made = api.create(
            {
                "status": "active",
                "subject": {"system": "x", "value": FNR},
                "clinical_content": content,
            }
        )
        r = http.put(f"{base}/plan/{made['id']}", json={"status": "active"})
        assert r.status_code == 422  # no version
        assert http.get(f"{base}/plan").status_code == 400  # no patient
        with pytest.raises(PlanVersionConflict):
            api.update(made["id"], {"version": 7, "status": "active"})
        api.update(made["id"], {"version": 1, "status": "completed"})
        assert [h["version"] for h in api.history(made["id"])] == [1, 2]
        assert api.get_version(made["id"], 1)["status"] == "active"
        assert [p["id"] for p in api.search(FNR)] == [made["id"]]
        with pytest.raises(ValueError):
            api.create({"version": 1})
    assert len(server.problems) == 1 and "UpdateRequest" in server.problems[0]


def _second_patient(client) -> str:  # type: ignore[no-untyped-def]
    return _post(
        client,
        {
            "resourceType": "Patient",
            "identifier": [{"system": "urn:oid:2.16.578.1.12.4.1.4.1", "value": FNR_B}],
            "name": [{"family": "Berg", "given": ["Bjørn"]}],
        },
    )


def patient_b(client, ids: dict[str, str]) -> str:  # type: ignore[no-untyped-def]
    """A second patient (FNR_B) of the same GP and centre as ``address_book``'s."""
    return _post(
        client,
        {
            "resourceType": "Patient",
            "identifier": [{"system": "urn:oid:2.16.578.1.12.4.1.4.1", "value": FNR_B}],
            "generalPractitioner": [{"reference": f"PractitionerRole/{ids['role']}"}],
            "managingOrganization": {"reference": f"Organization/{ids['centre']}"},
        },
    )


def _seed(server: LocalPlans, fnr: str) -> str:
    return server.seed(
        {"system": "urn:oid:2.16.578.1.12.4.1.4.1", "value": fnr},
        {
            "title": "Plan fra sykehuset",
            "description": "KOLS",
            "zones": [
                {"level": "green", "condition": "Puster som vanlig", "action": "Fortsett"},
                {"level": "red", "condition": "Tung pust i hvile", "action": "Ring 113"},
            ],
        },
    )


def test_import_makes_a_draft_that_judges_nothing_for_that_patient_only(
    client, services, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    server, _ = _dev_setup(client, services, tmp_path)
    b = _second_patient(client)
    with live_server(server.app()) as base:
        services.settings.nhn_plans_base_url = base
        nhn_b = _seed(server, FNR_B)
        # A has no NHN plan: B's is never imported for A
        r = client.post(f"/api/v1/patients/{FNR}/plan/import-nhn")
        assert r.status_code == 404, r.text
        nhn_a = _seed(server, FNR)
        r = client.post(f"/api/v1/patients/{FNR}/plan/import-nhn", json={})
        assert r.status_code == 201, r.text
    cp = r.json()["carePlan"]
    assert r.json()["state"] == "draft" and cp["status"] == "draft" and "goal" not in cp
    assert cp["subject"]["reference"] != f"Patient/{b}"
    link = link_of(cp) or {}
    assert link["id"] == nhn_a and link["id"] != nhn_b and link["version"] == 1
    content = next(
        orjson.loads(e["valueString"]) for e in cp["extension"] if e["url"].endswith("plan-content")
    )
    assert content["title"] == "Plan fra sykehuset"
    assert [(c["zone"], c["signs"], c["patientActions"]) for c in content["content"]] == [
        ("green", ["Puster som vanlig"], ["Fortsett"]),
        ("red", ["Tung pust i hvile"], ["Ring 113"]),
    ]
    assert "Hentet fra Pasientens planer (NHN)" in cp["note"][0]["text"]
    # nothing was written on B; the draft judges nothing (no plan in force for A)
    plans_b = client.get("/fhir/CarePlan", params={"subject": f"Patient/{b}"}).json()
    assert plans_b.get("total", len(plans_b.get("entry") or [])) == 0
    versions = client.get(f"/api/v1/patients/{FNR}/plan/versions").json()
    assert [v["state"] for v in versions] == ["draft"]


def test_import_refuses_an_answer_carrying_another_persons_plan(
    client, services, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    server, _ = _dev_setup(client, services, tmp_path)
    _second_patient(client)
    with live_server(server.app()) as base:
        services.settings.nhn_plans_base_url = base
        _seed(server, FNR)
        _seed(server, FNR_B)
        server.answer_everyone = True  # a search answered with every patient's plans
        r = client.post(f"/api/v1/patients/{FNR}/plan/import-nhn")
    assert r.status_code == 502 and "another person" in r.text
    assert FNR_B not in r.text
    assert client.get(f"/api/v1/patients/{FNR}/plan/versions").json() == []


def test_cli_import_with_helseid(  # type: ignore[no-untyped-def]
    client, services, tmp_path: Path, national: National, monkeypatch
) -> None:
    from typer.testing import CliRunner

    from interop.cli import app
    from interop.config import reset_settings_cache

    guard = ApiGuard(national.helseid.issuer, "nhn:pasientens-planer", "nhn:pasientens-planer/api")
    server = LocalPlans(guard)
    address_book(client, tmp_path)
    with live_server(server.app()) as base:
        nhn_id = _seed(server, FNR)
        env = {
            "INTEROP_DATABASE_URL": services.settings.database_url,
            "INTEROP_HELSEID_TENANTS_FILE": str(national.helseid.tenants_file),
            "INTEROP_NHN_PLANS_BASE_URL": base,
            "INTEROP_NHN_PLANS_TENANT": "havbygd",
        }
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        reset_settings_cache()
        try:
            result = CliRunner().invoke(app, ["plans", "import-nhn", FNR])
            unknown = CliRunner().invoke(app, ["plans", "import-nhn", FNR, "--nhn-id", "x"])
        finally:
            reset_settings_cache()
    assert result.exit_code == 0, result.output
    assert "draft CarePlan/" in result.output
    assert unknown.exit_code == 1 and "not a plan of this patient" in unknown.output
    [draft] = client.get(f"/api/v1/patients/{FNR}/plan/versions").json()
    assert draft["state"] == "draft"
    plan = _care_plan(client, draft["id"])
    assert (link_of(plan) or {})["id"] == nhn_id
    assert guard.checked == 2 and server.problems == []


def test_a_create_whose_answer_was_lost_is_adopted_not_made_twice(
    client, services, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    from sqlalchemy import update

    from interop.store.context import WriteContext
    from interop.store.schema import outbox_table

    server, hpr = _dev_setup(client, services, tmp_path)
    with live_server(server.app()) as base:
        _endpoint(client, base)
        plan_id = _activate(client, hpr)
        _deliver(services)
        [nhn_id] = server.plans
        # the create went through but our record of it did not: the CarePlan has no link and
        # the message is delivered again
        with services.store.write(WriteContext.service()) as tx:
            stored = tx.get("CarePlan", plan_id)
            assert stored is not None
            cp = stored.json()
            cp.pop("meta")
            del cp["identifier"]
            cp["extension"] = [e for e in cp["extension"] if not e["url"].endswith("/nhn-plan")]
            if not cp["extension"]:
                del cp["extension"]
            tx.update("CarePlan", plan_id, cp)
        with services.engine.begin() as conn:
            conn.execute(update(outbox_table).values(status="queued", attempts=0))
        _deliver(services)
    assert list(server.plans) == [nhn_id]  # adopted, not created twice
    assert (link_of(_care_plan(client, plan_id)) or {})["id"] == nhn_id
    assert server.problems == []


def test_two_patients_two_nhn_plans_each_with_its_own_number(
    client, services, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    services.settings.nhn_plans_helseid = False
    ids = address_book(client, tmp_path)
    hpr = _gp_hpr(client, ids)
    b = patient_b(client, ids)
    server = LocalPlans()
    with live_server(server.app()) as base:
        _endpoint(client, base)
        plan_a = _activate(client, hpr)
        r = client.put(
            f"/api/v1/patients/{FNR_B}/plan",
            json={
                "approvedBy": {"hpr": hpr},
                "zones": [{**ZONES[0], "green": {"low": 60, "high": 90}}],
            },
        )
        assert r.status_code in (200, 201), r.text
        _deliver(services)
        by_number = {p[-1]["subject"]["value"]: p[-1] for p in server.plans.values()}
        assert set(by_number) == {FNR, FNR_B}
        assert by_number[FNR]["clinical_content"]["zones"][0]["condition"] == "Puls 50–100 /min"
        assert by_number[FNR_B]["clinical_content"]["zones"][0]["condition"] == "Puls 60–90 /min"
        # A's next version updates A's NHN plan; B's stays as it was
        _activate(client, hpr, [{**ZONES[0], "green": {"low": 55, "high": 95}}])
        _deliver(services)
    assert server.current(by_number[FNR]["id"])["version"] == 2
    assert server.current(by_number[FNR_B]["id"])["version"] == 1
    assert (link_of(_care_plan(client, plan_a)) or {})["id"] == by_number[FNR]["id"]
    rows = _plan_rows(services)
    assert {r.patient_id for r in rows} == {ids["patient"], b}
    assert all(r.status == "transport-acked" for r in rows) and server.problems == []
