"""Browser apps: CORS per configured origin, and the SMART configuration document."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient

from interop.api.app import create_app
from interop.config import Settings

APP_ORIGIN = "https://app.kommune.example"
OTHER_ORIGIN = "https://evil.example"
ADMIN = {"Authorization": "Bearer test-admin-key"}


def _client(settings: Settings, services: Any, **changes: Any) -> TestClient:
    configured = Settings(**{**settings.model_dump(), **changes})
    services.settings = configured
    return TestClient(create_app(configured, services=services))


def test_preflight_from_an_allowed_origin_is_answered(settings, services) -> None:  # type: ignore[no-untyped-def]
    with _client(settings, services, cors_allowed_origins=APP_ORIGIN) as c:
        r = c.options(
            "/fhir/Patient",
            headers={
                "Origin": APP_ORIGIN,
                "Access-Control-Request-Method": "PATCH",
                "Access-Control-Request-Headers": "authorization, content-type, if-match",
            },
        )
        assert r.status_code == 200
        assert r.headers["access-control-allow-origin"] == APP_ORIGIN
        assert "PATCH" in r.headers["access-control-allow-methods"]
        assert "if-match" in r.headers["access-control-allow-headers"].lower()
        assert "access-control-allow-credentials" not in r.headers
        # the actual call carries the header and exposes what FHIR clients read
        r = c.get("/fhir/metadata", headers={"Origin": APP_ORIGIN})
        assert r.headers["access-control-allow-origin"] == APP_ORIGIN
        assert "ETag" in r.headers["access-control-expose-headers"]


def test_other_origins_get_no_cors_headers(settings, services) -> None:  # type: ignore[no-untyped-def]
    with _client(settings, services, cors_allowed_origins=APP_ORIGIN) as c:
        r = c.options(
            "/fhir/Patient",
            headers={"Origin": OTHER_ORIGIN, "Access-Control-Request-Method": "GET"},
        )
        assert r.status_code == 400
        assert "access-control-allow-origin" not in r.headers
        r = c.get("/fhir/metadata", headers={"Origin": OTHER_ORIGIN})
        assert "access-control-allow-origin" not in r.headers


def test_cors_is_off_by_default(client) -> None:  # type: ignore[no-untyped-def]
    r = client.get("/fhir/metadata", headers={"Origin": APP_ORIGIN})
    assert "access-control-allow-origin" not in r.headers


def test_credentials_echo_the_origin_and_still_need_authentication(settings, services) -> None:  # type: ignore[no-untyped-def]
    with _client(
        settings,
        services,
        cors_allowed_origins=f"{APP_ORIGIN}, https://b.example",
        cors_allow_credentials=True,
    ) as c:
        r = c.options(
            "/fhir/Patient",
            headers={"Origin": APP_ORIGIN, "Access-Control-Request-Method": "GET"},
        )
        assert r.headers["access-control-allow-origin"] == APP_ORIGIN
        assert r.headers["access-control-allow-credentials"] == "true"
        # CORS is not access: without credentials the call is still refused
        r = c.get("/fhir/Patient", headers={"Origin": APP_ORIGIN})
        assert r.status_code == 401
        assert r.headers["access-control-allow-origin"] == APP_ORIGIN
        r = c.get("/fhir/Patient", headers={"Origin": APP_ORIGIN, **ADMIN})
        assert r.status_code == 200


def test_wildcard_with_credentials_is_refused_at_start() -> None:
    with pytest.raises(ValueError, match="credentials"):
        Settings(cors_allowed_origins="*", cors_allow_credentials=True)


def test_smart_configuration_describes_helseid(settings, services) -> None:  # type: ignore[no-untyped-def]
    with _client(
        settings,
        services,
        helseid_issuer="https://helseid-sts.test.nhn.no",
        helseid_audience="dho-interop",
        helseid_scopes_supported="dho-interop/fhir.read dho-interop/fhir.write",
    ) as c:
        for path in ("/.well-known/smart-configuration", "/fhir/.well-known/smart-configuration"):
            r = c.get(path)
            assert r.status_code == 200, r.text
            assert r.headers["content-type"].startswith("application/json")
            doc = r.json()
            assert doc["token_endpoint"] == "https://helseid-sts.test.nhn.no/connect/token"
            assert doc["issuer"] == "https://helseid-sts.test.nhn.no"
            assert doc["scopes_supported"] == ["dho-interop/fhir.read", "dho-interop/fhir.write"]
            assert "private_key_jwt" in doc["token_endpoint_auth_methods_supported"]


def test_smart_configuration_without_helseid_is_404(client) -> None:  # type: ignore[no-untyped-def]
    r = client.get("/.well-known/smart-configuration")
    assert r.status_code == 404
    assert r.json()["resourceType"] == "OperationOutcome"


def test_the_capability_statement_says_what_is_configured(settings, services) -> None:  # type: ignore[no-untyped-def]
    """``rest.security``: CORS off and no SMART by default; with origins and HelseID
    configured, CORS on and SMART on FHIR with HelseID's authorize and token endpoints."""
    with _client(settings, services) as c:
        security = c.get("/fhir/metadata").json()["rest"][0]["security"]
        assert security["cors"] is False
        assert "service" not in security and "extension" not in security
    with _client(
        settings,
        services,
        cors_allowed_origins=APP_ORIGIN,
        helseid_issuer="https://helseid-sts.test.nhn.no",
        helseid_audience="dho-interop",
    ) as c:
        security = c.get("/fhir/metadata").json()["rest"][0]["security"]
        assert security["cors"] is True
        assert security["service"][0]["coding"][0]["code"] == "SMART-on-FHIR"
        uris = {e["url"]: e["valueUri"] for e in security["extension"][0]["extension"]}
        assert uris == {
            "authorize": "https://helseid-sts.test.nhn.no/connect/authorize",
            "token": "https://helseid-sts.test.nhn.no/connect/token",
        }
        smart = c.get("/.well-known/smart-configuration").json()
        assert uris["token"] == smart["token_endpoint"]
