"""Observation/$lastn and Observation/$stats."""

from __future__ import annotations

import statistics

FNR_SYSTEM = "urn:oid:2.16.578.1.12.4.1.4.1"
LOINC = "http://loinc.org"


def _obs(
    client,
    pid: str,
    code: str,
    value: float,
    day: int,
    unit: str = "/min",
    status: str = "final",
    extra: list | None = None,
) -> str:  # type: ignore[no-untyped-def,type-arg]
    coding = [{"system": LOINC, "code": code}] + (extra or [])
    r = client.post(
        "/fhir/Observation",
        json={
            "resourceType": "Observation",
            "status": status,
            "category": [
                {
                    "coding": [
                        {
                            "system": "http://terminology.hl7.org/CodeSystem/observation-category",
                            "code": "vital-signs",
                        }
                    ]
                }
            ],
            "code": {"coding": coding},
            "subject": {"reference": f"Patient/{pid}"},
            "effectiveDateTime": f"2026-04-{day:02d}T08:00:00+02:00",
            "valueQuantity": {
                "value": value,
                "unit": unit,
                "system": "http://unitsofmeasure.org",
                "code": unit,
            },
        },
    )
    assert r.status_code == 201, r.text
    return str(r.json()["id"])


def _bp(client, pid: str, sys_: int, dia: int, day: int) -> None:  # type: ignore[no-untyped-def]
    def q(v):
        return {
            "value": v,
            "unit": "mm[Hg]",
            "system": "http://unitsofmeasure.org",
            "code": "mm[Hg]",
        }  # noqa: E731

    client.post(
        "/fhir/Observation",
        json={
            "resourceType": "Observation",
            "status": "final",
            "code": {"coding": [{"system": LOINC, "code": "85354-9"}]},
            "subject": {"reference": f"Patient/{pid}"},
            "effectiveDateTime": f"2026-04-{day:02d}T08:00:00+02:00",
            "component": [
                {
                    "code": {"coding": [{"system": LOINC, "code": "8480-6"}]},
                    "valueQuantity": q(sys_),
                },
                {
                    "code": {"coding": [{"system": LOINC, "code": "8462-4"}]},
                    "valueQuantity": q(dia),
                },
            ],
        },
    )


def _patient(client, fnr: str = "13031353453") -> str:  # type: ignore[no-untyped-def]
    return str(
        client.post(
            "/fhir/Patient",
            json={"resourceType": "Patient", "identifier": [{"system": FNR_SYSTEM, "value": fnr}]},
        ).json()["id"]
    )


def _ids(bundle: dict) -> list[str]:  # type: ignore[type-arg]
    return [
        e["resource"]["id"]
        for e in bundle.get("entry", [])
        if e.get("search", {}).get("mode") == "match"
    ]


def test_lastn(client) -> None:  # type: ignore[no-untyped-def]
    pid = _patient(client)
    hr = [_obs(client, pid, "8867-4", 60 + d, d) for d in range(1, 6)]
    spo2 = [
        _obs(client, pid, "2708-6", 95, d, "%", extra=[{"system": LOINC, "code": "59408-5"}])
        for d in (2, 4)
    ]
    withdrawn = _obs(client, pid, "8867-4", 99, 9, status="entered-in-error")
    r = client.get("/fhir/Observation/$lastn", params={"patient": f"Patient/{pid}", "max": 3})
    assert r.status_code == 200, r.text
    ids = _ids(r.json())
    assert withdrawn not in ids
    assert set(ids) == set(hr[2:]) | set(spo2)
    assert len(ids) == len(set(ids)) == 5  # the multi-coded SpO2 Observations come once each
    r = client.get(
        "/fhir/Observation/$lastn",
        params={"patient.identifier": f"{FNR_SYSTEM}|13031353453", "code": f"{LOINC}|8867-4"},
    )
    assert _ids(r.json()) == [hr[-1]]
    r = client.get(
        "/fhir/Observation/$lastn",
        params={"patient": pid, "code": f"{LOINC}|8867-4", "max": 10, "date": "le2026-04-03"},
    )
    assert _ids(r.json()) == [hr[2], hr[1], hr[0]]
    assert client.get("/fhir/Observation/$lastn", params={"max": "0"}).status_code == 400


def test_stats(client) -> None:  # type: ignore[no-untyped-def]
    pid = _patient(client)
    values = [62, 70, 75, 81, 90]
    for d, v in enumerate(values, start=1):
        _obs(client, pid, "8867-4", v, d)
    _obs(client, pid, "8867-4", 200, 7, status="entered-in-error")
    for d, (s, di) in enumerate([(130, 80), (150, 90), (140, 85)], start=1):
        _bp(client, pid, s, di, d)
    r = client.get(
        "/fhir/Observation/$stats",
        params={
            "subject": f"Patient/{pid}",
            "code": "8867-4",
            "system": LOINC,
            "statistic": "average,minimum,maximum,count,median,std-dev,first,last",
            "period": "2026-04-01/2026-04-30",
        },
    )
    assert r.status_code == 200, r.text
    [res] = [e["resource"] for e in r.json()["entry"]]
    got = {c["code"]["coding"][0]["code"]: c["valueQuantity"]["value"] for c in res["component"]}
    assert (
        got["count"] == 5 and got["minimum"] == 62 and got["maximum"] == 90 and got["median"] == 75
    )
    assert got["average"] == statistics.fmean(values)
    assert abs(got["std-dev"] - statistics.stdev(values)) < 1e-3
    assert got["first"] == 62 and got["last"] == 90
    assert res["component"][0]["valueQuantity"]["code"] == "/min"
    r = client.get(
        "/fhir/Observation/$stats",
        params={
            "subject": f"Patient/{pid}",
            "code": f"{LOINC}|85354-9",
            "statistic": "average,count",
        },
    )
    by_code = {e["resource"]["code"]["coding"][0]["code"]: e["resource"] for e in r.json()["entry"]}
    assert set(by_code) == {"8480-6", "8462-4"}
    assert by_code["8480-6"]["component"][0]["valueQuantity"]["value"] == 140
    assert by_code["8462-4"]["component"][0]["valueQuantity"]["value"] == 85
    assert client.get("/fhir/Observation/$stats", params={"code": "8867-4"}).status_code == 400
    assert (
        client.get(
            "/fhir/Observation/$stats",
            params={"subject": pid, "code": "8867-4", "statistic": "bogus"},
        ).status_code
        == 400
    )
    meta = client.get("/fhir/metadata").json()
    obs = [x for x in meta["rest"][0]["resource"] if x["type"] == "Observation"][0]
    assert {"lastn", "stats"} <= {o["name"] for o in obs["operation"]}
