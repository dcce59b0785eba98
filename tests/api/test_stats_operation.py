"""Observation/$stats per its OperationDefinition (issue 14 item 19): POST with a Parameters
body (``period`` as ``valuePeriod``) is answered with a Parameters resource holding
``statistics`` and, with ``include``, ``source``; a statistic carries its sources' category."""

from __future__ import annotations

from typing import Any

from tests.api.test_fhir_crud import patient

LOINC = "http://loinc.org"
CATEGORY = "http://terminology.hl7.org/CodeSystem/observation-category"


def _obs(client, pid: str, code: str, value: float, day: int, category: str) -> str:  # type: ignore[no-untyped-def]
    r = client.post(
        "/fhir/Observation",
        json={
            "resourceType": "Observation",
            "status": "final",
            "category": [{"coding": [{"system": CATEGORY, "code": category}]}],
            "code": {"coding": [{"system": LOINC, "code": code}]},
            "subject": {"reference": f"Patient/{pid}"},
            "effectiveDateTime": f"2026-04-{day:02d}T08:00:00+02:00",
            "valueQuantity": {
                "value": value,
                "unit": "mmol/L",
                "system": "http://unitsofmeasure.org",
                "code": "mmol/L",
            },
        },
    )
    assert r.status_code == 201, r.text
    return str(r.json()["id"])


def _parameters(pid: str, **extra: Any) -> dict[str, Any]:
    parameter: list[dict[str, Any]] = [
        {"name": "subject", "valueUri": f"Patient/{pid}"},
        {"name": "code", "valueString": "15074-8"},
        {"name": "system", "valueUri": LOINC},
        {"name": "statistic", "valueCode": "average"},
        {"name": "statistic", "valueCode": "count"},
        {"name": "period", "valuePeriod": {"start": "2026-04-02", "end": "2026-04-04"}},
    ]
    parameter += [{"name": k, **v} for k, v in extra.items()]
    return {"resourceType": "Parameters", "parameter": parameter}


def test_stats_post_with_parameters_answers_parameters(client) -> None:  # type: ignore[no-untyped-def]
    pid = client.post("/fhir/Patient", json=patient()).json()["id"]
    ids = [
        _obs(client, pid, "15074-8", v, d, "laboratory")
        for d, v in ((1, 4), (2, 5), (3, 7), (5, 9))
    ]
    r = client.post("/fhir/Observation/$stats", json=_parameters(pid))
    assert r.status_code == 200, r.text
    answer = r.json()
    assert answer["resourceType"] == "Parameters"
    (stat,) = [p["resource"] for p in answer["parameter"] if p["name"] == "statistics"]
    assert not [p for p in answer["parameter"] if p["name"] == "source"]
    got = {c["code"]["coding"][0]["code"]: c["valueQuantity"]["value"] for c in stat["component"]}
    assert got == {"average": 6, "count": 2}  # only 2 and 3 April are in the period
    # the statistic is a laboratory result as its sources are, not a vital sign
    assert stat["category"] == [{"coding": [{"system": CATEGORY, "code": "laboratory"}]}]

    # coding as a valueCoding asks the same
    by_coding = _parameters(pid)
    by_coding["parameter"] = [
        p for p in by_coding["parameter"] if p["name"] not in ("code", "system")
    ] + [{"name": "coding", "valueCoding": {"system": LOINC, "code": "15074-8"}}]
    r = client.post("/fhir/Observation/$stats", json=by_coding)
    assert r.status_code == 200, r.text
    (again,) = [p["resource"] for p in r.json()["parameter"] if p["name"] == "statistics"]
    assert again["component"] == stat["component"]

    r = client.post(
        "/fhir/Observation/$stats", json=_parameters(pid, include={"valueBoolean": True})
    )
    assert r.status_code == 200, r.text
    sources = [p["resource"] for p in r.json()["parameter"] if p["name"] == "source"]
    assert sorted(s["id"] for s in sources) == sorted(ids[1:3])
    assert all(s["valueQuantity"]["unit"] == "mmol/L" for s in sources)


def test_stats_parameters_refused_precisely(client) -> None:  # type: ignore[no-untyped-def]
    pid = client.post("/fhir/Patient", json=patient()).json()["id"]
    body = _parameters(pid)
    body["parameter"].append({"name": "period", "valueQuantity": {"value": 3}})
    r = client.post("/fhir/Observation/$stats", json=body)
    assert r.status_code == 400, r.text
    assert "Parameters.parameter[6].valueQuantity" in r.text


def test_stats_numbers_that_are_not_numbers_are_refused(client) -> None:  # type: ignore[no-untyped-def]
    """``limit`` and ``duration`` are checked like every other parameter: a 400 naming
    them, never a server error (found by fuzzing every route)."""
    pid = client.post("/fhir/Patient", json=patient()).json()["id"]
    base = {"subject": f"Patient/{pid}", "code": "http://loinc.org|59408-5"}
    for extra, named in (
        ({"limit": ""}, "limit"),
        ({"limit": "x"}, "limit"),
        ({"limit": "0"}, "limit"),
        ({"duration": "nan"}, "duration"),
        ({"duration": "1e308"}, "duration"),
        ({"duration": "-1"}, "duration"),
    ):
        r = client.get("/fhir/Observation/$stats", params={**base, **extra})
        assert r.status_code == 400, (extra, r.text)
        assert named in r.json()["issue"][0]["diagnostics"]
    assert client.get("/fhir/Observation/$stats", params={**base, "limit": "3"}).status_code == 200
