"""VKP DHO journaling: a deviation closed (its Task completed) is journaled as the VKP DHO
document Bundle through the outbox to the municipal EPJ — over classic VKP (HelseID Bearer,
``POST {base}/bundle``, the VKP-R4 v0.9.0 profiles' required codes checked) or over JFT
(HelseID + DPoP, 202), as the Endpoint's ``connectionType`` says. Only the patient whose
deviation was closed is in the document."""

from __future__ import annotations

import re
from dataclasses import replace
from functools import cache
from pathlib import Path
from typing import Any

import orjson
from fhir.resources.R4B.bundle import Bundle
from lxml import etree
from sqlalchemy import select
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from interop.care.deviations import Person, complete, outcome_list
from interop.messaging.addressbook import TRANSPORT_SYSTEM
from interop.national.wiring import default_transports
from interop.routing.outbox import Outbox
from interop.routing.worker import DeliveryWorker
from interop.store.context import WriteContext
from interop.store.schema import resource_table
from tests.conftest import STANDARDS
from tests.live_server import live_server
from tests.messaging.test_gp_flow import FNR, _heart_rate, _ingest, _outbox, address_book
from tests.messaging.test_pmd_route import SUBSCRIPTION_SYSTEM, _post
from tests.national.conftest import National
from tests.national.nhn_auth import ApiGuard, BearerGuard, Unauthorized
from tests.national.test_plans import FNR_B, patient_b

VKP_PROFILES = STANDARDS / "nhn" / "vkp-dho" / "profiles"
VKP_ID = "nhn:vkp/client/claims/vkp-id"


@cache
def _codes(code_system: str) -> frozenset[str]:
    """Every code of a VKP-R4 v0.9.0 CodeSystem (nested concepts included)."""
    path = VKP_PROFILES / "CodeSystem" / f"{code_system}.codesystem.xml"
    ns = {"f": "http://hl7.org/fhir"}
    return frozenset(etree.parse(str(path)).xpath("//f:concept/f:code/@value", namespaces=ns))


def _vkp_problems(bundle: dict[str, Any]) -> list[str]:
    """What VKP's profiles require of a DHO journal document (README vkp-dho): a document with
    identifier and timestamp, first a vkp-Composition-v090 (category and event codes from
    their required value sets, a subject), a DetectedIssue coded from vkp-alert-code-v090
    with a patient, and every reference resolving inside the document."""
    problems = []
    if bundle.get("type") != "document" or not bundle.get("timestamp"):
        problems.append("Bundle.type document with a timestamp")
    ident = bundle.get("identifier") or {}
    if not (ident.get("system") and ident.get("value")):
        problems.append("Bundle.identifier system and value")
    resources = [e.get("resource") or {} for e in bundle.get("entry") or []]
    comp = resources[0] if resources else {}
    if comp.get("resourceType") != "Composition" or comp.get("meta", {}).get("profile") != [
        "http://ehelse.no/fhir/StructureDefinition/vkp-Composition-v090"
    ]:
        problems.append("the first entry is a vkp-Composition-v090")
    cats = [c.get("code") for cat in comp.get("category") or [] for c in cat.get("coding") or []]
    if not cats or not set(cats) <= _codes("vkp-composition-category-v090"):
        problems.append(f"Composition.category {cats}")
    events = [
        c.get("code")
        for ev in comp.get("event") or []
        for cc in ev.get("code") or []
        for c in cc.get("coding") or []
    ]
    if not set(events) <= _codes("vkp-composition-event-v090"):
        problems.append(f"Composition.event.code {events}")
    if not comp.get("subject"):
        problems.append("Composition.subject")
    for issue in (r for r in resources if r.get("resourceType") == "DetectedIssue"):
        codes = [c.get("code") for c in (issue.get("code") or {}).get("coding") or []]
        if not codes or not set(codes) <= _codes("vkp-alert-code-v090") or not issue.get("patient"):
            problems.append(f"DetectedIssue.code {codes} / patient")
    urls = {e.get("fullUrl") for e in bundle.get("entry") or []}
    refs = [m.decode() for m in _references(orjson.dumps(bundle))]
    problems += [f"reference {r} outside the document" for r in refs if r not in urls]
    return problems


def _references(raw: bytes) -> list[bytes]:
    return re.findall(rb'"reference":"([^"]+)"', raw)


class LocalVkp:
    """Classic VKP's bundle journaling: ``POST /bundle`` with a HelseID Bearer token carrying
    the system instance's ``vkp-id`` and ``client_amr`` ``private_key_jwt`` (what VKP checks),
    a valid R4 document meeting the VKP-R4 profiles' required codes."""

    def __init__(self, guard: BearerGuard) -> None:
        self.guard = guard
        self.received: list[dict[str, Any]] = []
        self.problems: list[str] = []

    def app(self) -> Starlette:
        return Starlette(routes=[Route("/bundle", self.post, methods=["POST"])])

    async def post(self, request: Request) -> Response:
        headers = {k.lower(): v for k, v in request.headers.items()}
        try:
            self.guard.check("POST", str(request.url), headers)
        except Unauthorized as exc:
            self.problems.append(exc.detail)
            return Response(status_code=401, headers={"WWW-Authenticate": exc.www})
        bundle = orjson.loads(await request.body())
        Bundle.model_validate(bundle)
        problems = _vkp_problems(bundle)
        if problems:
            self.problems += problems
            return Response(orjson.dumps({"issue": problems}), status_code=400)
        self.received.append(bundle)
        return Response(status_code=201)


class LocalJft:
    def __init__(self, guard: ApiGuard) -> None:
        self.guard = guard
        self.received: list[dict[str, Any]] = []

    def app(self) -> Starlette:
        return Starlette(routes=[Route("/v1/Bundle", self.post, methods=["POST"])])

    async def post(self, request: Request) -> Response:
        headers = {k.lower(): v for k, v in request.headers.items()}
        try:
            self.guard.check("POST", str(request.url), headers)
        except Unauthorized as exc:
            return Response(status_code=401, headers={"WWW-Authenticate": exc.www})
        body = await request.body()
        if len(body) > 1_000_000:
            return Response(status_code=413)
        bundle = orjson.loads(body)
        Bundle.model_validate(bundle)  # valid R4 (JFT answers 400 otherwise)
        self.received.append(bundle)
        return Response(status_code=202, headers={"Location": "/v1/Bundle/1/status"})


def _task_id(services) -> str:  # type: ignore[no-untyped-def]
    with services.engine.connect() as conn:
        return str(
            conn.execute(
                select(resource_table.c.res_id).where(resource_table.c.res_type == "Task")
            ).scalar_one()
        )


def _journal_endpoint(client, code: str, base: str) -> None:  # type: ignore[no-untyped-def]
    _post(
        client,
        {
            "resourceType": "Endpoint",
            "status": "active",
            "connectionType": {"system": TRANSPORT_SYSTEM, "code": code},
            "payloadType": [{"coding": [{"system": SUBSCRIPTION_SYSTEM, "code": "vkp-dho"}]}],
            "address": base,
        },
    )


def _close(services, task_id: str) -> None:  # type: ignore[no-untyped-def]
    _, outcomes = outcome_list()
    with services.store.write(WriteContext.service()) as tx:
        complete(
            tx,
            task_id,
            Person("nurse-1", "9144902", "Kari Nordmann"),
            next(iter(outcomes)),
            "Ringt pasienten.",
        )


def _deliver(services) -> None:  # type: ignore[no-untyped-def]
    DeliveryWorker(
        Outbox(services.engine), default_transports(settings=services.settings)
    ).run_once()


def test_a_closed_deviation_is_journaled_over_jft(  # type: ignore[no-untyped-def]
    client, services, tmp_path: Path, national: National
) -> None:
    services.settings.helseid_tenants_file = national.helseid.tenants_file
    services.settings.jft_tenant = "fjordvik"
    jft = LocalJft(ApiGuard(national.helseid.issuer, "nhn:jft", "nhn:jft/api"))
    ids = address_book(client, tmp_path)
    with live_server(jft.app()) as base:
        _journal_endpoint(client, "jft", base)
        _ingest(services, _heart_rate("150", 5))
        assert not [r for r in _outbox(services) if r.kind == "vkp-dho-document"]
        task_id = _task_id(services)
        _close(services, task_id)
        [row] = [r for r in _outbox(services) if r.kind == "vkp-dho-document"]
        assert row.transport == "jft" and row.focus == f"Task/{task_id}"
        # saving the completed Task again journals nothing new
        task = client.get(f"/fhir/Task/{task_id}").json()
        assert client.put(f"/fhir/Task/{task_id}", json=task).status_code == 200
        assert len([r for r in _outbox(services) if r.kind == "vkp-dho-document"]) == 1
        _deliver(services)
    [bundle] = jft.received
    assert bundle["type"] == "document"
    kinds = [e["resource"]["resourceType"] for e in bundle["entry"]]
    assert kinds == ["Composition", "DetectedIssue", "Observation", "Patient", "Organization"]
    composition, issue, obs, patient, org = (e["resource"] for e in bundle["entry"])
    assert composition["meta"]["profile"] == [
        "http://ehelse.no/fhir/StructureDefinition/vkp-Composition-v090"
    ]
    assert composition["category"][0]["coding"][0]["code"] == "2"
    assert composition["author"][0]["identifier"]["value"] == "9144902"
    assert "Ringt pasienten." in composition["section"][0]["text"]["div"]
    assert issue["code"]["coding"][0]["code"] == "5.2.1" and issue["severity"] == "high"
    assert obs["valueQuantity"]["value"] == 150
    assert patient["identifier"][0]["value"] == FNR
    urls = {e["fullUrl"] for e in bundle["entry"]}
    refs = {
        issue["patient"]["reference"],
        obs["subject"]["reference"],
        *(i["reference"] for i in issue["implicated"]),
    }
    assert refs <= urls  # every reference resolves inside the document
    assert b'"Patient/' not in orjson.dumps(bundle) and b'"Observation/' not in orjson.dumps(bundle)
    assert [r.status for r in _outbox(services) if r.kind == "vkp-dho-document"] == [
        "transport-acked"
    ]
    assert org["name"] and ids


def _open_task_of(client, patient: str) -> str:  # type: ignore[no-untyped-def]
    found = client.get("/fhir/Task", params={"patient": f"Patient/{patient}"}).json()
    [task] = [e["resource"] for e in found.get("entry") or []]
    return str(task["id"])


def test_a_closed_deviation_is_journaled_over_classic_vkp_with_a_bearer_token_for_that_patient_only(  # type: ignore[no-untyped-def]
    client, services, tmp_path: Path, national: National
) -> None:
    issuer = national.helseid.issuer
    issuer.token_endpoint.bearer_resources = {"nhn:vkp"}
    fjordvik = national.helseid.config.tenants[0]
    issuer.token_endpoint.clients[fjordvik.client_id].extra_claims[VKP_ID] = "vkp-fjordvik-17"
    vkp = LocalVkp(
        BearerGuard(
            issuer,
            "nhn:vkp",
            "nhn:vkp/api/user/bundle.write",
            required=(VKP_ID,),
            values={"client_amr": "private_key_jwt"},
        )
    )
    services.settings.helseid_tenants_file = national.helseid.tenants_file
    services.settings.vkp_tenant = "fjordvik"
    ids = address_book(client, tmp_path)
    b = patient_b(client, ids)
    with live_server(vkp.app()) as base:
        _journal_endpoint(client, "vkp", base)
        _ingest(services, _heart_rate("150", 5))
        b_value = _heart_rate("170", 4)
        _ingest(services, replace(b_value, patient=replace(b_value.patient, value=FNR_B)))
        task_a, task_b = _open_task_of(client, ids["patient"]), _open_task_of(client, b)
        _close(services, task_a)
        [row] = [r for r in _outbox(services) if r.kind == "vkp-dho-document"]
        assert row.transport == "vkp" and row.focus == f"Task/{task_a}"
        _deliver(services)
    assert vkp.problems == [] and vkp.guard.checked == 1
    assert national.helseid.issuer.token_endpoint.refused == []
    [bundle] = vkp.received
    raw = orjson.dumps(bundle)
    patients = [
        e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == "Patient"
    ]
    assert [p["identifier"][0]["value"] for p in patients] == [FNR]
    [obs] = [
        e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == "Observation"
    ]
    assert obs["valueQuantity"]["value"] == 150
    # nothing of B: not the number, not the value, not the Task
    assert FNR_B.encode() not in raw and b'"value":170' not in raw and task_b.encode() not in raw
    assert [r.status for r in _outbox(services) if r.kind == "vkp-dho-document"] == [
        "transport-acked"
    ]
    assert client.get(f"/fhir/Task/{task_b}").json()["status"] not in ("completed", "cancelled")


def test_the_vkp_contract_server_refuses_a_document_off_the_profiles() -> None:
    """The contract check itself: what VKP's required bindings refuse, it refuses."""
    doc = {
        "resourceType": "Bundle",
        "type": "document",
        "timestamp": "2026-12-06T10:00:00Z",
        "identifier": {"system": "urn:ietf:rfc:3986", "value": "urn:uuid:1"},
        "entry": [
            {
                "fullUrl": "urn:uuid:c",
                "resource": {
                    "resourceType": "Composition",
                    "meta": {
                        "profile": [
                            "http://ehelse.no/fhir/StructureDefinition/vkp-Composition-v090"
                        ]
                    },
                    "category": [{"coding": [{"code": "2"}]}],
                    "subject": {"reference": "urn:uuid:p"},
                },
            },
            {"fullUrl": "urn:uuid:p", "resource": {"resourceType": "Patient"}},
        ],
    }
    assert _vkp_problems(doc) == []
    doc["entry"][0]["resource"]["category"] = [{"coding": [{"code": "9"}]}]
    doc["entry"][0]["resource"]["subject"] = {"reference": "Patient/123"}
    assert _vkp_problems(doc) == [
        "Composition.category ['9']",
        "reference Patient/123 outside the document",
    ]
