"""Test set-up shared by the plan, triage and safety tests: a patient whose fastlege (GP) is in
the address book, so that the GP can approve the patient's self-management plans."""

from __future__ import annotations

from typing import Any

FNR_OID = "urn:oid:2.16.578.1.12.4.1.4.1"
HPR_OID = "urn:oid:2.16.578.1.12.4.1.4.4"
PLAN_GP_HPR = "9144889"
"""The HPR number the tests' plans are approved with (``approvedBy.hpr``)."""


def patient_with_gp(http: Any, fnr: str, hpr: str = PLAN_GP_HPR) -> str:
    """Create the GP (Practitioner with ``hpr``) and the patient with that GP as fastlege;
    the patient's id. ``http``: a TestClient or httpx client with the admin key."""
    gp = http.post(
        "/fhir/Practitioner",
        json={"resourceType": "Practitioner", "identifier": [{"system": HPR_OID, "value": hpr}]},
    )
    assert gp.status_code == 201, gp.text
    patient = http.post(
        "/fhir/Patient",
        json={
            "resourceType": "Patient",
            "identifier": [{"system": FNR_OID, "value": fnr}],
            "generalPractitioner": [{"reference": f"Practitioner/{gp.json()['id']}"}],
        },
    )
    assert patient.status_code == 201, patient.text
    return str(patient.json()["id"])
