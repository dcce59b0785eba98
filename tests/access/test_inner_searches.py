"""What a search asks about resources it does not return is asked only of what the actor may
read: the resources behind ``_has`` and behind a chain are the actor's like those it returns.

Otherwise a search answers questions about another patient through a resource the actor may
see: whether a fødselsnummer is a patient of the service and who their GP is (a Practitioner
found by ``_has:Patient``), which diagnosis a Condition about another patient carries (a Patient
found by ``_has:Condition``), or another patient's birth date (an Observation found by a chain
through ``focus``). Each check is made from outside with a GP's key, and with the admin key to
show that the question has an answer to hide.
"""

from __future__ import annotations

from typing import Any

from tests.access.test_audit_accesses import _obs

FNR = "urn:oid:2.16.578.1.12.4.1.4.1"
HPR = "urn:oid:2.16.578.1.12.4.1.4.4"
FNR_A, FNR_B, FNR_NOBODY = "13031353453", "02028099471", "15076500565"
GP_A, GP_B = "9144889", "1234567"
DIAGNOSIS = "victim-diagnosis-417"


def _post(client: Any, path: str, body: dict[str, Any]) -> str:
    r = client.post(path, json=body)
    assert r.status_code == 201, r.text
    return str(r.json()["id"])


def _world(client: Any) -> dict[str, Any]:
    gp = {
        hpr: _post(
            client,
            "/fhir/Practitioner",
            {"resourceType": "Practitioner", "identifier": [{"system": HPR, "value": hpr}]},
        )
        for hpr in (GP_A, GP_B)
    }

    def patient(fnr: str, hpr: str, born: str) -> str:
        return _post(
            client,
            "/fhir/Patient",
            {
                "resourceType": "Patient",
                "identifier": [{"system": FNR, "value": fnr}],
                "birthDate": born,
                "generalPractitioner": [{"reference": f"Practitioner/{gp[hpr]}"}],
            },
        )

    a = patient(FNR_A, GP_A, "1950-01-01")
    b = patient(FNR_B, GP_B, "1980-02-02")
    # B's Condition, asserted by A: in A's compartment, B's own data
    _post(
        client,
        "/fhir/Condition",
        {
            "resourceType": "Condition",
            "code": {"coding": [{"system": "urn:x", "code": DIAGNOSIS}]},
            "subject": {"reference": f"Patient/{b}"},
            "asserter": {"reference": f"Patient/{a}"},
        },
    )
    # A's Observation about B (focus): A's own, naming B
    _post(client, "/fhir/Observation", {**_obs(a), "focus": [{"reference": f"Patient/{b}"}]})
    r = client.post("/api/v1/actors", json={"role": "gp", "hpr": GP_A})
    assert r.status_code == 201, r.text
    return {"a": a, "b": b, "gp": {"Authorization": f"Bearer {r.json()['key']}"}}


def _total(client: Any, url: str, headers: dict[str, str] | None = None) -> int:
    r = client.get(url + "&_summary=count", headers=headers or {})
    assert r.status_code == 200, r.text
    return int(r.json()["total"])


QUESTIONS = [
    # is FNR_B a patient of the service, and is GP_B their GP?
    f"/fhir/Practitioner?_has:Patient:general-practitioner:identifier={FNR}|{FNR_B}",
    # which diagnosis does the Condition about B carry?
    f"/fhir/Patient?_has:Condition:asserter:code=urn:x|{DIAGNOSIS}",
    # when was B born?
    "/fhir/Observation?focus:Patient.birthdate=1980-02-02",
]


def test_has_and_chains_ask_only_what_the_actor_may_read(client) -> None:  # type: ignore[no-untyped-def]
    w = _world(client)
    for url in QUESTIONS:
        assert _total(client, url) == 1, f"the admin finds it: {url}"
        assert _total(client, url, w["gp"]) == 0, f"the GP learns about B through {url}"
        r = client.get(url, headers=w["gp"])
        assert r.status_code == 200 and not r.json().get("entry"), r.text
    # the same questions about an unknown person answer the same
    unknown = f"/fhir/Practitioner?_has:Patient:general-practitioner:identifier={FNR}|{FNR_NOBODY}"
    assert _total(client, unknown, w["gp"]) == 0


def test_has_and_chains_still_find_the_actors_own(client) -> None:  # type: ignore[no-untyped-def]
    w = _world(client)
    own = [
        f"/fhir/Practitioner?_has:Patient:general-practitioner:identifier={FNR}|{FNR_A}",
        "/fhir/Observation?subject:Patient.birthdate=1950-01-01",
        "/fhir/Patient?_has:Observation:subject:focus=Patient/" + w["b"],
    ]
    for url in own:
        assert _total(client, url, w["gp"]) == 1, url
