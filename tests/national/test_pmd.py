"""PMD uploads with HelseID + DPoP: the local PMD checks token and proof, validates the Bundle
(FHIR R4, the configured type: ``batch`` with ``request`` per entry, or ``collection`` without)
and answers a ``batch-response`` entry by entry; a refused entry dead-letters with its reason."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import orjson
from fhir.resources.R4B.bundle import Bundle
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from interop.messaging.addressbook import TRANSPORT_SYSTEM
from interop.national.wiring import default_transports
from interop.routing.outbox import Outbox
from interop.routing.worker import DeliveryWorker
from tests.live_server import live_server
from tests.messaging.test_gp_flow import _outbox, address_book
from tests.messaging.test_pmd_route import SUBSCRIPTION_SYSTEM, _ingest, _post, _vitals
from tests.national.conftest import National
from tests.national.nhn_auth import ApiGuard, Unauthorized

ENTRY_ID = "http://hl7.no/fhir/vkpobservation/StructureDefinition/PmdBundleResponseEntryIdExtension"


class LocalPmd:
    def __init__(self, guard: ApiGuard, bundle_type: str) -> None:
        self.guard = guard
        self.bundle_type = bundle_type
        self.received: list[dict[str, Any]] = []
        self.refuse_codes: set[str] = set()
        self.problems: list[str] = []
        self.locations: dict[str, str] = {}
        """fullUrl → where PMD keeps the Observation it took"""
        self.reverse = False
        """answer the entries in reverse order (each names its entry by the extension)"""
        self.entry_ids = True
        """name each answer's entry (the profile's extension); NHN's examples do not"""
        self.unknown_entry = False
        """name an entry the upload does not have in the first answer"""

    def app(self) -> Starlette:
        return Starlette(routes=[Route("/fhir", self.upload, methods=["POST"])])

    async def upload(self, request: Request) -> Response:
        headers = {k.lower(): v for k, v in request.headers.items()}
        try:
            self.guard.check("POST", str(request.url), headers)
        except Unauthorized as exc:
            return Response(status_code=401, headers={"WWW-Authenticate": exc.www})
        bundle = orjson.loads(await request.body())
        Bundle.model_validate(bundle)  # FHIR structure (and bdl-3 for a collection)
        if bundle["type"] != self.bundle_type:
            self.problems.append(f"type {bundle['type']}")
        for e in bundle["entry"]:
            if (self.bundle_type == "batch") != ("request" in e):
                self.problems.append(f"entry {e['fullUrl']}: request with a {bundle['type']}")
        self.received.append(bundle)
        entries = []
        for e in bundle["entry"]:
            code = e["resource"]["code"]["coding"][0]["code"]
            refused = code in self.refuse_codes
            response: dict[str, Any] = {"status": "422" if refused else "201"}
            if self.entry_ids:
                response["extension"] = [{"url": ENTRY_ID, "valueUri": e["fullUrl"]}]
            if not refused:
                location = f"Observation/{uuid.uuid4()}/_history/1"
                self.locations[e["fullUrl"]] = location
                response |= {"location": location, "etag": 'W/"1"'}
            if refused:
                response["outcome"] = {
                    "resourceType": "OperationOutcome",
                    "issue": [
                        {"severity": "error", "code": "invalid", "diagnostics": f"{code} avvist"}
                    ],
                }
            entries.append({"response": response})
        if self.reverse:
            entries.reverse()
        if self.unknown_entry:
            entries[0]["response"]["extension"][0]["valueUri"] = f"urn:uuid:{uuid.uuid4()}"
        body = {"resourceType": "Bundle", "type": "batch-response", "entry": entries}
        return Response(json.dumps(body), 200, media_type="application/fhir+json")


def _setup(client, services, tmp_path: Path, national: National, bundle_type: str) -> LocalPmd:  # type: ignore[no-untyped-def]
    services.settings.helseid_tenants_file = national.helseid.tenants_file
    services.settings.pmd_tenant = "fjordvik"
    services.settings.pmd_bundle_type = bundle_type
    address_book(client, tmp_path)
    return LocalPmd(ApiGuard(national.helseid.issuer, "nhn:pmd", "nhn:pmd/api"), bundle_type)


def _endpoint(client, address: str) -> None:  # type: ignore[no-untyped-def]
    _post(
        client,
        {
            "resourceType": "Endpoint",
            "status": "active",
            "connectionType": {"system": TRANSPORT_SYSTEM, "code": "pmd"},
            "payloadType": [{"coding": [{"system": SUBSCRIPTION_SYSTEM, "code": "pmd"}]}],
            "address": address,
        },
    )


def _deliver(services) -> None:  # type: ignore[no-untyped-def]
    DeliveryWorker(
        Outbox(services.engine), default_transports(settings=services.settings)
    ).run_once()


def test_pmd_batch_with_helseid_dpop_all_entries_taken(
    client, services, tmp_path: Path, national: National
) -> None:  # type: ignore[no-untyped-def]
    pmd = _setup(client, services, tmp_path, national, "batch")
    with live_server(pmd.app()) as base:
        _endpoint(client, f"{base}/fhir")
        _ingest(services, _vitals())
        [row] = [r for r in _outbox(services) if r.kind == "pmd-observations"]
        assert row.transport == "pmd"
        _deliver(services)
    [bundle] = pmd.received
    assert bundle["type"] == "batch" and len(bundle["entry"]) == 7
    assert bundle["identifier"]["system"] == "https://www.nhn.no/komlink/bundle-identifier"
    assert pmd.problems == [] and pmd.guard.checked == 1
    [row] = [r for r in _outbox(services) if r.kind == "pmd-observations"]
    assert row.status == "transport-acked"
    # each entry's answer is kept where an operator sees it: PMD's location per Observation
    answers = client.get(f"/api/v1/messages/{row.id}").json()["answers"]
    assert [a["entry"] for a in answers] == [e["fullUrl"] for e in bundle["entry"]]
    assert [a["identifier"] for a in answers] == [_identifier(e) for e in bundle["entry"]]
    assert all(a["outcome"] == "accepted" and a["status"] == "201" for a in answers)
    assert [a["location"] for a in answers] == [
        pmd.locations[e["fullUrl"]] for e in bundle["entry"]
    ]


def _identifier(entry: dict[str, Any]) -> str:
    [ident] = entry["resource"]["identifier"]
    return f"{ident['system']}|{ident['value']}"


def test_pmd_answers_without_entry_ids_by_position_and_an_unknown_entry_dead_letters(
    client, services, tmp_path: Path, national: National
) -> None:  # type: ignore[no-untyped-def]
    pmd = _setup(client, services, tmp_path, national, "batch")
    pmd.entry_ids = False  # as NHN's examples: {"response": {"status": …}} only
    with live_server(pmd.app()) as base:
        _endpoint(client, f"{base}/fhir")
        _ingest(services, _vitals())
        _deliver(services)
        [row] = [r for r in _outbox(services) if r.kind == "pmd-observations"]
        answers = client.get(f"/api/v1/messages/{row.id}").json()["answers"]
        [bundle] = pmd.received
        assert [a["location"] for a in answers] == [
            pmd.locations[e["fullUrl"]] for e in bundle["entry"]
        ]
        # an answer for an entry the upload does not have: which one it means is not known
        pmd.entry_ids, pmd.unknown_entry = True, True
        _ingest(services, _vitals(minutes_ago=5))
        _deliver(services)
    row = [r for r in _outbox(services) if r.kind == "pmd-observations"][-1]
    assert row.status == "dead" and "not one entry of this upload" in row.last_error


def test_pmd_collection_setting_and_a_refused_entry(
    client, services, tmp_path: Path, national: National
) -> None:  # type: ignore[no-untyped-def]
    pmd = _setup(client, services, tmp_path, national, "collection")
    pmd.refuse_codes = {"15074-8"}
    pmd.reverse = True  # answered out of order: each answer names its entry
    with live_server(pmd.app()) as base:
        _endpoint(client, f"{base}/fhir")
        _ingest(services, _vitals())
        _deliver(services)
    [bundle] = pmd.received
    assert bundle["type"] == "collection" and "meta" not in bundle
    assert all("request" not in e for e in bundle["entry"]) and pmd.problems == []
    [row] = [r for r in _outbox(services) if r.kind == "pmd-observations"]
    assert row.status == "dead"
    assert "1 batch entries failed" in row.last_error and "15074-8 avvist" in row.last_error
    # each entry's answer: the refused one with PMD's reason, the others with PMD's location
    answers = client.get(f"/api/v1/messages/{row.id}").json()["answers"]
    assert [a["entry"] for a in answers] == [e["fullUrl"] for e in bundle["entry"]]
    refused = [
        _identifier(e)
        for e in bundle["entry"]
        if e["resource"]["code"]["coding"][0]["code"] == "15074-8"
    ]
    assert [a["identifier"] for a in answers if a["outcome"] == "refused"] == refused
    assert [a["reason"] for a in answers if a["outcome"] == "refused"] == ["15074-8 avvist"]
    taken = [a for a in answers if a["outcome"] == "accepted"]
    assert len(taken) == len(bundle["entry"]) - 1
    assert all(a["location"] == pmd.locations[a["entry"]] for a in taken)
