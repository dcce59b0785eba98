"""API keys: revocation reaches every API process within seconds, keys can expire, the key
cache is bounded, and ``?access_token=`` works only on the HTML summary page."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

from fastapi.testclient import TestClient

FNR_SYSTEM = "urn:oid:2.16.578.1.12.4.1.4.1"
FNR = "13031353453"


def _key(client, **extra) -> tuple[str, str]:  # type: ignore[no-untyped-def]
    r = client.post("/api/v1/actors", json={"role": "followup", "name": "Drift", **extra})
    assert r.status_code == 201, r.text
    return r.json()["id"], r.json()["key"]


def _auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def _key_resolver(app):  # type: ignore[no-untyped-def]
    from interop.access.actors import KeyResolver

    return next(r for r in app.state.actor_resolvers if isinstance(r, KeyResolver))


def test_default_cache_time_keeps_revocation_within_five_seconds() -> None:
    from interop.config import Settings

    assert 0 < Settings().key_cache_seconds <= 5


def test_revocation_reaches_another_api_process(client, settings) -> None:  # type: ignore[no-untyped-def]
    from interop.api.app import create_app

    settings.key_cache_seconds = 0.3
    actor_id, key = _key(client)
    with TestClient(create_app(settings, services=client.app.state.services)) as other:
        assert other.get("/fhir/Organization", headers=_auth(key)).status_code == 200
        assert client.get("/fhir/Organization", headers=_auth(key)).status_code == 200
        assert client.delete(f"/api/v1/actors/{actor_id}").status_code == 200
        r = client.get("/fhir/Organization", headers=_auth(key))  # the revoking process: at once
        assert r.status_code == 401 and "revoked" in r.text
        deadline = time.monotonic() + 5
        while other.get("/fhir/Organization", headers=_auth(key)).status_code == 200:
            assert time.monotonic() < deadline, "the other process still accepts a revoked key"
            time.sleep(0.05)
        r = other.get("/fhir/Organization", headers=_auth(key))
        assert r.status_code == 401 and "revoked" in r.text
        assert 'error="invalid_token"' in r.headers["www-authenticate"]


def test_keys_expire(client) -> None:  # type: ignore[no-untyped-def]
    soon = (datetime.now(UTC) + timedelta(seconds=1)).isoformat()
    actor_id, key = _key(client, expires=soon)
    assert client.get("/fhir/Organization", headers=_auth(key)).status_code == 200
    listed = {a["id"]: a for a in client.get("/api/v1/actors").json()}
    assert listed[actor_id]["expires"] is not None
    time.sleep(max(0.0, (datetime.fromisoformat(soon) - datetime.now(UTC)).total_seconds()) + 0.05)
    r = client.get("/fhir/Organization", headers=_auth(key))  # cached, and still refused
    assert r.status_code == 401 and "expired at" in r.text
    assert r.json()["resourceType"] == "OperationOutcome"
    _other_id, lasting = _key(client, expires="2099-01-01T00:00:00Z")
    assert client.get("/fhir/Organization", headers=_auth(lasting)).status_code == 200


def test_bad_expiry_is_refused(client) -> None:  # type: ignore[no-untyped-def]
    for value, text in (
        ("2020-01-01T00:00:00Z", "in the past"),
        ("2099-01-01T00:00:00", "UTC offset"),
        ("next tuesday", "not an ISO 8601 instant"),
    ):
        r = client.post("/api/v1/actors", json={"role": "vendor", "expires": value})
        assert r.status_code == 422 and text in r.text, r.text
        assert r.json()["issue"][0]["expression"] == ["expires"]


def test_unknown_keys_are_not_cached_without_bound(client, settings) -> None:  # type: ignore[no-untyped-def]
    settings.key_cache_max_entries = 50
    resolver = _key_resolver(client.app)
    resolver.clear()
    _id, key = _key(client)
    for n in range(200):
        assert client.get("/fhir/Organization", headers=_auth(f"made-up-{n}")).status_code == 401
        assert resolver.cached <= 50
    assert resolver.cached == 50
    assert client.get("/fhir/Organization", headers=_auth(key)).status_code == 200


def test_access_token_in_the_url_only_on_the_html_summary(client) -> None:  # type: ignore[no-untyped-def]
    r = client.post(
        "/fhir/Patient",
        json={"resourceType": "Patient", "identifier": [{"system": FNR_SYSTEM, "value": FNR}]},
    )
    assert r.status_code == 201, r.text
    pid = r.json()["id"]
    key = "test-admin-key"
    with TestClient(client.app) as browser:  # no Authorization header
        r = browser.get(
            f"/api/v1/patients/{FNR}/summary?view=followup&access_token={key}",
            headers={"Accept": "text/html"},
        )
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
        for url, accept in (
            (
                f"/api/v1/patients/{FNR}/summary?view=followup&access_token={key}",
                "application/json",
            ),
            (f"/fhir/Patient?access_token={key}", "text/html"),
            (f"/fhir/Patient/{pid}?access_token={key}", "text/html"),
            (f"/fhir/Patient/{pid}/$summary?view=followup&access_token={key}", "text/html"),
            (f"/api/v1/patients/{FNR}/plan?access_token={key}", "text/html"),
        ):
            r = browser.get(url, headers={"Accept": accept})
            assert r.status_code == 401, (url, r.text)
