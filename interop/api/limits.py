"""Request limits: body sizes, enforced while the body is read, and no NUL in the URL.

Every request with a body gets a limit from the settings: ``max_kith_message_size`` for
``POST /api/v1/messages/inbound``, ``ingest_max_body_size[adapter]`` (else ``max_body_size``)
for ``POST /ingest/{adapter}``, ``max_body_size`` for everything else. A declared
``Content-Length`` over the limit is answered 413 before the route runs; otherwise the bytes
are counted as they arrive, and the read that passes the limit raises :class:`BodyTooLarge`
(413 through the normal error handlers), so no route buffers more than the limit and one chunk.

A NUL character in the path or the query string (``%00``) is refused with 400 before any
route sees it: no identifier, code or search value holds one, and PostgreSQL refuses it in a
query (a 500 otherwise).
"""

from __future__ import annotations

from fastapi import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from interop.api.responses import error_response
from interop.config import Settings, get_settings
from interop.fhir.outcome import FhirError, Issue

INBOUND_MESSAGES = "/api/v1/messages/inbound"
INGEST_PREFIX = "/ingest/"


class BodyTooLarge(HTTPException):
    """A request body over its limit (FastAPI's HTTPException: FastAPI passes it through its
    own body parsing untouched, and the handlers answer it as an OperationOutcome)."""

    def __init__(self, limit: int, what: str) -> None:
        super().__init__(413, too_large_text(limit, what))


def too_large_text(limit: int, what: str) -> str:
    return f"the request body is larger than the limit of {limit} bytes for {what}"


def body_limit(settings: Settings, path: str) -> tuple[int, str]:
    """(limit in bytes, what it is the limit for) of a request to ``path``."""
    if path == INBOUND_MESSAGES:
        return int(settings.max_kith_message_size), "a KITH message (max_kith_message_size)"
    if path.startswith(INGEST_PREFIX):
        adapter = path[len(INGEST_PREFIX) :].strip("/")
        size = settings.ingest_max_body_size.get(adapter)
        if size is not None:
            return int(size), f"adapter {adapter} (ingest_max_body_size)"
    return int(settings.max_body_size), "this request (max_body_size)"


def _settings(scope: Scope) -> Settings:
    app = scope.get("app")
    services = getattr(getattr(app, "state", None), "services", None)
    settings: Settings = services.settings if services is not None else get_settings()
    return settings


class RequestLimits:
    """ASGI middleware: the limits above, for every HTTP request."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if "\x00" in scope["path"] or b"%00" in scope.get("query_string", b""):
            refusal = Issue("error", "invalid", "the URL holds a NUL character (%00)")
            await error_response(FhirError(400, [refusal]))(scope, receive, send)
            return
        if scope["method"] in ("GET", "HEAD", "OPTIONS"):
            await self.app(scope, receive, send)
            return
        limit, what = body_limit(_settings(scope), scope["path"])
        declared = _content_length(scope)
        if declared is not None and declared > limit:
            response = error_response(
                FhirError(413, [Issue("error", "too-long", too_large_text(limit, what))])
            )
            await response(scope, receive, send)
            return
        seen = 0

        async def counted() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    raise BodyTooLarge(limit, what)
            return message

        await self.app(scope, counted, send)


def _content_length(scope: Scope) -> int | None:
    for name, value in scope["headers"]:
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None
