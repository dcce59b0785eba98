"""``/.well-known/smart-configuration``: how a SMART app gets a token for this API.

The tokens come from HelseID (NHN's OpenID Connect server), so the document describes
HelseID's endpoints and the scopes this API offers. Without HelseID configured there is no
authorization server to describe: 404 with an OperationOutcome. Public (no credentials), as
SMART App Launch requires; it holds nothing about patients.
"""

from __future__ import annotations

from typing import Any

import orjson
from fastapi import APIRouter, Request
from starlette.responses import Response

from interop.config import Settings
from interop.fhir.outcome import error

router = APIRouter()


def smart_configuration(settings: Settings) -> dict[str, Any]:
    issuer = (settings.helseid_issuer or "").rstrip("/")
    scopes = (settings.helseid_scopes_supported or settings.helseid_required_scopes).split()
    return {
        "issuer": issuer,
        "jwks_uri": settings.helseid_jwks_uri or f"{issuer}/.well-known/openid-configuration/jwks",
        "authorization_endpoint": settings.helseid_authorization_endpoint
        or f"{issuer}/connect/authorize",
        "token_endpoint": settings.helseid_token_endpoint or f"{issuer}/connect/token",
        "token_endpoint_auth_methods_supported": ["private_key_jwt"],
        "grant_types_supported": ["authorization_code", "client_credentials"],
        "scopes_supported": scopes,
        "response_types_supported": ["code"],
        "code_challenge_methods_supported": ["S256"],
        "dpop_signing_alg_values_supported": ["RS256", "PS256", "ES256"],
        "capabilities": [
            "client-confidential-asymmetric",
            "permission-offline",
            "authorize-post",
        ],
    }


OAUTH_URIS = "http://fhir-registry.smarthealthit.org/StructureDefinition/oauth-uris"
SMART_SERVICE = {
    "coding": [
        {
            "system": "http://terminology.hl7.org/CodeSystem/restful-security-service",
            "code": "SMART-on-FHIR",
        }
    ]
}


def capability_security(settings: Settings) -> dict[str, Any]:
    """``rest.security`` of the CapabilityStatement: whether browsers may call the API
    (CORS origins configured), and once HelseID is configured, SMART on FHIR with its
    authorize and token endpoints (the ``oauth-uris`` extension that SMART clients read when
    they do not ask ``/.well-known/smart-configuration``)."""
    security: dict[str, Any] = {
        "cors": bool(settings.cors_origins()),
        "description": "Authorization: Bearer <API key or signed JWT>",
    }
    if settings.helseid_issuer:
        smart = smart_configuration(settings)
        security["service"] = [SMART_SERVICE]
        security["extension"] = [
            {
                "url": OAUTH_URIS,
                "extension": [
                    {"url": "authorize", "valueUri": smart["authorization_endpoint"]},
                    {"url": "token", "valueUri": smart["token_endpoint"]},
                ],
            }
        ]
        security["description"] = (
            "Authorization: Bearer <API key, or a HelseID access token (SMART on FHIR, DPoP)>"
        )
    return security


@router.get("/.well-known/smart-configuration")
@router.get("/fhir/.well-known/smart-configuration")
async def well_known_smart(request: Request) -> Response:
    settings: Settings = request.app.state.services.settings
    if not settings.helseid_issuer:
        raise error(
            404, "not-found", "no authorization server is configured (HelseID is not set up)"
        )
    return Response(orjson.dumps(smart_configuration(settings)), media_type="application/json")
