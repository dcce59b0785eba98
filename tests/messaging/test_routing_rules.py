"""Routing rules beyond the red default: yellow when the plan says so, plan changes to the
municipal EPJ's subscribed Endpoint."""

from __future__ import annotations

from pathlib import Path

import orjson

from interop.messaging.addressbook import TRANSPORT_SYSTEM
from interop.routing.rules import SUBSCRIPTION_SYSTEM
from tests.messaging.test_gp_flow import FNR, _heart_rate, _ingest, _outbox, _post, address_book

_tick = iter(range(-1, -100, -1))


def _hr(value: str):  # type: ignore[no-untyped-def]
    """A measurement just after the plan now in force (a few seconds ahead, within the skew
    the ingest allows), each one later than the one before."""
    return _heart_rate(value, next(_tick) / 30)


def _gp_hpr(client) -> str:  # type: ignore[no-untyped-def]
    """The HPR number of the patient's GP in the address book (who approves the plans)."""
    bundle = client.get("/fhir/Practitioner").json()
    return str(bundle["entry"][0]["resource"]["identifier"][0]["value"])


def _plan(client, notify: list[str] | None = None) -> dict[str, object]:  # type: ignore[no-untyped-def]
    body: dict[str, object] = {
        "approvedBy": {"hpr": _gp_hpr(client)},
        "zones": [
            {
                "code": "8867-4",
                "unit": "/min",
                "green": {"low": 50, "high": 100},
                "yellow": {"low": 40, "high": 120},
                "actions": {"yellow": "Ring pasienten samme dag.", "red": "Ring legevakt."},
            }
        ],
    }
    if notify is not None:
        body["notifyGp"] = notify
    return body


def test_yellow_goes_to_the_gp_only_when_the_plan_says_so(client, services, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    address_book(client, tmp_path)
    assert client.put(f"/api/v1/patients/{FNR}/plan", json=_plan(client)).status_code in (200, 201)
    _ingest(services, _hr("110"))  # yellow
    assert [r.event for r in _outbox(services)] == []
    r = client.put(f"/api/v1/patients/{FNR}/plan", json=_plan(client, ["yellow"]))
    assert r.status_code in (200, 201), r.text
    _ingest(services, _hr("112"))  # yellow on the still open Task: no new event
    _ingest(services, _hr("130"))  # red: escalation
    assert [r.event for r in _outbox(services)] == ["triage.red"]


def test_yellow_with_notify_gp_on_a_fresh_deviation(client, services, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    address_book(client, tmp_path)
    assert client.put(
        f"/api/v1/patients/{FNR}/plan", json=_plan(client, ["yellow"])
    ).status_code in (
        200,
        201,
    )
    _ingest(services, _hr("110"))
    [row] = _outbox(services)
    assert row.event == "triage.yellow" and row.kind == "plo-helseopplysninger-lege"
    assert b"Gult avvik" in bytes(row.payload) and b"Ring pasienten samme dag." in bytes(
        row.payload
    )
    assert (
        client.put(f"/api/v1/patients/{FNR}/plan", json=_plan(client, ["purple"])).status_code
        == 422
    )


def test_plan_change_goes_to_subscribed_endpoints(client, services, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    address_book(client, tmp_path)
    epj = _post(
        client,
        {
            "resourceType": "Endpoint",
            "status": "active",
            "connectionType": {"system": TRANSPORT_SYSTEM, "code": "http"},
            "payloadType": [{"coding": [{"system": SUBSCRIPTION_SYSTEM, "code": "careplan"}]}],
            "address": "http://127.0.0.1:9/epj/careplans",
        },
    )
    assert client.put(f"/api/v1/patients/{FNR}/plan", json=_plan(client)).status_code in (200, 201)
    [row] = _outbox(services)
    assert row.event == "plan.changed" and row.destination == f"Endpoint/{epj}"
    assert row.transport == "http" and row.content_type == "application/fhir+json"
    careplan = orjson.loads(bytes(row.payload))
    assert careplan["resourceType"] == "CarePlan" and row.focus == f"CarePlan/{careplan['id']}"
