"""A short-circuit for the hottest requests, ``GET /fhir/{type}/{id}`` and
``POST /fhir/{type}``, ahead of routing.

Matching a read against the whole route table costs more than the primary-key read itself;
this ASGI middleware recognises the shape, authenticates, applies the same access policy as
every other route and answers with the stored bytes. A plain create (no query string) goes
straight to the create endpoint, which does its own authentication and access checks.
Anything else (other paths, query strings, other methods) goes on to the normal routes.
"""

from __future__ import annotations

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from interop.api.auth import require_actor
from interop.api.responses import error_response, not_modified, unavailable_response
from interop.fhir.outcome import FhirError
from interop.fhir.validation import ID_PATTERN, SUPPORTED_TYPES

_TYPES = frozenset(SUPPORTED_TYPES)


class FhirReadFastPath:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and not scope.get("query_string"):
            path: str = scope["path"]
            method = scope["method"]
            if method == "GET" and path.startswith("/fhir/"):
                parts = path[6:].split("/")
                if len(parts) == 2 and parts[0] in _TYPES and ID_PATTERN.match(parts[1]):
                    await self._read(scope, receive, send, parts[0], parts[1])
                    return
            elif method == "POST" and path.startswith("/fhir/") and path[6:] in _TYPES:
                await self._create(scope, receive, send, path[6:])
                return
        await self.app(scope, receive, send)

    async def _create(self, scope: Scope, receive: Receive, send: Send, rtype: str) -> None:
        from interop.api.fhir import create

        scope["path_params"] = {"rtype": rtype}
        request = Request(scope, receive)
        response: Response
        try:
            response = await create(request)
        except FhirError as exc:
            response = error_response(exc)
        except HTTPException as exc:  # e.g. the body size limit: answered as on every route
            handler = request.app.exception_handlers[HTTPException]
            response = await handler(request, exc)
        except Exception as exc:  # the database unusable: a 503 here too (else re-raised)
            unavailable = unavailable_response(request, exc)
            if unavailable is None:
                raise
            response = unavailable
        await response(scope, receive, send)

    async def _read(self, scope: Scope, receive: Receive, send: Send, rtype: str, rid: str) -> None:
        request = Request(scope, receive)
        try:
            actor = await require_actor(request)
            services = request.app.state.services
            stored = await services.store.read_async(rtype, rid)
            await services.policy.check_read_async(actor, stored)
        except FhirError as exc:
            await error_response(exc)(scope, receive, send)
            return
        except Exception as exc:  # the database unusable: a 503 here too (else re-raised)
            unavailable = unavailable_response(request, exc)
            if unavailable is None:
                raise
            await unavailable(scope, receive, send)
            return
        etag = stored.etag.encode()
        headers = [
            (b"content-type", b"application/fhir+json"),
            (b"etag", etag),
            (b"last-modified", stored.last_modified.encode()),
        ]
        if not_modified(request.headers, stored.etag, stored.last_updated):
            await send({"type": "http.response.start", "status": 304, "headers": headers})
            await send({"type": "http.response.body", "body": b""})
            return
        headers.append((b"content-length", str(len(stored.content)).encode()))
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": stored.content})
