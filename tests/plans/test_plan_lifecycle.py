"""The egenbehandlingsplan's life cycle with the GP: a baseline proposal from the start-up
period (never applied by itself), a draft with what a real plan holds, proposed to the GP by
Dialogmelding forespørsel, returned to draft by a svar asking for changes, activated by a svar
approving it (or the GP through the API), every version kept; only an active plan judges."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

from sqlalchemy import select

from adapters.base import FNR_OID, LOINC, Code, Measurement, PatientRef
from interop.care.plan_lifecycle import read_gp_answer
from interop.care.plans import ranges_in_force
from interop.messaging.addressbook import Destination
from interop.messaging.inbound import KithInbox, TrustedChannel
from interop.messaging.runtime import kith_for
from interop.store.schema import outbox_table
from plo_messages.content import DialogNote, build_dialog_note
from plo_messages.model import Coded, ConversationRef, Header
from plo_messages.msghead import local_timestamp
from tests.messaging.test_gp_flow import FNR, _ingest, address_book
from tests.text.test_pdf import pdf_streams

SVAR = Coded("5", "Svar på forespørsel", "2.16.578.1.12.4.1.1.9069")


def _pulse(value: float, days_ago: float) -> Measurement:
    return Measurement(
        Code(LOINC, "8867-4"),
        Decimal(str(value)),
        "/min",
        datetime.now(UTC) - timedelta(days=days_ago),
        PatientRef(FNR_OID, FNR),
        f"pulse {days_ago}",
    )


def _start_up_period(services: Any) -> None:
    """Three weeks of resting pulse around 72/min (the patient's own normal)."""
    rng = random.Random(4)
    _ingest(
        services, *[_pulse(72 + rng.choice([-3, -2, -1, 0, 1, 2, 3]), 21 - d) for d in range(20)]
    )


def _requests(services: Any) -> list[Any]:
    with services.engine.connect() as conn:
        return [
            r
            for r in conn.execute(select(outbox_table).order_by(outbox_table.c.seq)).all()
            if r.event == "plan.proposed"
        ]


def _gp_answers(services: Any, tmp_path: Path, request: Any, text: str, msg_id: str) -> None:
    kith = kith_for(services.settings)
    assert kith is not None
    asked = kith.read(bytes(request.payload)).header
    assert asked is not None
    header = Header(
        type=Coded("DIALOG_SVAR", "Svar på forespørsel"),
        msg_id=msg_id,
        gen_date=local_timestamp(),
        sender=asked.receiver,
        receiver=asked.sender,
        patient=asked.patient,
        conversation_ref=ConversationRef(request.msg_id, request.msg_id),
    )
    data = kith.build(header, build_dialog_note(DialogNote(SVAR, None, text)))
    got = KithInbox(services).receive(
        data,
        channel=TrustedChannel("file-drop"),
        source=Destination("Endpoint/x", "file-drop", (tmp_path / "gp").as_uri()),
    )
    assert got.outcome == "accepted", got.errors


def _plan(client: Any, plan_id: str) -> dict[str, Any]:
    return dict(client.get(f"/fhir/CarePlan/{plan_id}").json())


def _state(cp: dict[str, Any]) -> str:
    return next(e["valueCode"] for e in cp["extension"] if e["url"].endswith("plan-state"))


def test_proposal_from_the_start_up_period_is_clamped_and_never_applied(
    client: Any, services: Any, tmp_path: Path
) -> None:
    ids = address_book(client, tmp_path)
    _start_up_period(services)
    r = client.get(f"/api/v1/patients/{FNR}/plan/proposal")
    assert r.status_code == 200, r.text
    proposal = r.json()
    assert proposal["applied"] is False
    [pulse] = [z for z in proposal["zones"] if z["code"] == "8867-4"]
    assert pulse["statistics"]["n"] == 20 and 70 <= pulse["statistics"]["median"] <= 74
    assert len(pulse["readings"]) == 20 and pulse["readings"][0]["observation"].startswith(
        "Observation/"
    )
    # median 72 ± 2 × spread gives a green low near 66: above the guideline's 45–60 → 60
    assert pulse["green"]["low"] == 60 and "green_low" in pulse["clampedToGuideline"]
    assert 90 <= pulse["green"]["high"] <= 110
    assert pulse["yellow"]["low"] <= pulse["green"]["low"]
    # nothing was stored or applied
    assert client.get(f"/api/v1/patients/{FNR}/plan/versions").json() == []
    with services.engine.connect() as conn:
        assert ranges_in_force(conn, ids["patient"], datetime.now(UTC)) == {}


def test_draft_proposed_to_the_gp_changes_requested_then_approved_by_svar(
    client: Any, services: Any, tmp_path: Path
) -> None:
    ids = address_book(client, tmp_path)
    _start_up_period(services)
    body = client.get(f"/api/v1/patients/{FNR}/plan/proposal").json()["draft"]
    body["goals"] = ["Klare å gå tur med hunden hver dag"]
    body["content"] = [
        {
            "zone": "yellow",
            "signs": ["Puls over grønn sone", "Mer tungpustet enn vanlig"],
            "patientActions": ["Hvil og mål på nytt etter 30 minutter"],
            "medication": ["Ta ekstra Furix 40 mg som avtalt med fastlegen"],
            "contact": {"name": "Oppfølgingssenteret", "phone": "73555555"},
        },
        {
            "zone": "red",
            "signs": ["Brystsmerter"],
            "serviceActions": ["Sykepleier ringer pasienten innen en time"],
            "contact": {"name": "Legevakt", "phone": "116117"},
        },
    ]
    r = client.post(f"/api/v1/patients/{FNR}/plan/drafts", json=body)
    assert r.status_code == 201, r.text
    plan_id = r.json()["carePlan"]["id"]
    assert r.json()["state"] == "draft"
    with services.engine.connect() as conn:
        assert ranges_in_force(conn, ids["patient"], datetime.now(UTC)) == {}, (
            "a draft judges nothing"
        )

    r = client.post(f"/api/v1/patients/{FNR}/plan/drafts/{plan_id}/propose")
    assert r.status_code == 200, r.text
    assert _state(_plan(client, plan_id)) == "proposed"
    [request] = _requests(services)
    assert (
        request.kind == "dialog-foresporsel"
        and request.destination == f"Endpoint/{ids['gp-endpoint']}"
    )
    kith = kith_for(services.settings)
    assert kith is not None
    sent = kith.read(bytes(request.payload))
    assert sent.outcome == "accepted" and sent.header is not None
    assert sent.header.type.v == "DIALOG_FORESPORSEL"
    question = sent.content[0].question  # type: ignore[index]
    assert "Klare å gå tur med hunden" in question and "Ta ekstra Furix 40 mg" in question
    assert "Sone gul:" in question and "Legevakt, tlf. 116117" in question
    assert "Puls: grønn 60–" in question  # display names and decimal comma, no codes
    # the plan as a PDF attachment too (the message passed the KITH XSDs to be built and read)
    [attachment] = sent.attachments
    assert attachment.mime_type == "application/pdf"
    assert attachment.description == "Egenbehandlingsplan (forslag)"
    pdf = b"".join(pdf_streams(attachment.data))
    assert b"Ta ekstra Furix 40 mg" in pdf and "Sone gul:".encode("cp1252") in pdf
    assert "Puls: grønn 60".encode("cp1252") in pdf
    with services.engine.connect() as conn:
        assert ranges_in_force(conn, ids["patient"], datetime.now(UTC)) == {}, "nor a proposal"

    # the GP asks for changes: back to draft with the GP's words
    _gp_answers(
        services,
        tmp_path,
        request,
        "Ikke godkjent: grønn puls bør være 55–95.",
        "4d1f0b8e-0001-4c1a-9d2e-000000000001",
    )
    cp = _plan(client, plan_id)
    assert _state(cp) == "draft" and cp["status"] == "draft"
    assert "grønn puls bør være 55–95" in cp["note"][-1]["text"]
    # the nurse changes it and proposes again; the GP approves
    body["zones"][0]["green"] = {"low": 55, "high": 95}
    body["zones"][0]["yellow"] = {"low": 45, "high": 110}
    r = client.put(f"/api/v1/patients/{FNR}/plan/drafts/{plan_id}", json=body)
    assert r.status_code == 200, r.text
    assert client.post(f"/api/v1/patients/{FNR}/plan/drafts/{plan_id}/propose").status_code == 200
    second = _requests(services)[-1]
    _gp_answers(services, tmp_path, second, "Godkjent.", "4d1f0b8e-0001-4c1a-9d2e-000000000002")
    cp = _plan(client, plan_id)
    assert _state(cp) == "active" and cp["status"] == "active" and cp["period"]["start"]
    gp_hpr = client.get(f"/fhir/Practitioner/{ids['practitioner']}").json()["identifier"][0][
        "value"
    ]
    prov = client.get("/fhir/Provenance", params={"target": f"CarePlan/{plan_id}"}).json()
    verifier = next(
        a["who"]
        for e in prov["entry"]
        for a in e["resource"]["agent"]
        if a["type"]["coding"][0]["code"] == "verifier"
    )
    assert verifier["reference"] == f"Practitioner/{ids['practitioner']}"
    assert verifier["identifier"]["value"] == gp_hpr
    with services.engine.connect() as conn:
        ranges = ranges_in_force(conn, ids["patient"], datetime.now(UTC) + timedelta(seconds=1))
    assert ranges["8867-4"].green == (Decimal(55), Decimal(95))
    # every version of the plan is kept (FHIR history): draft, proposed, draft, …, active
    history = client.get(f"/fhir/CarePlan/{plan_id}/_history").json()
    assert history["total"] >= 5


def test_the_gp_approves_through_the_api_and_a_new_plan_replaces_the_old(
    client: Any, services: Any, tmp_path: Path
) -> None:
    ids = address_book(client, tmp_path)
    gp_hpr = client.get(f"/fhir/Practitioner/{ids['practitioner']}").json()["identifier"][0][
        "value"
    ]
    practice = client.get(f"/fhir/Organization/{ids['practice']}").json()
    orgnr = next(i["value"] for i in practice["identifier"] if i["system"].endswith("4.1.4.101"))
    key = client.post(
        "/api/v1/actors", json={"role": "gp", "hpr": gp_hpr, "organization": {"orgnr": orgnr}}
    )
    assert key.status_code == 201, key.text
    gp = {"Authorization": f"Bearer {key.json()['key']}"}
    zones = [
        {
            "code": "8867-4",
            "unit": "/min",
            "green": {"low": 50, "high": 100},
            "yellow": {"low": 40, "high": 120},
        }
    ]
    first = client.post(f"/api/v1/patients/{FNR}/plan/drafts", json={"zones": zones}).json()
    first_id = first["carePlan"]["id"]
    # a draft cannot be approved: it must be proposed to the GP first
    early = client.post(f"/api/v1/patients/{FNR}/plan/{first_id}/approve", headers=gp)
    assert early.status_code == 409, early.text
    client.post(f"/api/v1/patients/{FNR}/plan/drafts/{first_id}/propose")
    # a nurse cannot approve in the GP's place
    nurse = client.post(f"/api/v1/patients/{FNR}/plan/{first_id}/approve")
    assert nurse.status_code == 403
    r = client.post(f"/api/v1/patients/{FNR}/plan/{first_id}/approve", headers=gp)
    assert r.status_code == 200, r.text
    assert r.json()["state"] == "active"
    zones[0]["green"] = {"low": 55, "high": 95}
    second_id = client.post(f"/api/v1/patients/{FNR}/plan/drafts", json={"zones": zones}).json()[
        "carePlan"
    ]["id"]
    client.post(f"/api/v1/patients/{FNR}/plan/drafts/{second_id}/propose")
    assert (
        client.post(f"/api/v1/patients/{FNR}/plan/{second_id}/approve", headers=gp).status_code
        == 200
    )
    versions = client.get(f"/api/v1/patients/{FNR}/plan/versions").json()
    assert [(v["id"], v["state"]) for v in versions] == [
        (first_id, "completed"),
        (second_id, "active"),
    ]
    assert versions[0]["period"]["end"] == versions[1]["period"]["start"]
    # an approval the GP gave elsewhere, recorded by PUT …/plan, replaces it the same way
    recorded = client.put(
        f"/api/v1/patients/{FNR}/plan", json={"approvedBy": {"hpr": gp_hpr}, "zones": zones}
    )
    assert recorded.status_code == 200, recorded.text
    third_id = recorded.json()["carePlan"]["id"]
    versions = client.get(f"/api/v1/patients/{FNR}/plan/versions").json()
    assert [v["state"] for v in versions] == ["completed", "completed", "active"]
    r = client.post(f"/api/v1/patients/{FNR}/plan/{third_id}/revoke", json={"reason": "Innlagt"})
    assert r.status_code == 200 and r.json()["state"] == "revoked"
    with services.engine.connect() as conn:
        assert ranges_in_force(conn, ids["patient"], datetime.now(UTC) + timedelta(seconds=5)) == {}


def test_gp_answers_are_read_conservatively() -> None:
    assert read_gp_answer("Godkjent.") == "approve"
    assert read_gp_answer("OK, ser bra ut") == "approve"
    assert read_gp_answer("Ikke godkjent, se over") == "changes"
    assert read_gp_answer("Godkjent, men endre gul grense til 110") == "changes"
    assert read_gp_answer("Ring meg") == "unclear"
    assert read_gp_answer("Tok ikke stilling") == "unclear"
