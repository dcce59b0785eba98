"""References are resolved or refused (issue 14 item 17).

A ``urn:uuid`` reference in a batch (per entry) or to no entry of a transaction is refused, so
is a reference to a Patient that is not there or to a resource of the wrong type for the
element; a Patient that others refer to is not deleted (409).
"""

from __future__ import annotations

import json
from typing import Any

from tests.api.test_fhir_crud import observation, patient

URN_PATIENT = "urn:uuid:6f1c1c6e-3b7a-4f43-9a5e-0d7c1d0a1b2c"


def _outcome_names(body: Any, element: str) -> None:
    assert body["resourceType"] == "OperationOutcome", body
    assert element in json.dumps(body), (element, body)


def _count(client, rtype: str) -> int:  # type: ignore[no-untyped-def]
    return int(client.get(f"/fhir/{rtype}", params={"_summary": "count"}).json()["total"])


def _patient_id(client, fnr: str = "13031353453") -> str:  # type: ignore[no-untyped-def]
    r = client.post("/fhir/Patient", json=patient(fnr))
    assert r.status_code == 201, r.text
    return str(r.json()["id"])


def test_urn_uuid_in_a_batch_is_refused_per_entry(client) -> None:  # type: ignore[no-untyped-def]
    pid = _patient_id(client)
    unresolved = observation("x")
    unresolved["subject"] = {"reference": URN_PATIENT}
    bundle = {
        "resourceType": "Bundle",
        "type": "batch",
        "entry": [
            {
                "fullUrl": URN_PATIENT,
                "resource": patient("02028099471"),
                "request": {"method": "POST", "url": "Patient"},
            },
            {"resource": unresolved, "request": {"method": "POST", "url": "Observation"}},
            {"resource": observation(pid), "request": {"method": "POST", "url": "Observation"}},
        ],
    }
    r = client.post("/fhir", json=bundle)
    assert r.status_code == 200, r.text
    first, second, third = r.json()["entry"]
    assert first["response"]["status"].startswith("201")
    assert second["response"]["status"].startswith("422"), second
    _outcome_names(second["response"]["outcome"], "Observation.subject")
    assert URN_PATIENT in json.dumps(second["response"]["outcome"])
    assert third["response"]["status"].startswith("201")
    assert _count(client, "Observation") == 1


def test_urn_uuid_to_no_entry_of_a_transaction_refuses_it(client) -> None:  # type: ignore[no-untyped-def]
    obs = observation("x")
    obs["subject"] = {"reference": URN_PATIENT}
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {
                "fullUrl": "urn:uuid:00000000-0000-4000-8000-000000000001",
                "resource": patient(),
                "request": {"method": "POST", "url": "Patient"},
            },
            {"resource": obs, "request": {"method": "POST", "url": "Observation"}},
        ],
    }
    r = client.post("/fhir", json=bundle)
    assert r.status_code == 422, r.text
    _outcome_names(r.json(), "Bundle.entry[1]")
    _outcome_names(r.json(), "Observation.subject")
    assert _count(client, "Patient") == 0 and _count(client, "Observation") == 0


def test_a_transaction_resolves_its_own_entries_in_any_order(client) -> None:  # type: ignore[no-untyped-def]
    obs = observation("x")
    obs["subject"] = {"reference": URN_PATIENT}
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {"resource": obs, "request": {"method": "POST", "url": "Observation"}},
            {
                "fullUrl": URN_PATIENT,
                "resource": patient(),
                "request": {"method": "POST", "url": "Patient"},
            },
            # a PUT-created Patient is there for the references in the same transaction too
            {
                "resource": {
                    **observation("put-1"),
                    "identifier": [{"system": "urn:t", "value": "2"}],
                },
                "request": {"method": "POST", "url": "Observation"},
            },
            {
                "resource": {**patient("02028099471"), "id": "put-1"},
                "request": {"method": "PUT", "url": "Patient/put-1"},
            },
        ],
    }
    r = client.post("/fhir", json=bundle)
    assert r.status_code == 200, r.text
    pid = r.json()["entry"][1]["response"]["location"].split("/")[1]
    oid = r.json()["entry"][0]["response"]["location"].split("/")[1]
    assert client.get(f"/fhir/Observation/{oid}").json()["subject"]["reference"] == f"Patient/{pid}"


def test_a_reference_to_a_patient_that_is_not_there_is_refused(client) -> None:  # type: ignore[no-untyped-def]
    r = client.post("/fhir/Observation", json=observation("no-such-patient"))
    assert r.status_code == 422, r.text
    _outcome_names(r.json(), "Observation.subject")
    r = client.put("/fhir/Observation/o1", json={**observation("no-such-patient"), "id": "o1"})
    assert r.status_code == 422, r.text
    careplan = {
        "resourceType": "CarePlan",
        "status": "active",
        "intent": "plan",
        "subject": {"reference": "Patient/no-such-patient"},
    }
    r = client.post("/fhir/CarePlan", json=careplan)
    assert r.status_code == 422, r.text
    _outcome_names(r.json(), "CarePlan.subject")
    # a deleted Patient is not there either
    gone = _patient_id(client)
    assert client.delete(f"/fhir/Patient/{gone}").status_code == 200
    r = client.post("/fhir/Observation", json=observation(gone))
    assert r.status_code == 422, r.text
    assert _count(client, "Observation") == 0 and _count(client, "CarePlan") == 0


def test_a_reference_of_the_wrong_type_for_the_element_is_refused(client) -> None:  # type: ignore[no-untyped-def]
    pid = _patient_id(client)
    practitioner = client.post("/fhir/Practitioner", json={"resourceType": "Practitioner"}).json()[
        "id"
    ]
    wrong = [
        (
            "CarePlan",
            {
                "resourceType": "CarePlan",
                "status": "active",
                "intent": "plan",
                "subject": {"reference": f"Practitioner/{practitioner}"},
            },
            "CarePlan.subject",
        ),
        (
            "Observation",
            {**observation(pid), "performer": [{"reference": f"Observation/{pid}"}]},
            "Observation.performer[0]",
        ),
        (
            "Observation",
            {**observation(pid), "hasMember": [{"reference": f"Patient/{pid}"}]},
            "Observation.hasMember[0]",
        ),
    ]
    for rtype, resource, element in wrong:
        r = client.post(f"/fhir/{rtype}", json=resource)
        assert r.status_code == 422, r.text
        _outcome_names(r.json(), element)
    right = {**observation(pid), "performer": [{"reference": f"Practitioner/{practitioner}"}]}
    assert client.post("/fhir/Observation", json=right).status_code == 201


def test_deleting_a_referenced_patient_is_409(client) -> None:  # type: ignore[no-untyped-def]
    pid = _patient_id(client)
    lonely = _patient_id(client, "02028099471")
    assert client.post("/fhir/Observation", json=observation(pid)).status_code == 201
    r = client.delete(f"/fhir/Patient/{pid}")
    assert r.status_code == 409, r.text
    _outcome_names(r.json(), f"Patient/{pid}")
    assert client.get(f"/fhir/Patient/{pid}").status_code == 200
    # a Patient nothing refers to (its audit trail aside) can be deleted
    assert client.get(f"/fhir/Patient/{lonely}").status_code == 200
    assert client.delete(f"/fhir/Patient/{lonely}").status_code == 200
