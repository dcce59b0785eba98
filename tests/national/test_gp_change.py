"""Patient safety: a GP changed by hand (``/fhir`` PUT, PATCH, a transaction) holds the patient's
messages still queued for the former GP, exactly as a change from Fastlegeregisteret does; a
held message is not sent again by ``outbox reprocess``, and a KITH message is never readdressed
to an Endpoint that is not its named receiver's."""

from __future__ import annotations

from typing import Any

from typer.testing import CliRunner

from interop.identifiers import HERID_OID
from interop.messaging.status import send_periodic_status
from interop.national.cli import run_sync
from tests.messaging.test_gp_flow import FNR, _heart_rate, _ingest, _outbox
from tests.national.conftest import National, Registers
from tests.national.test_end_to_end import (
    _gp_role,
    _worker,
    only_b_s_message_went_to_the_first_gp,
    our_organisations,
    two_patients_with_queued_messages,
)
from tests.national.test_plans import FNR_B


def _role(client, her: str) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    found = client.get("/fhir/PractitionerRole", params={"identifier": f"{HERID_OID}|{her}"})
    [entry] = found.json()["entry"]
    return dict(entry["resource"])


def _set_gp(client, patient_id: str, role: dict[str, Any]) -> None:  # type: ignore[no-untyped-def]
    patient = client.get(f"/fhir/Patient/{patient_id}").json()
    patient["generalPractitioner"] = [{"reference": f"PractitionerRole/{role['id']}"}]
    r = client.put(f"/fhir/Patient/{patient_id}", json=patient)
    assert r.status_code == 200, r.text


def _reprocess_cli(services, monkeypatch, *args: str) -> Any:  # type: ignore[no-untyped-def]
    from interop.cli import app
    from interop.config import reset_settings_cache

    monkeypatch.setenv("INTEROP_DATABASE_URL", services.settings.database_url)
    reset_settings_cache()
    try:
        return CliRunner().invoke(app, ["outbox", "reprocess", *args])
    finally:
        reset_settings_cache()


def test_a_gp_changed_by_hand_holds_what_is_queued_for_the_former_gp(  # type: ignore[no-untyped-def]
    client, services, national: National, registers: Registers, monkeypatch
) -> None:
    # both patients' GP 80011 from FLR, each with a message to them queued; GP 80021 in the book
    ids, b = two_patients_with_queued_messages(client, services, registers, ["80021"])
    gp1, gp2 = _role(client, "80011"), _role(client, "80021")
    assert _gp_role(client, ids["patient"])["id"] == gp1["id"]

    _set_gp(client, ids["patient"], gp2)  # by hand: A's GP is now 80021; B's is still 80011
    rows = {r.patient_id: r for r in _outbox(services)}
    held = rows[ids["patient"]]
    assert held.status == "dead"
    assert held.last_error.startswith("the patient's GP changed by hand (admin, fhir)")
    assert "(HER-id 80011 → 80021)" in held.last_error
    assert rows[b].status == "queued"
    only_b_s_message_went_to_the_first_gp(services, national)

    # the held message is sent again neither to the former GP nor to the new one
    gp2_endpoint = gp2["endpoint"][0]["reference"]
    before = len(_outbox(services))
    again = client.post(f"/api/v1/messages/{held.id}/reprocess")
    assert again.status_code == 409 and "was held" in again.text
    moved = _reprocess_cli(services, monkeypatch, held.id, "--destination", gp2_endpoint)
    assert moved.exit_code == 1 and "was held" in " ".join(moved.output.split())
    # B's message names GP 80011 as receiver: not readdressed to GP 80021's Endpoint …
    sent_b = {r.patient_id: r for r in _outbox(services)}[b]
    readdressed = _reprocess_cli(
        services, monkeypatch, sent_b.id, "--destination", gp2_endpoint, "--transport", "edi2"
    )
    assert readdressed.exit_code == 1
    assert "names HER-id 80011 as its receiver" in " ".join(readdressed.output.split())
    r = client.post(f"/api/v1/messages/{sent_b.id}/reprocess", json={"destination": gp2_endpoint})
    assert r.status_code == 409 and "not readdressed" in r.text
    assert len(_outbox(services)) == before
    # … but may go again to its own receiver's Endpoint
    gp1_endpoint = gp1["endpoint"][0]["reference"]
    ok = client.post(f"/api/v1/messages/{sent_b.id}/reprocess", json={"destination": gp1_endpoint})
    assert ok.status_code == 201, ok.text

    # A's next message goes to the new GP, with A's data only
    assert (
        send_periodic_status(services, days=7, patients=[ids["patient"]], force=True)["sent"] == 1
    )
    _worker(services).run_once()
    to_new_gp = [m for m in national.mt.messages.values() if 80021 in m.receiver_her_ids]
    assert [m.receiver_her_ids[-2:] for m in to_new_gp] == [[80020, 80021]]
    assert FNR.encode() in to_new_gp[0].document and FNR_B.encode() not in to_new_gp[0].document


def test_patch_and_transaction_hold_too(  # type: ignore[no-untyped-def]
    client, services, national: National, registers: Registers
) -> None:
    ids = our_organisations(client)
    run_sync(services, ["80021"])
    gp1, gp2 = _role(client, "80011"), _role(client, "80021")
    _ingest(services, _heart_rate("70", 60), _heart_rate("72", 30))

    def queued_one() -> Any:
        assert (
            send_periodic_status(services, days=7, patients=[ids["patient"]], force=True)["sent"]
            == 1
        )
        return _outbox(services)[-1]

    # JSON Patch: GP 80011 → 80021
    row = queued_one()
    assert row.destination == gp1["endpoint"][0]["reference"]
    r = client.patch(
        f"/fhir/Patient/{ids['patient']}",
        content=(
            '[{"op": "replace", "path": "/generalPractitioner/0/reference", '
            f'"value": "PractitionerRole/{gp2["id"]}"}}]'
        ),
        headers={"Content-Type": "application/json-patch+json"},
    )
    assert r.status_code == 200, r.text
    held = {x.id: x for x in _outbox(services)}[row.id]
    assert held.status == "dead" and "(HER-id 80011 → 80021)" in held.last_error

    # a transaction Bundle: back to 80021 → 80011
    row = queued_one()
    assert row.destination == gp2["endpoint"][0]["reference"]
    patient = client.get(f"/fhir/Patient/{ids['patient']}").json()
    patient["generalPractitioner"] = [{"reference": f"PractitionerRole/{gp1['id']}"}]
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {
                "resource": patient,
                "request": {"method": "PUT", "url": f"Patient/{ids['patient']}"},
            }
        ],
    }
    r = client.post("/fhir", json=bundle)
    assert r.status_code == 200, r.text
    held = {x.id: x for x in _outbox(services)}[row.id]
    assert held.status == "dead" and "(HER-id 80021 → 80011)" in held.last_error
    assert "by hand" in held.last_error

    # the GP taken away altogether: held too
    row = queued_one()
    patient = client.get(f"/fhir/Patient/{ids['patient']}").json()
    del patient["generalPractitioner"]
    assert client.put(f"/fhir/Patient/{ids['patient']}", json=patient).status_code == 200
    held = {x.id: x for x in _outbox(services)}[row.id]
    assert held.status == "dead" and "(HER-id 80011 → none)" in held.last_error
    _worker(services).run_once()
    assert national.mt.messages == {}
