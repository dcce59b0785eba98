"""VKP DHO journaling: a deviation closed (its Task completed) is journaled as the VKP DHO
document Bundle through the outbox to the municipal EPJ over JFT (HelseID + DPoP, 202)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
from fhir.resources.R4B.bundle import Bundle
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
from tests.live_server import live_server
from tests.messaging.test_gp_flow import FNR, _heart_rate, _ingest, _outbox, address_book
from tests.messaging.test_pmd_route import SUBSCRIPTION_SYSTEM, _post
from tests.national.conftest import National
from tests.national.nhn_auth import ApiGuard, Unauthorized


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


def test_a_closed_deviation_is_journaled_over_jft(  # type: ignore[no-untyped-def]
    client, services, tmp_path: Path, national: National
) -> None:
    services.settings.helseid_tenants_file = national.helseid.tenants_file
    services.settings.jft_tenant = "fjordvik"
    jft = LocalJft(ApiGuard(national.helseid.issuer, "nhn:jft", "nhn:jft/api"))
    ids = address_book(client, tmp_path)
    with live_server(jft.app()) as base:
        _post(
            client,
            {
                "resourceType": "Endpoint",
                "status": "active",
                "connectionType": {"system": TRANSPORT_SYSTEM, "code": "jft"},
                "payloadType": [{"coding": [{"system": SUBSCRIPTION_SYSTEM, "code": "vkp-dho"}]}],
                "address": base,
            },
        )
        _ingest(services, _heart_rate("150", 5))
        assert not [r for r in _outbox(services) if r.kind == "vkp-dho-document"]
        task_id = _task_id(services)
        _, outcomes = outcome_list()
        with services.store.write(WriteContext.service()) as tx:
            complete(
                tx,
                task_id,
                Person("nurse-1", "9144902", "Kari Nordmann"),
                next(iter(outcomes)),
                "Ringt pasienten.",
            )
        [row] = [r for r in _outbox(services) if r.kind == "vkp-dho-document"]
        assert row.transport == "jft" and row.focus == f"Task/{task_id}"
        # saving the completed Task again journals nothing new
        task = client.get(f"/fhir/Task/{task_id}").json()
        assert client.put(f"/fhir/Task/{task_id}", json=task).status_code == 200
        assert len([r for r in _outbox(services) if r.kind == "vkp-dho-document"]) == 1
        DeliveryWorker(
            Outbox(services.engine), default_transports(settings=services.settings)
        ).run_once()
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
