"""A local NHN *Pasientens planer* (2026, v0.4.0) for the contract tests.

Every request body is validated with jsonschema against ``plan.schema.derived.json``
(``CreateRequest``, ``UpdateRequest``) and every answer against ``Response`` /
``HistoryResponse``; the semantics the changelog gives are kept: the server assigns ``id``,
``version`` and ``updated_at``; a create carrying ``version`` is refused; an update without
``version`` is 422, with another than the current one 409; the clinical content has its own
version, raised only when the content changes; search needs ``patient`` (400 without);
``/plan/{id}/history`` and ``/plan/{id}/version/{n}``. With a guard, every call must carry a
HelseID access token bound to a DPoP key and a fresh DPoP proof (real signatures).
"""

from __future__ import annotations

import json
import threading
import uuid
from datetime import UTC, datetime
from typing import Any

from jsonschema import Draft202012Validator
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from tests.conftest import STANDARDS
from tests.national.nhn_auth import ApiGuard, Unauthorized

SCHEMA_PATH = STANDARDS / "nhn" / "pasientens-planer" / "plan.schema.derived.json"


def _validators() -> dict[str, Draft202012Validator]:
    schema = json.loads(SCHEMA_PATH.read_text())
    return {
        name: Draft202012Validator({**schema, "$ref": f"#/$defs/{name}"})
        for name in ("CreateRequest", "UpdateRequest", "Response", "HistoryResponse")
    }


def _content(cc: dict[str, Any] | None) -> dict[str, Any]:
    cc = cc or {}
    return {k: cc.get(k) for k in ("title", "description", "zones")}


class LocalPlans:
    def __init__(self, guard: ApiGuard | None = None) -> None:
        self.guard = guard
        self.validators = _validators()
        self.plans: dict[str, list[dict[str, Any]]] = {}
        """id → every version (full Response), oldest first"""
        self.requests: list[tuple[str, str, dict[str, Any] | None]] = []
        self.problems: list[str] = []
        self.answer_everyone = False
        """A faulty server: a search answers with every patient's plans."""
        self.lock = threading.Lock()

    def app(self) -> Starlette:
        return Starlette(
            routes=[
                Route("/plan", self.collection, methods=["GET", "POST"]),
                Route("/plan/{id}", self.one, methods=["GET", "PUT"]),
                Route("/plan/{id}/history", self.history, methods=["GET"]),
                Route("/plan/{id}/version/{version}", self.at_version, methods=["GET"]),
            ]
        )

    # ---- what a test does on the server's side ------------------------------------------
    def current(self, plan_id: str) -> dict[str, Any]:
        return self.plans[plan_id][-1]

    def change_by_someone_else(
        self, plan_id: str, *, zones: list[dict[str, str]] | None = None, comment: str = ""
    ) -> dict[str, Any]:
        """Another system's update (a GP's EPJ): a new version, with other zones if given."""
        with self.lock:
            cur = self.current(plan_id)
            new = json.loads(json.dumps(cur))
            new["version"] += 1
            new["updated_at"] = datetime.now(UTC).isoformat()
            new["updated_by"] = {"system": "Fastlegens EPJ", "name": "Rita Lin"}
            new["comment"] = comment or "endret av fastlegen"
            if zones is not None:
                new["clinical_content"]["zones"] = zones
                new["clinical_content"]["version"] += 1
            self.plans[plan_id].append(new)
            return new

    def seed(self, subject: dict[str, Any], content: dict[str, Any], status: str = "active") -> str:
        """A plan someone else made for a patient (for imports)."""
        pid = str(uuid.uuid4())
        self.plans[pid] = [
            {
                "id": pid,
                "version": 1,
                "status": status,
                "updated_at": datetime.now(UTC).isoformat(),
                "updated_by": {"system": "Sykehusets EPJ"},
                "comment": "opprettet",
                "subject": subject,
                "clinical_content": {"version": 1, **content},
            }
        ]
        return pid

    # ---- the API ----------------------------------------------------------------------------
    def _guarded(self, request: Request) -> Response | None:
        if self.guard is None:
            if "authorization" in request.headers or "dpop" in request.headers:
                self.problems.append("HelseID headers sent to an environment without HelseID")
            return None
        headers = {k.lower(): v for k, v in request.headers.items()}
        try:
            self.guard.check(request.method, str(request.url), headers)
        except Unauthorized as exc:
            return Response(status_code=401, headers={"WWW-Authenticate": exc.www})
        return None

    def _answer(self, body: Any, status: int = 200, schema: str = "Response") -> Response:
        for item in body if isinstance(body, list) else [body]:
            errors = [e.message for e in self.validators[schema].iter_errors(item)]
            if errors:
                self.problems.append(f"our answer breaks {schema}: {errors}")
        return JSONResponse(body, status)

    async def _body(self, request: Request, schema: str) -> dict[str, Any] | Response:
        if not request.headers.get("content-type", "").startswith("application/json"):
            return JSONResponse({"detail": "application/json only"}, 415)
        try:
            body = json.loads(await request.body())
        except ValueError:
            return JSONResponse({"detail": "not JSON"}, 400)
        self.requests.append((request.method, request.url.path, body))
        errors = sorted(self.validators[schema].iter_errors(body), key=str)
        if errors:
            self.problems.append(f"{schema}: {[e.message for e in errors]}")
            status = 422 if schema == "UpdateRequest" and "version" not in body else 400
            return JSONResponse({"detail": [e.message for e in errors]}, status)
        return dict(body)

    async def collection(self, request: Request) -> Response:
        if (denied := self._guarded(request)) is not None:
            return denied
        if request.method == "GET":
            patient = request.query_params.get("patient")
            if not patient:
                return JSONResponse({"detail": "patient is required"}, 400)
            found = [
                v[-1]
                for v in self.plans.values()
                if self.answer_everyone or (v[-1]["subject"] or {}).get("value") == patient
            ]
            return self._answer(found)
        body = await self._body(request, "CreateRequest")
        if isinstance(body, Response):
            return body
        if not (body.get("subject") or {}).get("value"):
            self.problems.append("create without subject")
            return JSONResponse({"detail": "subject is required"}, 400)
        with self.lock:
            pid = str(uuid.uuid4())
            plan = {
                "id": pid,
                "version": 1,
                "status": body.get("status", "active"),
                "updated_at": datetime.now(UTC).isoformat(),
                "updated_by": body.get("updated_by") or {},
                "comment": body.get("comment", ""),
                "subject": body["subject"],
                "clinical_content": {"version": 1, **_content(body.get("clinical_content"))},
            }
            self.plans[pid] = [plan]
        return self._answer(plan, 201)

    async def one(self, request: Request) -> Response:
        if (denied := self._guarded(request)) is not None:
            return denied
        pid = request.path_params["id"]
        try:
            uuid.UUID(pid)
        except ValueError:
            return JSONResponse({"detail": "bad id"}, 400)
        if pid not in self.plans:
            return JSONResponse({"detail": "not found"}, 404)
        if request.method == "GET":
            return self._answer(self.current(pid))
        body = await self._body(request, "UpdateRequest")
        if isinstance(body, Response):
            return body
        with self.lock:
            cur = self.current(pid)
            if body["version"] != cur["version"]:
                return JSONResponse(
                    {"detail": f"version {body['version']} is not {cur['version']}"}, 409
                )
            if "subject" in body and body["subject"] != cur["subject"]:
                self.problems.append("an update tried to change the subject")
                return JSONResponse({"detail": "subject is read-only"}, 422)
            new = json.loads(json.dumps(cur))
            new["version"] += 1
            new["updated_at"] = datetime.now(UTC).isoformat()
            for k in ("status", "comment", "updated_by"):
                if k in body:
                    new[k] = body[k]
            if "clinical_content" in body:
                content = _content(body["clinical_content"])
                if content != _content(cur["clinical_content"]):
                    new["clinical_content"] = {
                        "version": cur["clinical_content"]["version"] + 1,
                        **content,
                    }
            self.plans[pid].append(new)
        return self._answer(new)

    async def history(self, request: Request) -> Response:
        if (denied := self._guarded(request)) is not None:
            return denied
        versions = self.plans.get(request.path_params["id"])
        if versions is None:
            return JSONResponse({"detail": "not found"}, 404)
        keys = ("version", "status", "updated_at", "updated_by", "comment")
        return self._answer([{k: v[k] for k in keys} for v in versions], schema="HistoryResponse")

    async def at_version(self, request: Request) -> Response:
        if (denied := self._guarded(request)) is not None:
            return denied
        versions = self.plans.get(request.path_params["id"])
        try:
            n = int(request.path_params["version"])
        except ValueError:
            return JSONResponse({"detail": "bad version"}, 400)
        if versions is None or not 1 <= n <= len(versions):
            return JSONResponse({"detail": "not found"}, 404)
        return self._answer(versions[n - 1])
