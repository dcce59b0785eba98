"""A short-circuit for the hottest request, ``GET /fhir/{type}/{id}``, ahead of routing.

Matching a read against the whole route table costs more than the primary-key read itself;
this ASGI middleware recognises the shape, authenticates, applies the same access policy as
every other route and answers with the stored bytes. Anything else (other paths, query
strings, other methods) goes on to the normal routes.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.types import ASGIApp, Receive, Scope, Send

from interop.api.auth import require_actor
from interop.api.responses import error_response
from interop.fhir.outcome import FhirError
from interop.fhir.validation import ID_PATTERN, SUPPORTED_TYPES

_TYPES = frozenset(SUPPORTED_TYPES)


class FhirReadFastPath:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "GET" and not scope.get("query_string"):
            path: str = scope["path"]
            if path.startswith("/fhir/"):
                parts = path[6:].split("/")
                if len(parts) == 2 and parts[0] in _TYPES and ID_PATTERN.match(parts[1]):
                    await self._read(scope, receive, send, parts[0], parts[1])
                    return
        await self.app(scope, receive, send)

    async def _read(self, scope: Scope, receive: Receive, send: Send, rtype: str, rid: str) -> None:
        request = Request(scope, receive)
        try:
            actor = await require_actor(request)
            stored = request.app.state.services.store.read(rtype, rid)
            request.app.state.policy.check_read(actor, stored)
        except FhirError as exc:
            await error_response(exc)(scope, receive, send)
            return
        etag = stored.etag.encode()
        headers = [
            (b"content-type", b"application/fhir+json"),
            (b"etag", etag),
            (b"last-modified", stored.last_modified.encode()),
        ]
        inm = request.headers.get("if-none-match")
        if inm and inm.strip().encode() == etag:
            await send({"type": "http.response.start", "status": 304, "headers": headers})
            await send({"type": "http.response.body", "body": b""})
            return
        headers.append((b"content-length", str(len(stored.content)).encode()))
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": stored.content})
