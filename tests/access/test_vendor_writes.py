"""A vendor writes measurements only for the patients linked to it, and changes only what it
created: on every ingest door (HTTP ``/ingest`` with each way of naming the patient, HL7 v2
over MLLP), without ever telling a known but unlinked person from one the service does not
know."""

from __future__ import annotations

import re
from typing import Any

import orjson
from sqlalchemy import func, select

from adapters.base import FNR_OID, vendor_user_system
from interop.store.schema import quarantine_table
from tests.conftest import CONFORMANCE

VENDOR_A, VENDOR_B = "841672119", "974760673"
FNR_A = "13031353453"  # linked to vendor A
FNR_B = "02028099471"  # a patient of the service, linked to vendor B only
FNR_UNKNOWN = "15076500565"  # nobody the service knows
V = CONFORMANCE / "vendor"
HL7_BP = (V / "continua-ipf/valid-bp-continua-wan.hl7v2").read_bytes()
CDA = (V / "continua-ipf/HL7_CDA_PHMR_Rich_Rodgers.xml").read_bytes()
CSV = (V / "accu-chek-csv/ProperDiary.csv").read_bytes()


def _ok(r: Any) -> dict[str, Any]:
    assert r.status_code in (200, 201), r.text
    return r.json()  # type: ignore[no-any-return]


def _patient(client: Any, fnr: str) -> str:
    return str(
        _ok(
            client.post(
                "/fhir/Patient",
                json={"resourceType": "Patient", "identifier": [{"system": FNR_OID, "value": fnr}]},
            )
        )["id"]
    )


def _vendor(client: Any, orgnr: str) -> dict[str, str]:
    key = _ok(
        client.post("/api/v1/actors", json={"role": "vendor", "organization": {"orgnr": orgnr}})
    )
    return {"Authorization": f"Bearer {key['key']}"}


def _link(client: Any, vendor: str, user: str, fnr: str) -> None:
    _ok(
        client.post(
            "/api/v1/patient-links", json={"source": vendor, "userId": user, "nationalId": fnr}
        )
    )


def _world(client: Any) -> dict[str, Any]:
    world = {"a": _patient(client, FNR_A), "b": _patient(client, FNR_B)}
    _link(client, VENDOR_A, "anna", FNR_A)
    _link(client, VENDOR_B, "bjorn", FNR_B)
    world["vendor_a"] = _vendor(client, VENDOR_A)
    world["vendor_b"] = _vendor(client, VENDOR_B)
    return world


def _obs(subject: dict[str, Any], value: float = 72, ident: str | None = None) -> dict[str, Any]:
    obs: dict[str, Any] = {
        "resourceType": "Observation",
        "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4"}]},
        "subject": subject,
        "effectiveDateTime": "2026-03-01T08:00:00+01:00",
        "valueQuantity": {
            "value": value,
            "unit": "/min",
            "system": "http://unitsofmeasure.org",
            "code": "/min",
        },
    }
    if ident:
        obs["identifier"] = [{"system": "urn:example:acme-measurement", "value": ident}]
    return obs


def _fnr(fnr: str) -> dict[str, Any]:
    return {"identifier": {"system": FNR_OID, "value": fnr}}


def _bundle(*observations: dict[str, Any]) -> bytes:
    return orjson.dumps(
        {
            "resourceType": "Bundle",
            "type": "collection",
            "entry": [{"resource": o} for o in observations],
        }
    )


def _ingest(client: Any, adapter: str, body: bytes, who: dict[str, str], **params: str) -> Any:
    return client.post(f"/ingest/{adapter}", content=body, headers=who, params=params)


def _count(client: Any, patient: str) -> int:
    found = _ok(client.get("/fhir/Observation", params={"patient": patient, "_summary": "count"}))
    return int(found["total"])


def _quarantined(services: Any) -> int:
    with services.engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(quarantine_table)).scalar_one())


def _codes(report: dict[str, Any]) -> list[str]:
    return [d["code"] for d in report["diagnostics"]]


# ---- HTTP /ingest ------------------------------------------------------------------------------


def test_a_message_for_three_people_stores_only_the_linked_patients_item(client, services) -> None:  # type: ignore[no-untyped-def]
    w = _world(client)
    r = _ingest(
        client,
        "fhir",
        _bundle(_obs(_fnr(FNR_B)), _obs(_fnr(FNR_A)), _obs(_fnr(FNR_UNKNOWN))),
        w["vendor_a"],
    )
    report = _ok(r)
    assert (report["created"], report["rejected"], report["quarantined"]) == (1, 2, 0)
    refused = [d for d in report["diagnostics"] if d["code"] == "not-linked"]
    assert [d["location"] for d in refused] == ["entry[0]", "entry[2]"], report["diagnostics"]
    assert [d["location"] for d in refused] == ["entry[0]", "entry[2]"]
    assert _count(client, w["a"]) == 1
    assert _count(client, w["b"]) == 0
    assert _quarantined(services) == 0


def test_known_but_unlinked_and_unknown_people_get_the_same_answer(client, services) -> None:  # type: ignore[no-untyped-def]
    """Nothing in the answer tells the vendor whether a fødselsnummer is a patient here."""
    w = _world(client)

    def answer(fnr: str, accept: str) -> tuple[int, str]:
        r = _ingest(
            client,
            "fhir",
            orjson.dumps(_obs(_fnr(fnr))),
            {**w["vendor_a"], "Accept": accept},
        )
        return r.status_code, r.text.replace(fnr, "<fnr>")

    for accept in ("application/json", "application/fhir+json"):
        known, unknown = answer(FNR_B, accept), answer(FNR_UNKNOWN, accept)
        assert known == unknown
        assert known[0] == 200 and "not-linked" in known[1]
    # the same over ?patient= for a format that carries no patient
    csv = {"profile": "accu-chek-csv"}
    known_r = _ingest(client, "mapped-csv", CSV, w["vendor_a"], patient=FNR_B, **csv)
    unknown_r = _ingest(client, "mapped-csv", CSV, w["vendor_a"], patient=FNR_UNKNOWN, **csv)
    assert known_r.status_code == unknown_r.status_code == 200
    assert known_r.text.replace(FNR_B, "x") == unknown_r.text.replace(FNR_UNKNOWN, "x")
    assert known_r.json()["created"] == 0 and known_r.json()["rejected"] == 6
    # nothing waits that a later Patient or link could release into anyone's name
    assert _quarantined(services) == 0
    unknown = _patient(client, FNR_UNKNOWN)
    _link(client, VENDOR_B, "ny", FNR_UNKNOWN)
    released = _ok(client.post("/api/v1/quarantine/release"))
    assert released["released"] == 0
    assert _count(client, unknown) == 0 and _count(client, w["b"]) == 0


def test_every_way_of_naming_a_patient_is_checked(client, services) -> None:  # type: ignore[no-untyped-def]
    w = _world(client)
    a = w["vendor_a"]
    # HL7 v2 PID-3 with a fødselsnummer
    for fnr, created in ((FNR_B, 0), (FNR_A, 1)):
        msg = HL7_BP.replace(b"789567^^^Imaginary Hospital^PI ", f"{fnr}^^^^FNR".encode())
        msg = msg.replace(b"MSGID1234", f"MSG-{fnr}".encode())
        rep = _ok(_ingest(client, "hl7v2", msg, a))
        assert rep["created"] == created, rep
        assert ("not-linked" in _codes(rep)) is (created == 0)
    # ?patient= for a CSV diary
    rep = _ok(_ingest(client, "mapped-csv", CSV, a, profile="accu-chek-csv", patient=FNR_B))
    assert (rep["created"], _codes(rep).count("not-linked")) == (0, 6)
    # a FHIR reference to another vendor's patient
    rep = _ok(_ingest(client, "fhir", orjson.dumps(_obs({"reference": f"Patient/{w['b']}"})), a))
    assert (rep["created"], _codes(rep)) == (0, ["not-linked"])
    # another vendor's user id, linked or not: neither stored nor held
    for user in ("bjorn", "somebody"):
        subject = {"identifier": {"system": vendor_user_system(VENDOR_B), "value": user}}
        rep = _ok(_ingest(client, "fhir", orjson.dumps(_obs(subject)), a))
        assert (rep["created"], rep["quarantined"], _codes(rep)) == (0, 0, ["not-linked"])
    # a CDA recordTarget with another vendor's patient's fødselsnummer
    cda = CDA.replace(
        b'extension="245296" root="1.3.6.1.4.1.21367.2010.1.2.300"',
        f'extension="{FNR_B}" root="2.16.578.1.12.4.1.4.1"'.encode(),
    )
    rep = _ok(_ingest(client, "cda-phmr", cda, a))
    assert rep["created"] == 0 and set(_codes(rep)) >= {"not-linked"}
    # an OpenTele questionnaire upload for another vendor's patient
    upload = {
        "name": "KOL",
        "version": "1",
        "QuestionnaireId": 27,
        "date": "2026-03-01T07:45:00Z",
        "output": [
            {"name": "45.BP#SYSTOLIC", "type": "Integer", "value": 131},
            {"name": "45.BP#DIASTOLIC", "type": "Integer", "value": 82},
            {"name": "49.FIELD", "type": "Boolean", "value": False},
        ],
    }
    rep = _ok(_ingest(client, "opentele", orjson.dumps(upload), a, patient=FNR_B))
    assert rep["created"] == 0 and rep["updated"] == 0 and "not-linked" in _codes(rep), rep
    assert _count(client, w["b"]) == 0
    qr = _ok(client.get("/fhir/QuestionnaireResponse", params={"patient": w["b"]}))
    assert not qr.get("entry")
    assert _quarantined(services) == 0


def test_the_vendors_own_user_ids_wait_for_a_link_in_its_own_name(client, services) -> None:  # type: ignore[no-untyped-def]
    w = _world(client)
    upload = {
        "name": "KOL",
        "QuestionnaireId": 27,
        "date": "2026-03-01T07:45:00Z",
        "PatientId": "carl",
        "output": [{"name": "46.TEMPERATURE", "type": "Float", "value": 37.2}],
    }
    rep = _ok(_ingest(client, "opentele", orjson.dumps(upload), w["vendor_a"]))
    assert rep["quarantined"] >= 1 and "not-linked" not in _codes(rep), rep
    # a link of vendor B's user "carl" releases nothing of vendor A's
    _link(client, VENDOR_B, "carl", FNR_B)
    assert _ok(client.post("/api/v1/quarantine/release"))["released"] == 0
    # the link in vendor A's own namespace does
    _link(client, VENDOR_A, "carl", FNR_A)
    assert _count(client, w["a"]) == 1
    assert _count(client, w["b"]) == 0


def test_a_vendor_changes_only_what_it_created(client, services) -> None:  # type: ignore[no-untyped-def]
    w = _world(client)
    _link(client, VENDOR_B, "anna-b", FNR_A)  # the patient uses both vendors
    a, b = w["vendor_a"], w["vendor_b"]
    first = _ok(_ingest(client, "fhir", orjson.dumps(_obs(_fnr(FNR_A), 70, "m-1")), a))
    assert first["created"] == 1
    [ref] = first["resources"]
    # the other vendor sends the same identifier with another value: refused, nothing changes
    rep = _ok(_ingest(client, "fhir", orjson.dumps(_obs(_fnr(FNR_A), 190, "m-1")), b))
    assert (rep["updated"], rep["rejected"], _codes(rep)) == (0, 1, ["created-by-other-source"])
    assert (
        "m-1" in rep["diagnostics"][0]["message"]
        and ref.split("/")[1] not in rep["diagnostics"][0]["message"]
    )
    stored = _ok(client.get(f"/fhir/{ref}"))
    assert stored["valueQuantity"]["value"] == 70 and stored["meta"]["versionId"] == "1"
    # the same content from the other vendor changes nothing either
    assert (
        _ok(_ingest(client, "fhir", orjson.dumps(_obs(_fnr(FNR_A), 70, "m-1")), b))["duplicate"]
        == 1
    )
    # the vendor that created it may correct it
    rep = _ok(_ingest(client, "fhir", orjson.dumps(_obs(_fnr(FNR_A), 75, "m-1")), a))
    assert rep["updated"] == 1, rep
    assert _ok(client.get(f"/fhir/{ref}"))["valueQuantity"]["value"] == 75
    # something the follow-up centre (here: an admin) stored is not a vendor's to change
    mine = _ok(_ingest(client, "fhir", orjson.dumps(_obs(_fnr(FNR_A), 60, "m-2")), {}))
    assert mine["created"] == 1
    rep = _ok(_ingest(client, "fhir", orjson.dumps(_obs(_fnr(FNR_A), 61, "m-2")), a))
    assert _codes(rep) == ["created-by-other-source"]


def test_the_followup_centre_ingests_for_its_own_patients(client, services) -> None:  # type: ignore[no-untyped-def]
    """The follow-up centre writes for the patients its organisation manages; another
    municipality's patient is refused like a vendor's unlinked one; a person not yet known
    waits in the quarantine for a person to make the patient, as before."""
    w = _world(client)
    centre = _ok(
        client.post(
            "/fhir/Organization",
            json={
                "resourceType": "Organization",
                "identifier": [{"system": "urn:oid:2.16.578.1.12.4.1.4.101", "value": "938587418"}],
            },
        )
    )["id"]
    patient = client.get(f"/fhir/Patient/{w['a']}").json()
    patient["managingOrganization"] = {"reference": f"Organization/{centre}"}
    assert client.put(f"/fhir/Patient/{w['a']}", json=patient).status_code == 200
    followup = {
        "Authorization": "Bearer "
        + _ok(
            client.post(
                "/api/v1/actors", json={"role": "followup", "organization": {"orgnr": "938587418"}}
            )
        )["key"]
    }
    rep = _ok(
        _ingest(
            client,
            "fhir",
            _bundle(_obs(_fnr(FNR_A)), _obs(_fnr(FNR_B)), _obs(_fnr(FNR_UNKNOWN))),
            followup,
        )
    )
    assert (rep["created"], rep["quarantined"], rep["rejected"]) == (1, 1, 1)
    assert "not-linked" in _codes(rep)
    assert _count(client, w["a"]) == 1 and _count(client, w["b"]) == 0
    # a vendor cannot name another source to get around its limits
    r = _ingest(client, "fhir", orjson.dumps(_obs(_fnr(FNR_B))), w["vendor_a"], source=VENDOR_B)
    assert r.status_code == 403


def test_refusals_name_no_stored_ids() -> None:
    """The refusal text is built from what the vendor sent only."""
    from adapters.base import PatientRef
    from interop.access.vendor_writes import VendorWriter

    d = VendorWriter(VENDOR_A).not_linked(PatientRef(FNR_OID, FNR_B), "entry[0]")
    assert d.code == "not-linked" and not re.search(r"Patient/", d.message)


# ---- HL7 v2 over MLLP ----------------------------------------------------------------------
# The conformance message's sender: MSH-3 "AcmeInc^…", MSH-4 empty; PID-3 789567 under the
# assigning authority "Imaginary Hospital".


def _senders(services: Any, tmp_path: Any, entry: str) -> None:
    path = tmp_path / "mllp-senders.yaml"
    path.write_text(f"senders:\n  - {entry}\n")
    services.settings.mllp_senders = path


ACME_AS_A = (
    "{application: AcmeInc, facility: '', peers: [127.0.0.1], role: vendor, orgnr: '"
    + VENDOR_A
    + "'}"
)


def _hl7(n: int, pid3: bytes | None = None) -> bytes:
    msg = HL7_BP.replace(b"MSGID1234", f"MLLP-{n}".encode())
    if pid3 is not None:
        msg = msg.replace(b"789567^^^Imaginary Hospital^PI ", pid3)
    return msg


def _inbox(services: Any) -> dict[str, Any]:
    from interop.store.schema import inbound_message_table as t

    with services.engine.connect() as conn:
        return {r.message_id: r for r in conn.execute(select(t)).all()}


def _msa(ack: bytes) -> str:
    from adapters.hl7v2_segments import parse

    return parse(ack)[1].text(1)


def test_an_mllp_vendor_writes_only_for_its_linked_patients(client, services, tmp_path) -> None:  # type: ignore[no-untyped-def]
    from interop.ingest.inbox import InboxProcessor
    from tests.test_mllp_listener import _listener, _send

    w = _world(client)
    _senders(services, tmp_path, ACME_AS_A)
    with _listener(services) as port:
        acks = [
            _send(port, _hl7(1, f"{FNR_B}^^^^FNR".encode())),
            _send(port, _hl7(2, f"{FNR_UNKNOWN}^^^^FNR".encode())),
            _send(port, _hl7(3, f"{FNR_A}^^^^FNR".encode())),
            _send(port, _hl7(4)),  # a PID-3 authority that is not the vendor's
        ]
    assert [_msa(a) for a in acks] == ["AA"] * 4  # stored; judged item by item later
    assert InboxProcessor(services, batch=False).process_pending() == 4
    rows = _inbox(services)
    reports = {k: orjson.loads(r.report) for k, r in rows.items()}
    assert [reports[f"MLLP-{n}"]["created"] for n in (1, 2, 3, 4)] == [0, 0, 1, 0]
    assert all(reports[f"MLLP-{n}"]["source"] == VENDOR_A for n in (1, 2, 3, 4))
    for n in (1, 2, 4):
        assert _codes(reports[f"MLLP-{n}"]).count("not-linked") == 1
    known = orjson.dumps(reports["MLLP-1"]["diagnostics"]).replace(FNR_B.encode(), b"x")
    unknown = orjson.dumps(reports["MLLP-2"]["diagnostics"]).replace(FNR_UNKNOWN.encode(), b"x")
    assert known == unknown
    assert _count(client, w["a"]) == 1 and _count(client, w["b"]) == 0
    assert _quarantined(services) == 0


def test_an_mllp_vendors_own_patient_id_scope(client, services, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """PID-3 ids under an assigning authority count as the vendor's own user ids only when the
    deployer lists that authority for the sender."""
    from interop.ingest.inbox import InboxProcessor
    from tests.test_mllp_listener import _listener, _send

    w = _world(client)
    # the authority's user 789567 is patient B (not linked to vendor A in A's own namespace)
    _link(client, "Imaginary Hospital", "789567", FNR_B)
    _senders(services, tmp_path, ACME_AS_A)
    with _listener(services) as port:
        assert _msa(_send(port, _hl7(1))) == "AA"
    InboxProcessor(services).process_pending()
    assert _count(client, w["b"]) == 0
    scoped = ACME_AS_A.replace("}", ", patientIdScopes: [Imaginary Hospital]}")
    _senders(services, tmp_path, scoped)
    with _listener(services) as port:
        assert _msa(_send(port, _hl7(2).replace(b"|120|", b"|121|"))) == "AA"
    InboxProcessor(services).process_pending()
    assert _count(client, w["b"]) == 1


def test_mllp_senders_not_listed_or_from_elsewhere_are_refused(client, services, tmp_path) -> None:  # type: ignore[no-untyped-def]
    from interop.ingest.inbox import InboxProcessor
    from tests.test_mllp_listener import _listener, _send

    _world(client)
    _senders(services, tmp_path, ACME_AS_A.replace("AcmeInc", "SomebodyElse"))
    with _listener(services) as port:
        ack = _send(port, _hl7(1, f"{FNR_A}^^^^FNR".encode()))
    assert _msa(ack) == "AR" and b"AcmeInc" in ack
    _senders(services, tmp_path, ACME_AS_A.replace("127.0.0.1", "10.20.30.0/24"))
    with _listener(services) as port:
        ack = _send(port, _hl7(2, f"{FNR_A}^^^^FNR".encode()))
    assert _msa(ack) == "AR" and b"127.0.0.1" in ack
    assert _inbox(services) == {}
    # listed when it was taken, no longer listed when it is processed: not run
    _senders(services, tmp_path, ACME_AS_A)
    with _listener(services) as port:
        assert _msa(_send(port, _hl7(3, f"{FNR_A}^^^^FNR".encode()))) == "AA"
    _senders(services, tmp_path, ACME_AS_A.replace("AcmeInc", "SomebodyElse"))
    InboxProcessor(services).process_pending()
    [row] = _inbox(services).values()
    assert row.status == "failed" and "AcmeInc" in row.error
    assert _count(client, _world_patient(client, FNR_A)) == 0


def test_a_broken_senders_file_takes_nothing(client, services, tmp_path) -> None:  # type: ignore[no-untyped-def]
    from tests.test_mllp_listener import _listener, _send

    _senders(services, tmp_path, "{application: AcmeInc, role: vendor}")  # no peers, no orgnr
    with _listener(services) as port:
        assert _msa(_send(port, _hl7(1))) == "AE"
    assert _inbox(services) == {}


def _world_patient(client: Any, fnr: str) -> str:
    found = _ok(client.get("/fhir/Patient", params={"identifier": f"{FNR_OID}|{fnr}"}))
    return str(found["entry"][0]["resource"]["id"])
