"""EDI 2.0 as the outbox transport: a red deviation goes to the GP through the Meldingstjener
with the sending municipality's HelseID client; the GP's answer is fetched, answered with an
AppRec (``Ok``, as the schema spells it) and marked read."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from interop.messaging.edi2 import poll_edi2
from interop.messaging.runtime import kith_for
from interop.national.wiring import default_transports
from interop.routing.outbox import Outbox
from interop.routing.worker import DeliveryWorker
from plo_messages.content import DialogNote, build_dialog_note
from plo_messages.model import Coded, ConversationRef, Header
from plo_messages.msghead import local_timestamp
from tests.live_server import live_server
from tests.messaging.test_gp_flow import HER, _heart_rate, _ingest, _outbox, address_book
from tests.national.conftest import National
from tests.national.helseid_env import CLIENTS
from tests.national.nhn_auth import ApiGuard, Unauthorized


def _use_edi2(client, ids: dict[str, str], base: str) -> None:  # type: ignore[no-untyped-def]
    ep = client.get(f"/fhir/Endpoint/{ids['gp-endpoint']}").json()
    ep["connectionType"]["code"] = "edi2"
    ep["address"] = base
    assert client.put(f"/fhir/Endpoint/{ep['id']}", json=ep).status_code == 200


def test_edi2_both_ways_with_helseid(client, services, tmp_path: Path, national: National) -> None:  # type: ignore[no-untyped-def]
    services.settings.helseid_tenants_file = national.helseid.tenants_file
    mt = national.mt
    ids = address_book(client, tmp_path)
    _use_edi2(client, ids, national.edi2_url)
    _ingest(services, _heart_rate("150", 5))
    [row] = _outbox(services)
    assert row.transport == "edi2"
    worker = DeliveryWorker(Outbox(services.engine), default_transports(settings=services.settings))
    worker.run_once()
    [stored] = mt.messages.values()
    assert stored.receiver_her_id == int(HER["gp"]) and stored.document == bytes(row.payload)
    assert _outbox(services)[0].status == "transport-acked"

    kith = kith_for(services.settings)
    assert kith is not None
    sent = kith.read(stored.document)
    assert sent.header is not None
    answer = Header(
        type=Coded("DIALOG_HELSEFAGLIG", "Helsefaglig dialog"),
        msg_id="3b2c9f1a-7d4e-4c1b-9a8e-5f6d7c8b9a01",
        gen_date=local_timestamp(),
        sender=sent.header.receiver,
        receiver=sent.header.sender,
        patient=sent.header.patient,
        conversation_ref=ConversationRef(row.msg_id, row.msg_id),
    )
    doc = kith.build(
        answer,
        build_dialog_note(
            DialogNote(
                Coded("6", "Henvendelse om pasient", "2.16.578.1.12.4.1.1.7322"),
                None,
                "Sett opp time.",
            )
        ),
    )
    mid = mt.inject(doc)
    helseid = national.clients
    assert poll_edi2(services, base_url=national.edi2_url, helseid=helseid) == {"accepted": 1}
    assert poll_edi2(services, base_url=national.edi2_url, helseid=helseid) == {}
    assert mt.messages[mid].read_by == {int(HER["centre"])}
    comm = client.get("/fhir/Communication", params={"patient": ids["patient"]}).json()
    assert comm["entry"][0]["resource"]["basedOn"] == [{"reference": row.focus}]
    worker.run_once()
    assert mt.messages[mid].apprecs == [{"appRecStatus": "Ok", "senderHerId": int(HER["centre"])}]
    [ack] = [r for r in _outbox(services) if r.kind == "apprec"]
    assert ack.status == "transport-acked" and ack.transport == "edi2-apprec"


def test_no_tenant_for_the_sender_dead_letters_with_the_reason(  # type: ignore[no-untyped-def]
    client, services, tmp_path: Path, national: National
) -> None:
    # a tenants file naming none of the centre's HER-ids
    text = national.helseid.tenants_file.read_text()
    other = tmp_path / "other-tenants.yaml"
    other.write_text(text.replace("'80001'", "'70001'").replace("'80002'", "'70002'"))
    services.settings.helseid_tenants_file = other
    ids = address_book(client, tmp_path)
    _use_edi2(client, ids, national.edi2_url)
    _ingest(services, _heart_rate("150", 5))
    DeliveryWorker(
        Outbox(services.engine), default_transports(settings=services.settings)
    ).run_once()
    [row] = _outbox(services)
    assert row.status == "dead"
    assert "no HelseID tenant sends for HER-id 80001, 80002" in row.last_error
    assert national.mt.messages == {}


@dataclass
class Cppa:
    """A CPPA server: profiles per HER-id, each call's HelseID token checked (its client id
    kept)."""

    guard: ApiGuard
    profiles: dict[int, list[Any]] = field(default_factory=dict)
    callers: list[str] = field(default_factory=list)

    def app(self) -> Starlette:
        async def profile(request: Request) -> Response:
            headers = {k.lower(): v for k, v in request.headers.items()}
            try:
                caller = self.guard.check("GET", str(request.url), headers)
            except Unauthorized as exc:
                return Response(status_code=401, headers={"WWW-Authenticate": exc.www})
            self.callers.append(caller.client_id)
            her = int(request.path_params["her"])
            if her not in self.profiles:
                return Response(status_code=404)
            return JSONResponse(
                {"herId": her, "processes": [{"name": "x", "canReceive": self.profiles[her]}]}
            )

        return Starlette(routes=[Route("/Profiles/{her}", profile)])


def _cppa(national: National) -> Cppa:
    return Cppa(ApiGuard(national.helseid.issuer, "nhn:cppa", "nhn:cppa/access"))


def test_cppa_says_whether_the_gp_takes_plo(
    client, services, tmp_path: Path, national: National, caplog
) -> None:  # type: ignore[no-untyped-def]
    server = _cppa(national)
    profiles = server.profiles
    guard = server.guard
    services.settings.helseid_tenants_file = national.helseid.tenants_file
    ids = address_book(client, tmp_path)
    _use_edi2(client, ids, national.edi2_url)
    with live_server(server.app()) as cppa:
        services.settings.cppa_base_url = cppa

        def deliver() -> None:
            DeliveryWorker(
                Outbox(services.engine), default_transports(settings=services.settings)
            ).run_once()

        profiles[int(HER["gp"])] = ["DIALOG_HELSEFAGLIG", {"name": "DIALOG_SVAR"}]
        _ingest(services, _heart_rate("150", 5))
        deliver()
        [row] = _outbox(services)
        assert row.status == "dead"
        assert "HER-id 80011 cannot receive HELSEOPPLYSNINGER_LEGE" in row.last_error
        assert national.mt.messages == {}
        # the profile lists it: it goes
        profiles[int(HER["gp"])].append({"messageName": "HELSEOPPLYSNINGER_LEGE"})
        from interop.messaging.status import send_periodic_status

        assert (
            send_periodic_status(services, days=7, patients=[ids["patient"]], force=True)["sent"]
            == 1
        )
        deliver()
        assert len(national.mt.messages) == 1
        # no profile at all: not known, so it goes
        del profiles[int(HER["gp"])]
        assert (
            send_periodic_status(services, days=7, patients=[ids["patient"]], force=True)["sent"]
            == 1
        )
        deliver()
        assert len(national.mt.messages) == 2
        # the configured fallback: a "no" is sent anyway with INTEROP_CPPA_FALLBACK=send
        profiles[int(HER["gp"])] = ["DIALOG_HELSEFAGLIG"]
        services.settings.cppa_fallback = "send"
        assert (
            send_periodic_status(services, days=7, patients=[ids["patient"]], force=True)["sent"]
            == 1
        )
        with caplog.at_level(logging.WARNING, logger="interop.national"):
            deliver()
        assert len(national.mt.messages) == 3
        assert "cannot receive HELSEOPPLYSNINGER_LEGE" in caplog.text
        assert "INTEROP_CPPA_FALLBACK=send" in caplog.text
    assert guard.checked >= 3


def test_cppa_is_asked_with_the_sending_organisation_s_tenant(  # type: ignore[no-untyped-def]
    client, services, tmp_path: Path, national: National
) -> None:
    """Two tenants, the sender's (fjordvik) listed second: CPPA is asked with fjordvik's HelseID
    client, never the first tenant's. A sender no tenant sends for: dead-lettered with the
    reason, CPPA not asked with anyone's client."""
    config = yaml.safe_load(national.helseid.tenants_file.read_text())
    config["tenants"].reverse()
    assert [t["name"] for t in config["tenants"]] == ["havbygd", "fjordvik"]
    reordered = tmp_path / "havbygd-first.yaml"
    reordered.write_text(yaml.safe_dump(config))
    services.settings.helseid_tenants_file = reordered
    ids = address_book(client, tmp_path)
    _use_edi2(client, ids, national.edi2_url)
    server = _cppa(national)
    server.profiles[int(HER["gp"])] = ["HELSEOPPLYSNINGER_LEGE"]
    with live_server(server.app()) as cppa:
        services.settings.cppa_base_url = cppa
        _ingest(services, _heart_rate("150", 5))
        DeliveryWorker(
            Outbox(services.engine), default_transports(settings=services.settings)
        ).run_once()
        [row] = _outbox(services)
        assert row.status == "transport-acked", row.last_error
        assert server.callers == [CLIENTS["fjordvik"][0]]
        assert len(national.mt.messages) == 1

        # no tenant for the sender: dead, with the reason; CPPA not asked
        for t in config["tenants"]:
            t["her_ids"] = [h for h in t["her_ids"] if h not in ("80001", "80002")]
        orphan = tmp_path / "no-sender.yaml"
        orphan.write_text(yaml.safe_dump(config))
        services.settings.helseid_tenants_file = orphan
        from interop.messaging.status import send_periodic_status

        assert (
            send_periodic_status(services, days=7, patients=[ids["patient"]], force=True)["sent"]
            == 1
        )
        DeliveryWorker(
            Outbox(services.engine), default_transports(settings=services.settings)
        ).run_once()
        dead = _outbox(services)[-1]
        assert dead.status == "dead"
        assert "no HelseID tenant sends for HER-id 80001, 80002" in dead.last_error
        assert server.callers == [CLIENTS["fjordvik"][0]]
        assert len(national.mt.messages) == 1
