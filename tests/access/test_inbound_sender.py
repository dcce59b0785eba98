"""Inbound KITH messages over HTTP are taken only in the caller's own name: a message (or
AppRec) whose MsgHead sender is another organisation is refused with 403, and nothing is
stored, acted on or answered in that sender's name. Admins (operators) may deliver any; the
file-drop folders and EDI 2.0 keep their channel's own trust."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

from sqlalchemy import select

from adapters.base import FNR_OID
from interop.identifiers import HERID_OID, ORGNR_OID, generate_orgnr
from interop.messaging.addressbook import TRANSPORT_SYSTEM
from interop.messaging.inbound import KithInbox, TrustedChannel
from interop.routing.outbox import enqueue
from interop.store.schema import inbound_message_table, outbox_table
from tests.conftest import SHARED

KITH = SHARED / "conformance" / "kith"
CORPUS = SHARED / "corpus" / "kith"
# the GP's answer (practice HER-id 91096, GP 91101) to the municipality (99387, unit 5078)
SVAR = (KITH / "dialogmelding-1.0/Dialogmelding_svar_foresporsel_PLO_v1-0.xml").read_bytes()
SVAR_PATIENT = "13116900216"
# an AppRec from organisation 56704 (unit 258521) for our message a6967e6a-…
APPREC = (CORPUS / "ks-fiks-nhn/app-rec/1.0-example-ok.xml").read_bytes()
APPREC_FOR = "a6967e6a-8c0a-4be4-a647-c921d3086423"
XML = {"Content-Type": "application/xml"}


def _post(client: Any, resource: dict[str, Any]) -> str:
    r = client.post(f"/fhir/{resource['resourceType']}", json=resource)
    assert r.status_code == 201, r.text
    return str(r.json()["id"])


def _org(client: Any, name: str, herid: str, orgnr: str, part_of: str | None = None) -> str:
    res: dict[str, Any] = {
        "resourceType": "Organization",
        "name": name,
        "identifier": [
            {"system": ORGNR_OID, "value": orgnr},
            {"system": HERID_OID, "value": herid},
        ],
    }
    if part_of:
        res["partOf"] = {"reference": f"Organization/{part_of}"}
    return _post(client, res)


def _endpoint(client: Any, org: str, folder: Path) -> str:
    return _post(
        client,
        {
            "resourceType": "Endpoint",
            "status": "active",
            "connectionType": {"system": TRANSPORT_SYSTEM, "code": "file-drop"},
            "managingOrganization": {"reference": f"Organization/{org}"},
            "payloadType": [{"text": "KITH"}],
            "address": folder.as_uri(),
        },
    )


def _key(client: Any, role: str, orgnr: str) -> dict[str, str]:
    r = client.post("/api/v1/actors", json={"role": role, "organization": {"orgnr": orgnr}})
    assert r.status_code == 201, r.text
    return {**XML, "Authorization": f"Bearer {r.json()['key']}"}


def _book(client: Any, tmp_path: Path, *, patient: bool = True) -> dict[str, Any]:
    """The municipality (99387) with its follow-up centre (5078) managing the patient; the
    GP's practice (91096, GP role 91101); another practice (91200, GP role 91201) and the
    organisation 56704 (unit 258521) that answers our messages with AppRecs."""
    rng = random.Random(11)
    orgnr = {k: generate_orgnr(rng) for k in ("municipality", "practice", "other", "answerer")}
    municipality = _org(client, "Fjordvik kommune", "99387", orgnr["municipality"])
    centre = _org(client, "Oppfølgingssenteret", "5078", generate_orgnr(rng), municipality)
    practice = _org(client, "Kattskinnet legesenter", "91096", orgnr["practice"])
    other = _org(client, "Et annet legesenter", "91200", orgnr["other"])
    answerer = _org(client, "Svarende virksomhet", "56704", orgnr["answerer"])
    _org(client, "Avdelingen", "258521", generate_orgnr(rng), answerer)
    for org, name in ((practice, "practice"), (other, "other"), (answerer, "answerer")):
        _endpoint(client, org, tmp_path / name)
    for org, herid in ((practice, "91101"), (other, "91201")):
        _post(
            client,
            {
                "resourceType": "PractitionerRole",
                "identifier": [{"system": HERID_OID, "value": herid}],
                "organization": {"reference": f"Organization/{org}"},
            },
        )
    if patient:
        _post(
            client,
            {
                "resourceType": "Patient",
                "identifier": [{"system": FNR_OID, "value": SVAR_PATIENT}],
                "managingOrganization": {"reference": f"Organization/{centre}"},
            },
        )
    return {
        "practice": _key(client, "gp", orgnr["practice"]),
        "other": _key(client, "gp", orgnr["other"]),
        "answerer": _key(client, "hospital", orgnr["answerer"]),
        "municipality_epj": _key(client, "epj", orgnr["municipality"]),
    }


def _traces(services: Any) -> tuple[list[Any], list[Any]]:
    with services.engine.connect() as conn:
        return (
            list(conn.execute(select(inbound_message_table)).all()),
            list(conn.execute(select(outbox_table)).all()),
        )


def _communications(client: Any) -> list[dict[str, Any]]:
    return [e["resource"] for e in client.get("/fhir/Communication").json().get("entry", [])]


def test_a_message_in_another_practices_name_is_refused(client, services, tmp_path) -> None:  # type: ignore[no-untyped-def]
    keys = _book(client, tmp_path)
    r = client.post("/api/v1/messages/inbound", content=SVAR, headers=keys["other"])
    assert r.status_code == 403, r.text
    assert r.json()["resourceType"] == "OperationOutcome" and "91101" in r.text
    assert _traces(services) == ([], []), "nothing stored, no AppRec in the practice's name"
    assert _communications(client) == []
    # the practice itself delivers it: taken, answered to the practice
    r = client.post("/api/v1/messages/inbound", content=SVAR, headers=keys["practice"])
    assert r.status_code == 202, r.text
    inbound, outbox = _traces(services)
    assert [(m.sender, m.channel) for m in inbound] == [("91101", "http")]
    [ack] = outbox
    assert ack.kind == "apprec" and (tmp_path / "practice").as_uri() in ack.address
    [comm] = _communications(client)
    assert comm["sender"]["identifier"]["value"] == "91101"


def test_a_refused_message_gets_no_apprec_in_the_false_name(client, services, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """Even a message the checklist would reject (unknown patient: E35) must not make us send
    an *Avvist* to the practice whose name another caller used."""
    keys = _book(client, tmp_path, patient=False)
    services.settings.our_herid = "5078"  # no patient managed by the centre: configured
    for who in ("other", "answerer", "municipality_epj"):
        r = client.post("/api/v1/messages/inbound", content=SVAR, headers=keys[who])
        assert r.status_code == 403, (who, r.text)
    assert _traces(services) == ([], [])
    r = client.post("/api/v1/messages/inbound", content=SVAR, headers=keys["practice"])
    assert r.status_code == 422 and "E35" in r.text
    assert [x.kind for x in _traces(services)[1]] == ["apprec"]


def test_the_person_level_her_id_must_not_belong_to_someone_else(
    client, services, tmp_path
) -> None:  # type: ignore[no-untyped-def]
    keys = _book(client, tmp_path)
    # the practice's own organisation level, but a GP the address book places at the other
    # practice: refused
    borrowed = SVAR.replace(b"<Id>91101</Id>", b"<Id>91201</Id>")
    r = client.post("/api/v1/messages/inbound", content=borrowed, headers=keys["practice"])
    assert r.status_code == 403, r.text
    assert _traces(services) == ([], [])
    # a GP the address book does not know yet, at the caller's practice: taken
    new_gp = SVAR.replace(b"<Id>91101</Id>", b"<Id>91999</Id>")
    r = client.post("/api/v1/messages/inbound", content=new_gp, headers=keys["practice"])
    assert r.status_code == 202, r.text
    # the other practice may not use an unknown GP under the first practice's name either
    again = new_gp.replace(
        b"42001f60-0117-11e8-8f1a-0800200c9a66", b"42001f60-0117-11e8-8f1a-0800200c9a67"
    )
    assert (
        client.post("/api/v1/messages/inbound", content=again, headers=keys["other"]).status_code
        == 403
    )


def test_an_apprec_in_another_name_closes_nothing(client, services, tmp_path) -> None:  # type: ignore[no-untyped-def]
    keys = _book(client, tmp_path)
    with services.engine.begin() as conn:
        row = enqueue(
            conn,
            event="triage.red",
            kind="plo",
            destination="Endpoint/x",
            transport="file-drop",
            address="file:///nowhere",
            content_type="application/xml",
            payload=b"<MsgHead/>",
            msg_id=APPREC_FOR,
            expects_apprec=True,
        )

    def status() -> str:
        with services.engine.connect() as conn:
            return str(
                conn.execute(select(outbox_table.c.status).where(outbox_table.c.id == row)).scalar()
            )

    r = client.post("/api/v1/messages/inbound", content=APPREC, headers=keys["practice"])
    assert r.status_code == 403, r.text
    assert status() == "queued"
    assert _traces(services)[0] == []
    r = client.post("/api/v1/messages/inbound", content=APPREC, headers=keys["answerer"])
    assert r.status_code == 202, r.text
    assert r.json()["closes"] == APPREC_FOR and status() == "apprec-ok"


def test_admins_deliver_any_and_trusted_channels_are_not_checked(
    client, services, tmp_path
) -> None:  # type: ignore[no-untyped-def]
    _book(client, tmp_path)
    # an operator (the admin key) may deliver a message from anyone
    r = client.post("/api/v1/messages/inbound", content=SVAR, headers=XML)
    assert r.status_code == 202, r.text
    # a file-drop folder vouches for its sender itself: no caller to check
    corpus = (CORPUS / "ks-fiks-nhn/app-rec/1.1-example-ok.xml").read_bytes()
    result = KithInbox(services).receive(corpus, channel=TrustedChannel("file-drop"))
    assert result.outcome == "apprec"
    inbound, _ = _traces(services)
    assert sorted(m.channel for m in inbound) == ["file-drop", "http"]


def test_every_caller_names_its_channel(services) -> None:  # type: ignore[no-untyped-def]
    """A plain channel name is no channel: the inbox never falls back to trusting the sender."""
    import pytest

    with pytest.raises(TypeError):
        KithInbox(services).receive(SVAR, channel="http")  # type: ignore[arg-type]
    assert _traces(services) == ([], [])
