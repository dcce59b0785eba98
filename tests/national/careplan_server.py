"""A local NHN careplan service (the older HIT careplan, "Pasientens planer API") with its status
endpoint, for the contract tests.

Every request is checked against what NHN published (README pasientens-planer §B): ``POST
{path}`` only, ``Content-Type: application/json``, the variant's source-system header (3–512
characters) and event-id header (≤ 128), the body validated with jsonschema against our own
``careplan_status.schema.json`` (``StatusRequest``), and the caller's HelseID token — a Bearer
token with the required organisation-number claims (:class:`BearerGuard`), or a DPoP-bound token
with a fresh proof (:class:`ApiGuard`) when the test configures the API that way. Each answer is
validated against ``StatusResponse`` before it leaves. Statuses are kept per person number.
"""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from tests.national.nhn_auth import ApiGuard, BearerGuard, Unauthorized

SCHEMA = json.loads((Path(__file__).parent / "careplan_status.schema.json").read_text())
VARIANT_HEADERS = {
    "patient-careplan": ("nhn-source-system", "nhn-event-id"),
    "kjernejournal": ("hit-source-system", "hit-event-id"),
}


def _validator(name: str) -> Draft202012Validator:
    return Draft202012Validator({**SCHEMA, "$ref": f"#/$defs/{name}"})


class LocalCareplan:
    def __init__(self, guard: BearerGuard | ApiGuard, *, variant: str = "patient-careplan") -> None:
        self.guard = guard
        self.variant = variant
        self.request_schema = _validator("StatusRequest")
        self.response_schema = _validator("StatusResponse")
        self.statuses: dict[str, dict[str, Any]] = {}
        """person number → its answer"""
        self.asked: list[str] = []
        self.event_ids: list[str] = []
        self.problems: list[str] = []
        self.raw_answer: bytes | None = None
        """A faulty server: this body instead of the status (e.g. NHN's example with a
        trailing comma)."""
        self.lock = threading.Lock()

    def app(self) -> Starlette:
        return Starlette(routes=[Route("/api/careplan/status", self.status, methods=["POST"])])

    def set_status(
        self, nin: str, active: bool, changed: str | None, privacy: dict[str, bool] | None = None
    ) -> None:
        answer: dict[str, Any] = {"activeCarePlan": active, "lastChangedDateTime": changed}
        if self.variant == "kjernejournal":
            answer["privacySetting"] = privacy or {
                "consent": False,
                "hasReservationKjernejournal": False,
                "isRestricted": False,
                "isBlocked": False,
            }
        self.statuses[nin] = answer

    def _problem(self, text: str, status: int = 400) -> Response:
        with self.lock:
            self.problems.append(text)
        return JSONResponse({"title": text}, status_code=status)

    async def status(self, request: Request) -> Response:
        headers = {k.lower(): v for k, v in request.headers.items()}
        try:
            self.guard.check("POST", str(request.url), headers)
        except Unauthorized as exc:
            return self._problem(exc.detail, 401)
        source, event = VARIANT_HEADERS[self.variant]
        if not 3 <= len(headers.get(source, "")) <= 512:
            return self._problem(f"{source} must be 3–512 characters")
        if len(headers.get(event, "")) > 128:
            return self._problem(f"{event} longer than 128 characters")
        other = {s for v in VARIANT_HEADERS.values() for s in v} - {source, event}
        if other & headers.keys():
            return self._problem(f"another variant's headers: {sorted(other & headers.keys())}")
        if "nhn-patient-nin" in headers:
            return self._problem("the machine-to-machine status call carries no patient header")
        if headers.get("content-type", "").split(";")[0].strip() != "application/json":
            return self._problem("Content-Type must be application/json", 415)
        try:
            body = json.loads(await request.body())
        except ValueError:
            return self._problem("the body is not JSON")
        errors = [e.message for e in self.request_schema.iter_errors(body)]
        if errors:
            return self._problem(f"StatusRequest: {errors}")
        nin = str(body["nin"])
        with self.lock:
            self.asked.append(nin)
            if event in headers:
                self.event_ids.append(headers[event])
        if self.raw_answer is not None:
            return Response(self.raw_answer, media_type="application/json")
        answer = self.statuses.get(nin)
        if answer is None:
            answer = {"activeCarePlan": False, "lastChangedDateTime": None}
            if self.variant == "kjernejournal":
                answer["privacySetting"] = {}
        errors = [e.message for e in self.response_schema.iter_errors(answer)]
        if errors:
            return self._problem(f"StatusResponse (the server's own answer): {errors}", 500)
        return JSONResponse(answer)
