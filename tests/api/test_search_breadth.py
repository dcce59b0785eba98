"""Search breadth: chains, _has, _revinclude, _include:iterate, :missing, _sort on any
parameter, quantity search with UCUM conversion and composites on the Observation index."""

from __future__ import annotations

from typing import Any

from tests.api.test_fhir_crud import observation, patient
from tests.api.test_r4_types import condition

LOINC = "http://loinc.org"


def _create(client, resource: dict[str, Any]) -> str:  # type: ignore[no-untyped-def]
    r = client.post(f"/fhir/{resource['resourceType']}", json=resource)
    assert r.status_code == 201, r.text
    return str(r.json()["id"])


def _ids(client, query: str, mode: str = "match") -> set[str]:  # type: ignore[no-untyped-def]
    r = client.get(f"/fhir/{query}")
    assert r.status_code == 200, r.text
    return {e["resource"]["id"] for e in r.json().get("entry", []) if e["search"]["mode"] == mode}


def _bp(pid: str, sys: float, dia: float) -> dict[str, Any]:
    return {
        "resourceType": "Observation",
        "status": "final",
        "code": {"coding": [{"system": LOINC, "code": "85354-9"}]},
        "subject": {"reference": f"Patient/{pid}"},
        "effectiveDateTime": "2026-01-05T08:30:00+01:00",
        "component": [
            {
                "code": {"coding": [{"system": LOINC, "code": "8480-6"}]},
                "valueQuantity": {
                    "value": sys,
                    "unit": "mmHg",
                    "system": "http://unitsofmeasure.org",
                    "code": "mm[Hg]",
                },
            },
            {
                "code": {"coding": [{"system": LOINC, "code": "8462-4"}]},
                "valueQuantity": {
                    "value": dia,
                    "unit": "mmHg",
                    "system": "http://unitsofmeasure.org",
                    "code": "mm[Hg]",
                },
            },
        ],
    }


def _world(client):  # type: ignore[no-untyped-def]
    kari = _create(client, patient())
    ola = _create(client, {**patient("02028099471", family="Hansen"), "gender": "male"})
    c1 = _create(client, condition(kari))
    c2 = _create(client, condition(ola, code="44054006"))
    o1 = _create(client, observation(kari, value=72))
    o2 = _create(client, observation(ola, value=110))
    bp = _create(client, _bp(kari, 150, 95))
    return kari, ola, c1, c2, o1, o2, bp


def test_chains_with_and_without_type(client) -> None:  # type: ignore[no-untyped-def]
    kari, ola, c1, c2, o1, o2, bp = _world(client)
    assert _ids(client, "Condition?subject:Patient.family=Nordmann") == {c1}
    assert _ids(client, "Condition?patient.family=Hansen") == {c2}
    assert _ids(client, "Condition?patient.gender=male") == {c2}
    assert _ids(client, "Observation?subject:Patient.family=Hansen") == {o2}
    # both were born 2013-03-13
    assert _ids(client, "Observation?patient.birthdate=2013-03-13") == {o1, o2, bp}
    r = client.get("/fhir/Condition?subject:Patient.shoe=1")
    assert r.status_code == 400 and "shoe" in r.text
    assert client.get("/fhir/Condition?subject:Nonsense.name=x").status_code == 400


def test_reverse_chain_and_revinclude(client) -> None:  # type: ignore[no-untyped-def]
    kari, ola, c1, c2, o1, o2, bp = _world(client)
    assert _ids(client, "Patient?_has:Condition:patient:code=44054006") == {ola}
    assert _ids(client, "Patient?_has:Observation:patient:code=85354-9") == {kari}
    assert _ids(client, f"Patient?_id={kari}&_revinclude=Condition:patient", "include") == {c1}
    inc = _ids(client, f"Patient?_id={kari}&_revinclude=Observation:patient", "include")
    assert inc == {o1, bp}
    assert client.get("/fhir/Patient?_has:Condition:nope:code=1").status_code == 400


def test_include_iterate(client) -> None:  # type: ignore[no-untyped-def]
    org = _create(client, {"resourceType": "Organization", "name": "Legekontoret"})
    gp = _create(
        client,
        {"resourceType": "PractitionerRole", "organization": {"reference": f"Organization/{org}"}},
    )
    pid = _create(
        client, {**patient(), "generalPractitioner": [{"reference": f"PractitionerRole/{gp}"}]}
    )
    c = _create(client, condition(pid))
    got = _ids(
        client,
        f"Condition?_id={c}&_include=Condition:patient"
        "&_include:iterate=Patient:general-practitioner&_include:iterate=PractitionerRole:organization",
        "include",
    )
    assert got == {pid, gp, org}


def test_missing_and_sort(client) -> None:  # type: ignore[no-untyped-def]
    kari, ola, c1, c2, o1, o2, bp = _world(client)
    nobody = _create(client, {"resourceType": "Patient", "name": [{"family": "Aas"}]})
    assert _ids(client, "Patient?birthdate:missing=true") == {nobody}
    assert _ids(client, "Patient?birthdate:missing=false") == {kari, ola}
    r = client.get("/fhir/Patient?_sort=family")
    assert [e["resource"]["id"] for e in r.json()["entry"]] == [nobody, ola, kari]
    r = client.get("/fhir/Patient?_sort=-family&_count=1")
    assert r.json()["entry"][0]["resource"]["id"] == kari
    nxt = next(link["url"] for link in r.json()["link"] if link["relation"] == "next")
    assert client.get(nxt).json()["entry"][0]["resource"]["id"] == ola
    assert client.get("/fhir/Patient?_sort=nonsense").status_code == 400


def test_quantity_and_composites(client) -> None:  # type: ignore[no-untyped-def]
    kari, ola, c1, c2, o1, o2, bp = _world(client)
    assert _ids(client, "Observation?value-quantity=gt100") == {o2}
    assert _ids(client, "Observation?value-quantity=72") == {o1}
    assert _ids(client, "Observation?value-quantity=le72|http://unitsofmeasure.org|/min") == {o1}
    # 20 kPa is 150 mm[Hg] (mappings/units.yaml): found in the unit stored
    assert _ids(
        client, "Observation?component-value-quantity=ge19.9|http://unitsofmeasure.org|kPa"
    ) == {bp}
    assert _ids(client, "Observation?component-code-value-quantity=8480-6$gt140") == {bp}
    assert _ids(client, "Observation?component-code-value-quantity=8462-4$gt140") == set()
    assert _ids(client, "Observation?code-value-quantity=8867-4$lt80") == {o1}
    assert client.get("/fhir/Observation?value-quantity=abc").status_code == 400
    assert client.get("/fhir/Observation?code-value-quantity=8867-4").status_code == 400


def test_compartment_and_system_search(client) -> None:  # type: ignore[no-untyped-def]
    kari, ola, c1, c2, o1, o2, bp = _world(client)
    assert _ids(client, f"Patient/{kari}/Observation") == {o1, bp}
    assert _ids(client, f"Patient/{kari}/Observation?code=85354-9") == {bp}
    assert _ids(client, f"Patient/{ola}/Condition") == {c2}
    assert client.get(f"/fhir/Patient/{kari}/Questionnaire").status_code == 404
    r = client.get("/fhir?_type=Condition,Observation&_lastUpdated=gt2000-01-01&_count=3")
    assert r.status_code == 200, r.text
    seen = [e["resource"]["id"] for e in r.json()["entry"]]
    url = next((link["url"] for link in r.json()["link"] if link["relation"] == "next"), None)
    while url:
        page = client.get(url).json()
        seen += [e["resource"]["id"] for e in page.get("entry", [])]
        url = next((link["url"] for link in page["link"] if link["relation"] == "next"), None)
    assert sorted(seen) == sorted([c1, c2, o1, o2, bp])
    assert client.get("/fhir?_type=Nonsense").status_code == 400
    assert client.get("/fhir").status_code == 400
