"""A local Adresseregisteret (CommunicationParty API) held to
``standards/nhn/adresseregisteret/openapi/communicationparty-api-v1.json``: every request and
answer is validated with openapi-core; calls need a HelseID DPoP token for ``nhn:cp-api``."""

from __future__ import annotations

import json
import re
from typing import Any

from openapi_core import OpenAPI
from openapi_core.testing import MockRequest, MockResponse
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from tests.conftest import STANDARDS
from tests.national.nhn_auth import ApiGuard, Unauthorized

SPEC_PATH = STANDARDS / "nhn" / "adresseregisteret" / "openapi" / "communicationparty-api-v1.json"
HOST = "https://cpapi.test.grunndata.nhn.no"


def person(her: int, name: str, hpr: int, parent: tuple[int, str, str]) -> dict[str, Any]:
    return {
        "herId": her,
        "name": name,
        "displayName": name,
        "type": "Person",
        "personDetails": {
            "hprNumber": hpr,
            "parentOrganization": {
                "herId": parent[0],
                "name": parent[1],
                "organizationNumber": parent[2],
            },
        },
        "ediAddress": "meldingstjener-api@testedi.nhn.no",
        "amqpTransportStatus": "Inherited",
    }


def organisation(her: int, name: str, orgnr: str, persons: list[int]) -> dict[str, Any]:
    return {
        "herId": her,
        "name": name,
        "displayName": name,
        "type": "Organization",
        "organizationDetails": {
            "organizationNumber": orgnr,
            "businessType": {"codeListId": "9040", "value": "LEGE", "name": "Legekontor"},
            "persons": persons,
            "services": [],
        },
        "ediAddress": "meldingstjener-api@testedi.nhn.no",
        "amqpTransportStatus": "Inherited",
    }


class Adresseregisteret:
    def __init__(self, guard: ApiGuard) -> None:
        self.guard = guard
        spec = json.loads(SPEC_PATH.read_text())
        spec["components"].setdefault("securitySchemes", {})["DPoP"] = {
            "type": "http",
            "scheme": "dpop",
        }
        spec["security"] = [{"DPoP": []}]
        self.openapi = OpenAPI.from_dict(spec)
        self.parties: dict[int, dict[str, Any]] = {}
        self.certificates: dict[tuple[int, str], dict[str, Any]] = {}
        self.violations: list[str] = []
        self.calls: list[tuple[str, str, int]] = []

    def app(self) -> Starlette:
        return Starlette(routes=[Route("/{path:path}", self.handle, methods=["GET", "POST"])])

    async def handle(self, request: Request) -> Response:
        body = await request.body()
        headers = {k.lower(): v for k, v in request.headers.items()}
        oa_request = MockRequest(
            HOST,
            request.method.lower(),
            request.url.path,
            args=list(request.query_params.multi_items()),
            headers=headers,
            data=body or None,
            content_type=headers.get("content-type", "application/json").split(";")[0],
        )
        result = self.openapi.unmarshal_request(oa_request)
        problems = [str(e.__cause__ or e) for e in result.errors]
        if problems:
            response = Response(json.dumps({"title": "Bad request", "errors": problems}), 400)
        else:
            try:
                self.guard.check(request.method, str(request.url), headers)
                status, answer = self._route(request.method, request.url.path, body)
                response = (
                    Response(json.dumps(answer), status, media_type="application/json")
                    if status == 200
                    else Response(status_code=status)
                )
                check = self.openapi.unmarshal_response(
                    oa_request,
                    MockResponse(
                        response.body, status_code=status, content_type="application/json"
                    ),
                )
                if status == 200 and check.errors:
                    self.violations += [
                        f"{request.url.path}: {e.__cause__ or e}" for e in check.errors
                    ]
            except Unauthorized as exc:
                response = Response(status_code=401, headers={"WWW-Authenticate": exc.www})
        self.calls.append((request.method, request.url.path, response.status_code))
        return response

    def _route(self, method: str, path: str, body: bytes) -> tuple[int, Any]:
        if m := re.fullmatch(r"/api/v1/communicationparty/(\d+)", path):
            party = self.parties.get(int(m[1]))
            return (200, party) if party else (404, None)
        if path == "/api/v1/communicationparty" and method == "POST":
            wanted = json.loads(body)["herIds"]
            return 200, [self.parties[h] for h in wanted if h in self.parties]
        if m := re.fullmatch(r"/api/v1/certificate/(\d+)/(signing|encryption)", path):
            cert = self.certificates.get((int(m[1]), m[2]))
            return (200, cert) if cert else (404, None)
        if m := re.fullmatch(r"/api/v1/organization/(\d{9})", path):
            for p in self.parties.values():
                if (p.get("organizationDetails") or {}).get("organizationNumber") == m[1]:
                    return 200, p
            return 404, None
        return 404, None
