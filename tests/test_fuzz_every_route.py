"""Fuzzing every route the application serves, as an outside attacker would: hostile path
parameters (other patients' numbers, ids that do not exist, traversal, control characters,
very long values), random query strings (known parameter names with wrong values and unknown
names), and random bodies in every content type the service reads — as the admin, a GP, a
follow-up centre and a vendor.
No answer may be a 5xx, nor an exception escaping the app.

The routes come from the application itself (as in the access matrix), so a new route is
fuzzed without anyone adding it here. The run is derandomised and bounded
(``INTEROP_FUZZ_ROUTE_EXAMPLES``, default 8 per route); set
``INTEROP_FUZZ_RANDOM=1`` and more examples to explore further.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.access.test_access_matrix import registered_routes
from tests.api.test_fhir_crud import observation
from tests.test_fuzz_no_5xx import bounded

FNR = "13031353453"
OTHER_FNR = "17054026641"
EXAMPLES = int(os.environ.get("INTEROP_FUZZ_ROUTE_EXAMPLES", "8"))
fuzz = bounded(EXAMPLES)

NOT_FUZZED = {
    # static documentation pages with no input
    ("GET", "/docs"),
    ("GET", "/docs/oauth2-redirect"),
    ("GET", "/redoc"),
    ("GET", "/static-offline-docs"),
    ("GET", "/openapi.json"),
}

HOSTILE = [
    "",
    " ",
    "0",
    "-1",
    "99999999999999999999",
    FNR,
    OTHER_FNR,
    "00000000000",
    "../../etc/passwd",
    "..%2F..%2F",
    "%00",
    "a\x00b",
    "Observation",
    "Patient",
    "$everything",
    "_history",
    "x" * 300,
    "ø' OR 1=1 --",
    "<script>alert(1)</script>",
    "\u202e\u0000\ud7ff",
    "1e308",
    "NaN",
]
KNOWN_PARAMS = [
    "view",
    "format",
    "_format",
    "_count",
    "_since",
    "_type",
    "_elements",
    "_summary",
    "_include",
    "_revinclude",
    "patient",
    "subject",
    "code",
    "date",
    "status",
    "since",
    "until",
    "limit",
    "cursor",
    "page",
    "events",
    "profile",
    "max",
    "period",
    "access_token",
    "organization",
    "destination",
    "sort",
    "_sort",
    "_outputFormat",
]
CONTENT_TYPES = [
    None,
    "application/json",
    "application/fhir+json",
    "application/fhir+xml",
    "application/xml",
    "application/x-www-form-urlencoded",
    "multipart/form-data; boundary=x",
    "text/csv",
    "text/plain",
    "application/json-patch+json",
    "application/octet-stream",
]

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False)
    | st.text(max_size=30)
    | st.sampled_from(HOSTILE),
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(
            st.sampled_from(
                [
                    "resourceType",
                    "id",
                    "subject",
                    "status",
                    "code",
                    "valueQuantity",
                    "identifier",
                    "entry",
                    "type",
                    "action",
                    "comment",
                    "limits",
                    "goal",
                    "period",
                    "reference",
                    "patient",
                    "fnr",
                    "role",
                    "key",
                    "name",
                ]
            )
            | st.text(max_size=10),
            inner,
            max_size=5,
        )
    ),
    max_leaves=15,
)


def _body(draw: st.DrawFn) -> bytes:
    kind = draw(st.sampled_from(["none", "json", "bytes", "form", "xml"]))
    if kind == "none":
        return b""
    if kind == "json":
        return json.dumps(draw(json_values)).encode()
    if kind == "form":
        pairs = draw(
            st.lists(
                st.tuples(
                    st.sampled_from(KNOWN_PARAMS + ["form_token", "decision", "comment"]),
                    st.sampled_from(HOSTILE) | st.text(max_size=20),
                ),
                max_size=5,
            )
        )
        return "&".join(f"{quote(k)}={quote(v, safe='')}" for k, v in pairs).encode(
            "utf-8", "surrogatepass"
        )
    if kind == "xml":
        inner = draw(st.sampled_from(HOSTILE) | st.text(max_size=40))
        return (
            b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY e SYSTEM "file:///etc/passwd">]>'
            b'<x xmlns="http://hl7.org/fhir">&e;' + inner.encode("utf-8", "surrogatepass") + b"</x>"
        )
    return draw(st.binary(max_size=200))


@st.composite
def requests(draw: st.DrawFn, path: str, known: list[str]) -> tuple[str, dict[str, str], bytes]:
    def fill(m: re.Match[str]) -> str:
        value = draw(
            st.sampled_from(known) | st.sampled_from(HOSTILE) | st.text(min_size=1, max_size=12)
        )
        return quote(value.encode("utf-8", "surrogatepass"), safe="")

    concrete = re.sub(r"\{[^}]+\}", fill, path)
    params = draw(
        st.lists(
            st.tuples(
                st.sampled_from(KNOWN_PARAMS) | st.text(min_size=1, max_size=8),
                st.sampled_from(HOSTILE) | st.text(max_size=20),
            ),
            max_size=4,
        )
    )
    query = "&".join(
        f"{quote(k.encode('utf-8', 'surrogatepass'), safe='')}="
        f"{quote(v.encode('utf-8', 'surrogatepass'), safe='')}"
        for k, v in params
    )
    headers: dict[str, str] = {}
    content_type = draw(st.sampled_from(CONTENT_TYPES))
    if content_type:
        headers["Content-Type"] = content_type
    headers["Accept"] = draw(
        st.sampled_from(
            ["application/fhir+json", "application/json", "text/html", "application/xml", "*/*"]
        )
    )
    if draw(st.booleans()):
        headers["If-Match"] = draw(st.sampled_from(['W/"1"', "garbage", 'W/"x"']))
    if draw(st.booleans()):
        headers["If-None-Exist"] = draw(st.sampled_from(["identifier=x", "", "&&&", "x=y=z"]))
    url = concrete + (f"?{query}" if query else "")
    return url, headers, _body(draw)


def _routes() -> list[tuple[str, str]]:
    from interop.api.app import create_app

    return sorted(registered_routes(create_app()) - NOT_FUZZED)


@dataclass
class World:
    users: dict[str, dict[str, str]]
    known: list[str]
    """Ids that exist (the patients, an Observation, a plan, a Task), for path parameters."""


@pytest.fixture
def world(client) -> World:  # type: ignore[no-untyped-def]
    """The admin, a GP who is the fastlege of one patient (the other patient is not theirs),
    a follow-up centre and a vendor; an Observation on each patient."""
    r = client.post("/api/v1/actors", json={"role": "gp", "hpr": "9144889", "name": "Lege"})
    assert r.status_code in (200, 201), r.text
    gp = {"Authorization": f"Bearer {r.json()['key']}"}
    practitioner = client.post(
        "/fhir/Practitioner",
        json={
            "resourceType": "Practitioner",
            "identifier": [{"system": "urn:oid:2.16.578.1.12.4.1.4.4", "value": "9144889"}],
        },
    ).json()["id"]
    known: list[str] = []
    for fnr in (FNR, OTHER_FNR):
        patient: dict[str, Any] = {
            "resourceType": "Patient",
            "identifier": [{"system": "urn:oid:2.16.578.1.12.4.1.4.1", "value": fnr}],
        }
        if fnr == FNR:
            patient["generalPractitioner"] = [{"reference": f"Practitioner/{practitioner}"}]
        pid = client.post("/fhir/Patient", json=patient).json()["id"]
        obs = client.post(
            "/fhir/Observation", json=observation(pid, when="2026-12-01T08:00:00+01:00")
        )
        assert obs.status_code == 201, obs.text
        known += [fnr, pid, obs.json()["id"]]
        plan = client.get(f"/api/v1/patients/{fnr}/plan/versions")
        if plan.status_code == 200:
            body = plan.json()
            versions = body if isinstance(body, list) else body.get("versions", [])
            known += [str(v["id"]) for v in versions if isinstance(v, dict) and v.get("id")]
    tasks = client.get("/fhir/Task", params={"_count": "5"}).json().get("entry", [])
    known += [e["resource"]["id"] for e in tasks]
    users = {"admin": {}, "gp": gp}
    for role, body in (
        ("followup", {"role": "followup", "organization": {"orgnr": "974760673"}}),
        ("vendor", {"role": "vendor", "organization": {"orgnr": "841672119"}}),
    ):
        made = client.post("/api/v1/actors", json={**body, "name": role})
        assert made.status_code in (200, 201), made.text
        users[role] = {"Authorization": f"Bearer {made.json()['key']}"}
    return World(users, known)


NOT_CONFIGURED = {
    "/api/v1/patients/{national_id}/plan/import-nhn",
    "/api/v1/patients/{national_id}/plan/nhn-status",
}
"""Routes to a national service that answer 503 (an OperationOutcome naming the missing
setting) when the service is not configured, as in this test."""


def _server_error(path: str, status: int, body: str) -> bool:
    if status == 503 and path in NOT_CONFIGURED:
        return "is not set" not in body
    return status >= 500


def _fuzz_route(client: Any, world: World, method: str, path: str) -> None:
    failures: list[str] = []
    users = world.users

    @fuzz
    @given(req=requests(path, world.known), who=st.sampled_from(sorted(users)))
    def run(req: tuple[str, dict[str, str], bytes], who: str) -> None:
        url, headers, body = req
        r = client.request(method, url, headers={**headers, **users[who]}, content=body)
        if _server_error(path, r.status_code, r.text):
            failures.append(f"{who} {method} {url} -> {r.status_code}: {r.text[:300]}")

    run()
    assert not failures, "\n".join(failures[:5])


@pytest.mark.parametrize(("method", "path"), _routes())
def test_no_route_answers_a_5xx(client, world, method: str, path: str) -> None:  # type: ignore[no-untyped-def]
    _fuzz_route(client, world, method, path)
