"""FHIR JSON responses and error handling: every error is an OperationOutcome, never a bare 500."""

from __future__ import annotations

import logging
import sqlite3
from typing import Any

import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from sqlalchemy.exc import DBAPIError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response

from adapters import jsonsafe
from interop.fhir.decimals import keep_precision
from interop.fhir.outcome import FhirError, Issue, invalid_issues, outcome_bytes
from interop.store.unavailable import StoreUnavailable, unavailable_reason

FHIR_JSON = "application/fhir+json"
log = logging.getLogger("interop.api")


def fhir_response(
    content: bytes, status: int = 200, headers: dict[str, str] | None = None
) -> Response:
    return Response(
        content=content, status_code=status, media_type=FHIR_JSON, headers=headers or None
    )


def json_response(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return fhir_response(orjson.dumps(data), status, headers)


def error_response(exc: FhirError) -> Response:
    return fhir_response(outcome_bytes(exc.issues), exc.status, exc.headers)


async def parse_json_body(request: Request) -> Any:
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype and ctype not in (
        FHIR_JSON,
        "application/json",
        "application/json+fhir",
        "text/json",
    ):
        raise FhirError(
            415,
            [
                Issue(
                    "error",
                    "not-supported",
                    f"Content-Type {ctype!r} is not supported; send application/fhir+json",
                )
            ],
        )
    body = await request.body()
    if not body.strip():
        raise FhirError(400, [Issue("error", "required", "the request body is empty")])
    doc = load_json(body, _max_depth(request))
    if b"null" in body:
        where = jsonsafe.null_member_path(doc)
        if where is not None:
            raise FhirError(
                422,
                [
                    Issue(
                        "error",
                        "structure",
                        f"{where}: null is not allowed in FHIR JSON; leave the element out",
                        (where,),
                    )
                ],
            )
    return doc


def _max_depth(request: Request) -> int:
    services = getattr(request.app.state, "services", None)
    return int(services.settings.json_max_depth) if services is not None else jsonsafe.MAX_DEPTH


def load_json(body: bytes, max_depth: int = jsonsafe.MAX_DEPTH) -> Any:
    """Parse a JSON request body: 400 (an OperationOutcome) when it is not JSON, nests objects
    and arrays deeper than ``max_depth`` (the validators and the store recurse; a deeper
    document must never reach them) or holds a NUL character."""
    try:
        doc = jsonsafe.load(body, max_depth)
    except jsonsafe.UnsafeJson as exc:
        raise FhirError(400, [Issue("error", "structure", f"the body: {exc}")]) from None
    # FHIR decimals keep the text they were sent in (see interop.fhir.decimals)
    return keep_precision(body, doc)


def unavailable_response(request: Request, exc: BaseException) -> Response | None:
    """The database cannot be used now (its file gone or replaced, locked beyond the wait,
    the server unreachable): a 503 OperationOutcome saying so, never a 500. None for any
    other error (which stays what it is)."""
    reason = unavailable_reason(exc)
    if reason is None:
        return None
    log.warning("database unavailable on %s %s: %s", request.method, request.url.path, reason)
    return error_response(FhirError(503, [Issue("error", "transient", reason)]))


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(FhirError)
    async def _fhir_error(_request: Request, exc: FhirError) -> Response:
        return error_response(exc)

    @app.exception_handler(RequestValidationError)
    async def _validation(_request: Request, exc: RequestValidationError) -> Response:
        return error_response(FhirError(400, invalid_issues(exc.errors())))

    @app.exception_handler(StarletteHTTPException)
    async def _http(_request: Request, exc: StarletteHTTPException) -> Response:
        code = {
            404: "not-found",
            405: "not-supported",
            401: "login",
            403: "forbidden",
            413: "too-long",
        }.get(exc.status_code, "processing")
        return error_response(FhirError(exc.status_code, [Issue("error", code, str(exc.detail))]))

    async def _unavailable(request: Request, exc: Exception) -> Response:
        response = unavailable_response(request, exc)
        if response is None:
            raise exc
        return response

    for kind in (StoreUnavailable, DBAPIError, sqlite3.Error):
        app.add_exception_handler(kind, _unavailable)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> Response:
        unavailable = unavailable_response(request, exc)
        if unavailable is not None:  # raised where the handlers above do not reach
            return unavailable
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return error_response(
            FhirError(
                500,
                [Issue("fatal", "exception", f"internal error ({type(exc).__name__}); logged")],
            )
        )


def not_modified(headers: Any, etag: str, last_updated: int) -> bool:
    """Whether a conditional read is answered 304: ``If-None-Match`` names the current
    version's ETag, or (without ``If-None-Match``) ``If-Modified-Since`` is no earlier than
    the last change (to the second, as ``Last-Modified`` gives it). An unreadable date is
    ignored, as HTTP says."""
    inm = headers.get("if-none-match")
    if inm:
        return bool(inm.strip() == etag)
    ims = headers.get("if-modified-since")
    if not ims:
        return False
    from email.utils import parsedate_to_datetime

    try:
        since = parsedate_to_datetime(ims)
    except (TypeError, ValueError):
        return False
    if since.tzinfo is None:
        return False
    return int(since.timestamp()) >= last_updated // 1_000_000
