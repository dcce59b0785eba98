"""Going live with NHN, end to end against the local contract servers: the operator configures
the municipality's HelseID client, the address-book sync finds the patient's GP in
Fastlegeregisteret and the GP in Adresseregisteret, a red deviation goes to that GP over EDI 2.0
(HelseID + DPoP), and the GP's AppRec fetched from EDI 2.0 closes it."""

from __future__ import annotations

import logging
import random
from pathlib import Path
from typing import Any

from interop.identifiers import HERID_OID, ORGNR_OID, generate_orgnr
from interop.messaging.addressbook import FNR_OID
from interop.messaging.edi2 import poll_edi2
from interop.messaging.runtime import kith_for
from interop.national.cli import run_sync
from interop.national.wiring import default_transports, helseid_clients
from interop.routing.outbox import Outbox
from interop.routing.worker import DeliveryWorker
from plo_messages.apprec import AppRec
from plo_messages.msghead import local_timestamp
from tests.messaging.test_gp_flow import FNR, _heart_rate, _ingest, _outbox, _post
from tests.national.conftest import PRACTICE, National, Registers


def our_organisations(client) -> dict[str, str]:  # type: ignore[no-untyped-def]
    rng = random.Random(11)
    ids: dict[str, str] = {}
    ids["municipality"] = _post(
        client,
        {
            "resourceType": "Organization",
            "identifier": [
                {"system": ORGNR_OID, "value": "312229544"},
                {"system": HERID_OID, "value": "80001"},
            ],
            "name": "Fjordvik kommune",
        },
    )
    ids["centre"] = _post(
        client,
        {
            "resourceType": "Organization",
            "identifier": [
                {"system": ORGNR_OID, "value": generate_orgnr(rng)},
                {"system": HERID_OID, "value": "80002"},
            ],
            "name": "Oppfølgingssenteret",
            "partOf": {"reference": f"Organization/{ids['municipality']}"},
        },
    )
    ids["patient"] = _post(
        client,
        {
            "resourceType": "Patient",
            "identifier": [{"system": FNR_OID, "value": FNR}],
            "name": [{"family": "Danser", "given": ["Line"]}],
            "managingOrganization": {"reference": f"Organization/{ids['centre']}"},
        },
    )
    return ids


def two_patients_with_queued_messages(  # type: ignore[no-untyped-def]
    client, services, registers: Registers, her_ids: list[str] | None = None
) -> tuple[dict[str, str], str]:
    """Patients A (our organisations' patient) and B, both with GP 80011 per FLR, each with a
    status message to that GP queued (not yet delivered); ``her_ids`` synced from AR too."""
    from dataclasses import replace

    from interop.messaging.status import send_periodic_status
    from tests.national.test_plans import FNR_B

    ids = our_organisations(client)
    b = _post(
        client,
        {
            "resourceType": "Patient",
            "identifier": [{"system": FNR_OID, "value": FNR_B}],
            "name": [{"family": "Berg", "given": ["Bjørn"]}],
            "managingOrganization": {"reference": f"Organization/{ids['centre']}"},
        },
    )
    registers.flr.gp[FNR_B] = 80011
    run_sync(services, her_ids)
    for m in (_heart_rate("70", 60), _heart_rate("72", 30)):
        _ingest(services, m, replace(m, patient=replace(m.patient, value=FNR_B)))
    assert send_periodic_status(services, days=7)["sent"] == 2  # queued, not yet delivered
    return ids, b


def only_b_s_message_went_to_the_first_gp(services, national: National) -> Any:  # type: ignore[no-untyped-def]
    """Deliver: exactly one message went, B's, to GP 80011, carrying no number but B's."""
    from tests.national.test_plans import FNR_B

    _worker(services).run_once()
    [to_old_gp] = national.mt.messages.values()
    assert to_old_gp.receiver_her_ids[-2:] == [80010, 80011]
    assert FNR_B.encode() in to_old_gp.document and FNR.encode() not in to_old_gp.document
    return to_old_gp


def _worker(services) -> DeliveryWorker:  # type: ignore[no-untyped-def]
    return DeliveryWorker(Outbox(services.engine), default_transports(settings=services.settings))


def _gp_role(client, patient_id: str) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    patient = client.get(f"/fhir/Patient/{patient_id}").json()
    [gp] = patient["generalPractitioner"]
    return dict(client.get(f"/fhir/{gp['reference']}").json())


def _cli_sync(services, monkeypatch):  # type: ignore[no-untyped-def]
    from typer.testing import CliRunner

    from interop.cli import app
    from interop.config import reset_settings_cache

    s = services.settings
    env = {
        "INTEROP_DATABASE_URL": s.database_url,
        "INTEROP_HELSEID_TENANTS_FILE": str(s.helseid_tenants_file),
        "INTEROP_EDI2_BASE_URL": s.edi2_base_url,
        "INTEROP_AR_BASE_URL": s.ar_base_url,
        "INTEROP_FLR_URL": s.flr_url,
        "INTEROP_FLR_USERNAME": s.flr_username,
        "INTEROP_FLR_PASSWORD": s.flr_password.get_secret_value(),
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    reset_settings_cache()
    try:
        return CliRunner().invoke(app, ["addressbook", "sync"])
    finally:
        reset_settings_cache()


def test_red_deviation_to_the_gp_from_flr_and_ar_over_edi2_closed_by_apprec(  # type: ignore[no-untyped-def]
    client, services, national: National, registers: Registers, monkeypatch, caplog
) -> None:
    caplog.set_level(logging.DEBUG)  # everything that is logged, nothing secret in it
    ids = our_organisations(client)
    # the operator runs `interop addressbook sync` with the configuration in the environment:
    # FLR says the GP is HER-id 80011, AR says who that is
    result = _cli_sync(services, monkeypatch)
    assert result.exit_code == 0, result.output
    assert "'created': 4" in result.output and "'gp-changed': 1" in result.output
    role = _gp_role(client, ids["patient"])
    assert {"system": HERID_OID, "value": "80011"} in role["identifier"]
    assert role["meta"]["tag"][0]["code"] == "adresseregisteret"
    practice = client.get(f"/fhir/{role['organization']['reference']}").json()
    assert practice["name"] == PRACTICE[1]
    [ep_ref] = role["endpoint"]
    endpoint = client.get(f"/fhir/{ep_ref['reference']}").json()
    assert endpoint["connectionType"]["code"] == "edi2"
    assert endpoint["address"] == national.edi2_url and endpoint["status"] == "active"
    assert registers.flr.calls == [FNR]

    # a red measurement: the deviation goes to the GP over EDI 2.0
    _ingest(services, _heart_rate("150", 5))
    [row] = _outbox(services)
    assert row.transport == "edi2" and row.destination == ep_ref["reference"] and row.expects_apprec
    _worker(services).run_once()
    [stored] = national.mt.messages.values()
    assert stored.receiver_her_ids[-1] == 80011 and stored.sender_her_ids == [80001, 80002]
    assert _outbox(services)[0].status == "transport-acked"

    # the GP's system answers with an AppRec OK; it comes to us through EDI 2.0
    kith = kith_for(services.settings)
    assert kith is not None
    sent = kith.read(stored.document)
    assert sent.header is not None
    apprec = AppRec(
        version="1.1",
        status="1",
        original_msg_id=row.msg_id,
        original_type=sent.header.type,
        original_issue_date=sent.header.gen_date,
        sender=sent.header.receiver,
        receiver=sent.header.sender,
        id="7a1e1c3e-2b7d-4f0a-9d0e-3c5b2a1f0e99",
        gen_date=local_timestamp(),
    )
    mid = national.mt.inject(kith.build_apprec(apprec, "1.1"))
    assert national.mt.messages[mid].receiver_her_id == 80002
    tokens = national.helseid.issuer.token_endpoint.issued
    assert poll_edi2(services, helseid=None) == {"apprec": 1}
    assert poll_edi2(services, helseid=None) == {}
    # the tenants' HelseID clients are shared in the process: the polls reuse one token
    assert national.helseid.issuer.token_endpoint.issued - tokens <= 1
    [closed] = _outbox(services)
    assert closed.status == "apprec-ok" and closed.apprec_status == "ok"
    assert national.mt.messages[mid].read_by == {80002}
    assert national.mt.messages[stored.id].delivery_state == "Acknowledged"

    # keys, tokens and the FLR password were never logged (at any level)
    shared = helseid_clients(services.settings)
    assert shared is not None
    fjordvik = shared.for_tenant(national.helseid.config.tenants[0])
    secrets = [fjordvik.token("edi2").value, fjordvik.token("ar").value, "grunndata-passord"]
    secrets += [
        str(v)
        for jwk in national.helseid.private.values()
        for k, v in jwk.items()
        if k in ("d", "p", "q", "dp", "dq", "qi")
    ]
    assert caplog.records and len(secrets) > 3
    assert [s[:12] for s in secrets if s in caplog.text] == []


def test_after_a_change_of_gp_messages_go_to_the_new_gp(  # type: ignore[no-untyped-def]
    client, services, national: National, registers: Registers
) -> None:
    from interop.messaging.status import send_periodic_status

    ids = our_organisations(client)
    run_sync(services)
    assert {"system": HERID_OID, "value": "80011"} in _gp_role(client, ids["patient"])["identifier"]
    registers.flr.gp[FNR] = 80021  # the patient changed GP
    assert run_sync(services)["gp-changed"] == 1  # type: ignore[index]
    role = _gp_role(client, ids["patient"])
    assert {"system": HERID_OID, "value": "80021"} in role["identifier"]
    _ingest(services, _heart_rate("70", 60), _heart_rate("72", 30))
    assert send_periodic_status(services, days=7)["sent"] == 1
    _worker(services).run_once()
    [stored] = national.mt.messages.values()
    assert stored.receiver_her_ids[-2:] == [80020, 80021]


def test_messages_queued_for_the_former_gp_never_reach_them(  # type: ignore[no-untyped-def]
    client, services, national: National, registers: Registers
) -> None:
    """Patient safety: a message made while the old GP was the patient's, still queued when FLR
    says the patient changed GP, is held (dead-lettered with the reason) — never delivered to
    the former GP. Another patient of that GP keeps their message to them."""
    from interop.messaging.status import send_periodic_status
    from tests.national.test_plans import FNR_B

    ids, b = two_patients_with_queued_messages(client, services, registers)
    registers.flr.gp[FNR] = 80021  # A changed GP; B did not
    report = run_sync(services)
    assert report is not None and report["gp-changed"] == 1 and report["dead-lettered"] == 1
    rows = {r.patient_id: r for r in _outbox(services)}
    held = rows[ids["patient"]]
    assert held.status == "dead"
    assert "GP changed per Fastlegeregisteret (HER-id 80011 → 80021)" in held.last_error
    assert rows[b].status == "queued"
    to_old_gp = only_b_s_message_went_to_the_first_gp(services, national)
    # A's next message goes to the new GP
    assert (
        send_periodic_status(services, days=7, patients=[ids["patient"]], force=True)["sent"] == 1
    )
    _worker(services).run_once()
    [to_new_gp] = [m for m in national.mt.messages.values() if m is not to_old_gp]
    assert to_new_gp.receiver_her_ids[-2:] == [80020, 80021]
    assert FNR.encode() in to_new_gp.document and FNR_B.encode() not in to_new_gp.document


def test_a_her_id_gone_from_ar_switches_its_endpoint_off_and_dead_letters(  # type: ignore[no-untyped-def]
    client, services, national: National, registers: Registers
) -> None:
    from interop.messaging.status import send_periodic_status

    ids = our_organisations(client)
    run_sync(services)
    _ingest(services, _heart_rate("70", 60), _heart_rate("72", 30))
    assert send_periodic_status(services, days=7)["sent"] == 1  # queued, not yet delivered
    del registers.ar.parties[80011]  # the GP left AR
    report = run_sync(services)
    assert report is not None and report["gone"] == 1 and report["dead-lettered"] == 1
    [row] = _outbox(services)
    assert row.status == "dead" and "80011 is no longer in Adresseregisteret" in row.last_error
    endpoint = client.get(
        f"/fhir/{_gp_role(client, ids['patient'])['endpoint'][0]['reference']}"
    ).json()
    assert endpoint["status"] == "off"
    # a new message to that GP cannot be routed, and says why
    assert send_periodic_status(services, days=7, patients=[ids["patient"]], force=True) == {
        "sent": 0,
        "skipped": 0,
        "unroutable": 1,
    }
    dead = _outbox(services)[-1]
    assert dead.status == "dead" and "no longer in Adresseregisteret" in dead.last_error
    _worker(services).run_once()
    assert national.mt.messages == {}


def test_addressbook_sync_command_without_ar_says_so(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from typer.testing import CliRunner

    from interop.cli import app
    from interop.config import reset_settings_cache

    monkeypatch.setenv("INTEROP_DATABASE_URL", f"sqlite:///{tmp_path / 'x.db'}")
    monkeypatch.delenv("INTEROP_AR_BASE_URL", raising=False)
    reset_settings_cache()
    try:
        result = CliRunner().invoke(app, ["addressbook", "sync"])
    finally:
        reset_settings_cache()
    assert result.exit_code == 2 and "INTEROP_AR_BASE_URL is not set" in result.output


def test_first_contact_gives_a_new_patient_its_gp(  # type: ignore[no-untyped-def]
    client, services, national: National, registers: Registers
) -> None:
    from interop.national.cli import national_jobs

    ids = our_organisations(client)
    # the worker's jobs: the full sync every INTEROP_ADDRESSBOOK_SYNC_SECONDS, first contact often
    jobs = {name: (interval, fn) for name, interval, fn in national_jobs(services)}
    assert jobs["addressbook-sync"][0] == services.settings.addressbook_sync_seconds
    interval, run_first_contact = jobs["gp-first-contact"]
    assert interval <= 60
    assert run_first_contact() == {
        "created": 4,
        "updated": 0,
        "gone": 0,
        "dead-lettered": 0,
        "gp-changed": 1,
        "errors": 0,
    }
    assert {"system": HERID_OID, "value": "80011"} in _gp_role(client, ids["patient"])["identifier"]
    # a patient who has a GP is not asked about again
    calls = len(registers.flr.calls)
    assert run_first_contact()["gp-changed"] == 0  # type: ignore[index]
    assert len(registers.flr.calls) == calls
