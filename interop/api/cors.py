"""Cross-origin access for browser apps (CORS), per configured origin.

Only the origins in ``cors_allowed_origins`` get CORS headers; a preflight (``OPTIONS`` with
``Access-Control-Request-Method``) from any other origin is refused with 400 and no
``Access-Control-Allow-Origin``, so the browser blocks the call. With credentials allowed the
exact origin is echoed (never ``*``, which browsers refuse with credentials, and which the
settings refuse together with credentials). The headers FHIR clients need to read (ETag,
Location, Content-Location, Last-Modified) are exposed.

CORS is a browser rule, not access control: every request is still authenticated and decided
by the access policy like any other.
"""

from __future__ import annotations

from fastapi import FastAPI
from starlette.middleware.cors import CORSMiddleware

from interop.config import Settings

ALLOWED_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE")
ALLOWED_HEADERS = (
    "Accept",
    "Authorization",
    "Content-Type",
    "DPoP",
    "If-Match",
    "If-Modified-Since",
    "If-None-Exist",
    "If-None-Match",
    "Prefer",
    "X-Request-Id",
)
EXPOSED_HEADERS = ("Content-Location", "ETag", "Last-Modified", "Location", "X-Request-Id")


def install_cors(app: FastAPI, settings: Settings) -> None:
    """Add the CORS middleware (outermost) when origins are configured."""
    origins = settings.cors_origins()
    if not origins:
        return
    app.add_middleware(
        CORSMiddleware,
        allow_origins=origins,
        allow_credentials=settings.cors_allow_credentials,
        allow_methods=list(ALLOWED_METHODS),
        allow_headers=list(ALLOWED_HEADERS),
        expose_headers=list(EXPOSED_HEADERS),
        max_age=settings.cors_max_age_seconds,
    )
