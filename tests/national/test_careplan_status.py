"""NHN's older careplan service (HIT careplan): whether a patient has an active care plan there,
against the local contract server (``careplan_server.py``: bodies and answers checked with our
schema, the variant's headers, and the HelseID token with real signatures — a Bearer token with
both organisation numbers, or DPoP when the tenants file configures it so).

The answer names no patient: each answer must be the one for the patient asked about, the call
is made only for a patient of the service after the access check, and an answer off the
contract is an error, never a guess."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from interop.national.careplan_status import (
    CareplanStatusClient,
    CareplanStatusError,
    variant,
)
from interop.national.helseid import HelseIdClients
from interop.national.tenants import load_tenants
from interop.national.wiring import careplan_status_client
from tests.live_server import live_server
from tests.messaging.test_gp_flow import FNR, address_book
from tests.national.careplan_server import LocalCareplan
from tests.national.conftest import National
from tests.national.nhn_auth import ApiGuard, BearerGuard
from tests.national.test_plans import FNR_B, _second_patient

BEARER = {"nhn:patient-careplan", "nhn:careplan"}
TEST_NUMBER = "15720255178"
"""an NHN test-service number (valid only in the national test environments)"""


def _bearer(national: National, variant_name: str = "patient-careplan") -> LocalCareplan:
    national.helseid.issuer.token_endpoint.bearer_resources = set(BEARER)
    audience = "nhn:patient-careplan" if variant_name == "patient-careplan" else "nhn:careplan"
    guard = BearerGuard(national.helseid.issuer, audience, audience + "/api")
    return LocalCareplan(guard, variant=variant_name)


def _configure(services, national: National, base: str, **more: Any) -> None:  # type: ignore[no-untyped-def]
    s = services.settings
    s.helseid_tenants_file = national.helseid.tenants_file
    s.nhn_careplan_base_url = base
    s.nhn_careplan_tenant = "fjordvik"
    for name, value in more.items():
        setattr(s, name, value)


def _client(
    national: National, base: str, http: httpx.Client, *, test: bool = False
) -> CareplanStatusClient:
    clients = HelseIdClients(national.helseid.config)
    return CareplanStatusClient(
        base,
        http=http,
        auth=clients.for_tenant(national.helseid.config.tenants[0]).auth("careplan"),
        variant=variant("patient-careplan"),
        source_system="DHO Interop, test",
        test_environment=test,
    )


def test_status_per_patient_with_a_bearer_token(
    client, services, tmp_path: Path, national: National
) -> None:  # type: ignore[no-untyped-def]
    address_book(client, tmp_path)
    _second_patient(client)
    server = _bearer(national)
    server.set_status(FNR, True, "2026-12-01T13:05:00Z")
    server.set_status(FNR_B, False, None)
    with live_server(server.app()) as base:
        _configure(services, national, base)
        a = client.get(f"/api/v1/patients/{FNR}/plan/nhn-status")
        b = client.get(f"/api/v1/patients/{FNR_B}/plan/nhn-status")
        again = client.get(f"/api/v1/patients/{FNR}/plan/nhn-status")
    assert a.status_code == 200, a.text
    assert a.json()["activeCarePlan"] is True
    assert a.json()["text"] == (
        "Pasienten har en aktiv plan i Pasientens planer (NHN). Sist endret 01.12.2026 kl. 14:05."
    )
    assert b.json() == {
        "activeCarePlan": False,
        "lastChangedDateTime": None,
        "privacySetting": None,
        "text": "Pasienten har ingen aktiv plan i Pasientens planer (NHN).",
    }
    assert again.json() == a.json()
    # each call asked for its own patient only; one Bearer token (no DPoP) served all three
    assert server.asked == [FNR, FNR_B, FNR] and server.problems == []
    assert server.guard.checked == 3 and len(set(server.event_ids)) == 3
    assert national.helseid.issuer.token_endpoint.issued == 1


def test_the_answers_of_parallel_calls_stay_with_their_patients(national: National) -> None:
    server = _bearer(national)
    server.set_status(FNR, True, "2026-11-02T08:00:00+01:00")
    server.set_status(FNR_B, False, "2026-10-01T10:00:00Z")
    with live_server(server.app()) as base, httpx.Client() as http:
        api = _client(national, base, http)
        numbers = [FNR, FNR_B] * 20
        with ThreadPoolExecutor(8) as pool:
            answers = list(pool.map(api.status, numbers))
    for number, answer in zip(numbers, answers, strict=True):
        assert answer.national_id == number
        assert answer.active is (number == FNR)
    assert sorted(server.asked) == sorted(numbers) and server.problems == []
    assert FNR not in repr(answers[0])


def test_kjernejournal_variant_has_its_own_headers_audience_and_privacy(
    client, services, tmp_path: Path, national: National
) -> None:  # type: ignore[no-untyped-def]
    address_book(client, tmp_path)
    server = _bearer(national, "kjernejournal")
    server.set_status(FNR, True, "2026-06-30T22:30:00", {"isBlocked": True, "consent": False})
    with live_server(server.app()) as base:
        _configure(services, national, base, nhn_careplan_variant="kjernejournal")
        r = client.get(f"/api/v1/patients/{FNR}/plan/nhn-status")
    assert r.status_code == 200, r.text
    assert r.json()["privacySetting"] == {"isBlocked": True, "consent": False}
    # a time without a zone is Norwegian local time (mappings/national/nhn-careplan.yaml)
    assert r.json()["text"] == (
        "Pasienten har en aktiv plan i Pasientens planer (NHN). Sist endret 30.06.2026 kl. "
        "22:30. Personvern i kjernejournal: sperret."
    )
    assert server.problems == [] and server.guard.checked == 1


def test_dpop_when_the_tenants_file_configures_the_api_so(
    client, services, tmp_path: Path, national: National
) -> None:  # type: ignore[no-untyped-def]
    address_book(client, tmp_path)
    data = yaml.safe_load(national.helseid.tenants_file.read_text())
    data["apis"] = {
        "careplan": {
            "resource": "nhn:patient-careplan",
            "scope": "nhn:patient-careplan/api",
            "token_type": "DPoP",
        }
    }
    tenants_file = tmp_path / "dpop-tenants.yaml"
    tenants_file.write_text(yaml.safe_dump(data))
    assert load_tenants(tenants_file).api("careplan").token_type == "DPoP"
    guard = ApiGuard(national.helseid.issuer, "nhn:patient-careplan", "nhn:patient-careplan/api")
    server = LocalCareplan(guard)
    server.set_status(FNR, False, None)
    with live_server(server.app()) as base:
        _configure(services, national, base, helseid_tenants_file=tenants_file)
        r = client.get(f"/api/v1/patients/{FNR}/plan/nhn-status")
    assert r.status_code == 200, r.text
    assert guard.checked == 1 and server.problems == []


def test_an_answer_off_the_contract_is_an_error_never_a_guess(
    client, services, tmp_path: Path, national: National
) -> None:  # type: ignore[no-untyped-def]
    address_book(client, tmp_path)
    server = _bearer(national)
    with live_server(server.app()) as base:
        _configure(services, national, base)
        # NHN's own example with a trailing comma
        server.raw_answer = b'{"activeCarePlan": true, "lastChangedDateTime": null,}'
        trailing = client.get(f"/api/v1/patients/{FNR}/plan/nhn-status")
        server.raw_answer = json.dumps({"activeCarePlan": "yes"}).encode()
        not_bool = client.get(f"/api/v1/patients/{FNR}/plan/nhn-status")
        server.raw_answer = json.dumps(
            {"activeCarePlan": False, "lastChangedDateTime": "i går"}
        ).encode()
        bad_time = client.get(f"/api/v1/patients/{FNR}/plan/nhn-status")
    assert trailing.status_code == 502 and "not JSON" in trailing.text
    assert not_bool.status_code == 502 and "activeCarePlan" in not_bool.text
    assert bad_time.status_code == 502 and "lastChangedDateTime" in bad_time.text
    assert FNR not in trailing.text + not_bool.text + bad_time.text


def test_a_test_number_is_asked_about_only_in_a_test_environment(national: National) -> None:
    server = _bearer(national)
    with live_server(server.app()) as base, httpx.Client() as http:
        with pytest.raises(CareplanStatusError, match="testnummer"):
            _client(national, base, http).status(TEST_NUMBER)
        with pytest.raises(CareplanStatusError):
            _client(national, base, http).status("12345678901")
        assert server.asked == []
        assert _client(national, base, http, test=True).status(TEST_NUMBER).active is False
    assert server.asked == [TEST_NUMBER]


def test_configuration_errors_name_what_to_set(services, national: National) -> None:  # type: ignore[no-untyped-def]
    s = services.settings
    s.helseid_tenants_file = None
    s.nhn_careplan_base_url = None
    assert careplan_status_client(s) is None
    s.nhn_careplan_base_url = "http://127.0.0.1:9"
    with pytest.raises(CareplanStatusError, match="INTEROP_HELSEID_TENANTS_FILE"):
        careplan_status_client(s)
    s.helseid_tenants_file = national.helseid.tenants_file
    with pytest.raises(CareplanStatusError, match="INTEROP_NHN_CAREPLAN_TENANT"):
        careplan_status_client(s)  # two tenants, none named
    s.nhn_careplan_tenant = "havbygd"  # one organisation number only
    with pytest.raises(CareplanStatusError, match="orgnr_child"):
        careplan_status_client(s)
    s.nhn_careplan_tenant = "fjordvik"
    s.nhn_careplan_variant = "nhn-2027"
    with pytest.raises(CareplanStatusError, match="nhn-careplan.yaml"):
        careplan_status_client(s)


def test_cli_asks_only_about_our_patients(
    client, services, tmp_path: Path, national: National, monkeypatch
) -> None:  # type: ignore[no-untyped-def]
    from typer.testing import CliRunner

    from interop.cli import app
    from interop.config import reset_settings_cache

    address_book(client, tmp_path)
    server = _bearer(national)
    server.set_status(FNR, True, None)
    with live_server(server.app()) as base:
        env = {
            "INTEROP_DATABASE_URL": services.settings.database_url,
            "INTEROP_HELSEID_TENANTS_FILE": str(national.helseid.tenants_file),
            "INTEROP_NHN_CAREPLAN_BASE_URL": base,
            "INTEROP_NHN_CAREPLAN_TENANT": "fjordvik",
        }
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        reset_settings_cache()
        try:
            ours = CliRunner().invoke(app, ["plans", "status-nhn", FNR])
            stranger = CliRunner().invoke(app, ["plans", "status-nhn", FNR_B])
        finally:
            reset_settings_cache()
    assert ours.exit_code == 0, ours.output
    assert "Pasienten har en aktiv plan i Pasientens planer (NHN)." in ours.output
    assert stranger.exit_code == 1
    assert server.asked == [FNR] and server.problems == []
