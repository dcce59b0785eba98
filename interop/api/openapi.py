"""The OpenAPI document as a newcomer needs it: the security schemes every protected route
takes (API key, HelseID access token, DPoP-bound HelseID token), and the routes anyone may call
marked as such."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

PUBLIC = ("/", "/healthz", "/readyz", "/metrics", "/fhir/metadata", "/openapi.json")
"""Routes that answer without credentials."""

SECURITY_SCHEMES: dict[str, Any] = {
    "apiKey": {
        "type": "http",
        "scheme": "bearer",
        "description": "An API key made by an operator (`interop actors create`), or the admin "
        "key: `Authorization: Bearer <key>`.",
    },
    "helseId": {
        "type": "http",
        "scheme": "bearer",
        "bearerFormat": "JWT",
        "description": "A HelseID access token that is not DPoP-bound: "
        "`Authorization: Bearer <token>`.",
    },
    "helseIdDpop": {
        "type": "apiKey",
        "in": "header",
        "name": "Authorization",
        "description": "A DPoP-bound HelseID access token: `Authorization: DPoP <token>` with a "
        "`DPoP` proof header for the request's method and URL (RFC 9449).",
    },
}


def install(app: FastAPI) -> None:
    def schema() -> dict[str, Any]:
        if app.openapi_schema:
            return app.openapi_schema
        doc = get_openapi(
            title=app.title,
            version=app.version,
            description=app.description,
            routes=app.routes,
        )
        doc.setdefault("components", {})["securitySchemes"] = SECURITY_SCHEMES
        doc["security"] = [{name: []} for name in SECURITY_SCHEMES]
        for path, operations in doc.get("paths", {}).items():
            if path in PUBLIC:
                for op in operations.values():
                    op["security"] = []
        app.openapi_schema = doc
        return doc

    app.openapi = schema  # type: ignore[method-assign]
