"""FHIR search semantics: tokens, references, chained identifiers, dates with prefixes,
sorting, counting, includes, strict/lenient handling and cursor paging under concurrent writes."""

from __future__ import annotations

from typing import Any

import pytest

FNR_SYSTEM = "urn:oid:2.16.578.1.12.4.1.4.1"
LOINC = "http://loinc.org"
FNR_A, FNR_B = "13031353453", "02028099471"


def _p(client, fnr: str) -> str:  # type: ignore[no-untyped-def]
    r = client.post(
        "/fhir/Patient",
        json={
            "resourceType": "Patient",
            "identifier": [{"system": FNR_SYSTEM, "value": fnr}],
            "name": [{"family": "Ærlighet", "given": ["Åse"]}],
        },
    )
    assert r.status_code == 201, r.text
    return str(r.json()["id"])


def _o(
    client,
    pid: str,
    when: str,
    code: str = "8867-4",
    value: float = 70,
    status: str = "final",
    cat: str = "vital-signs",
) -> str:  # type: ignore[no-untyped-def]
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
                            "code": cat,
                        }
                    ]
                }
            ],
            "code": {"coding": [{"system": LOINC, "code": code}]},
            "subject": {"reference": f"Patient/{pid}"},
            "effectiveDateTime": when,
            "valueQuantity": {
                "value": value,
                "unit": "/min",
                "system": "http://unitsofmeasure.org",
                "code": "/min",
            },
        },
    )
    assert r.status_code == 201, r.text
    return str(r.json()["id"])


def ids(client, path: str, **params: Any) -> list[str]:  # type: ignore[no-untyped-def]
    r = client.get(path, params=params)
    assert r.status_code == 200, r.text
    return [
        e["resource"]["id"]
        for e in r.json().get("entry", [])
        if e.get("search", {}).get("mode") == "match"
    ]


@pytest.fixture
def data(client):  # type: ignore[no-untyped-def]
    a, b = _p(client, FNR_A), _p(client, FNR_B)
    obs = {
        "a1": _o(client, a, "2026-01-05T08:00:00+01:00"),
        "a2": _o(client, a, "2026-01-20T08:00:00+01:00", code="2708-6", cat="survey"),
        "a3": _o(client, a, "2026-02-03T08:00:00+01:00", status="preliminary"),
        "b1": _o(client, b, "2025-12-31T23:30:00+01:00"),
    }
    return a, b, obs


def test_tokens_and_references(client, data) -> None:  # type: ignore[no-untyped-def]
    a, b, o = data
    assert set(ids(client, "/fhir/Patient", identifier=f"{FNR_SYSTEM}|{FNR_A}")) == {a}
    assert set(ids(client, "/fhir/Patient", identifier=FNR_B)) == {b}
    assert ids(client, "/fhir/Patient", identifier=f"|{FNR_B}") == []  # explicit empty system
    assert set(ids(client, "/fhir/Patient", _id=f"{a},{b}")) == {a, b}
    assert set(ids(client, "/fhir/Observation", patient=f"Patient/{a}")) == {
        o["a1"],
        o["a2"],
        o["a3"],
    }
    assert set(ids(client, "/fhir/Observation", subject=b)) == {o["b1"]}
    assert set(
        ids(client, "/fhir/Observation", **{"subject:identifier": f"{FNR_SYSTEM}|{FNR_B}"})
    ) == {o["b1"]}
    assert set(
        ids(client, "/fhir/Observation", **{"patient.identifier": f"{FNR_SYSTEM}|{FNR_A}"})
    ) == {o["a1"], o["a2"], o["a3"]}
    assert set(ids(client, "/fhir/Observation", code=f"{LOINC}|2708-6,{LOINC}|9999-9")) == {o["a2"]}
    assert set(ids(client, "/fhir/Observation", category="survey")) == {o["a2"]}
    assert set(ids(client, "/fhir/Observation", status="preliminary")) == {o["a3"]}
    assert set(ids(client, "/fhir/Patient", name="ærlig")) == {
        a,
        b,
    }  # prefix, case- and accent-folded


@pytest.mark.parametrize(
    ("date", "expected"),
    [
        ("2026", {"a1", "a2", "a3"}),
        ("2026-01", {"a1", "a2"}),
        ("2026-01-05", {"a1"}),
        ("ge2026-01-20", {"a2", "a3"}),
        ("gt2026-01-20", {"a3"}),
        ("le2026-01-05", {"a1", "b1"}),
        ("lt2026-01-05", {"b1"}),
        ("ne2026-01", {"a3", "b1"}),
        ("sa2026-01-31", {"a3"}),
        ("eb2026-01-01", {"b1"}),
    ],
)
def test_date_prefixes(client, data, date: str, expected: set[str]) -> None:  # type: ignore[no-untyped-def]
    _a, _b, o = data
    assert set(ids(client, "/fhir/Observation", date=date)) == {o[k] for k in expected}


def test_sort_count_summary_include(client, data) -> None:  # type: ignore[no-untyped-def]
    a, _b, o = data
    assert ids(client, "/fhir/Observation", patient=a, _sort="date") == [o["a1"], o["a2"], o["a3"]]
    assert ids(client, "/fhir/Observation", patient=a, _sort="-date") == [o["a3"], o["a2"], o["a1"]]
    r = client.get("/fhir/Observation", params={"patient": a, "_summary": "count"}).json()
    assert r["total"] == 3 and "entry" not in r
    r = client.get(
        "/fhir/Observation", params={"patient": a, "_include": "Observation:subject", "_count": 1}
    ).json()
    modes = [e["search"]["mode"] for e in r["entry"]]
    assert modes == ["match", "include"] and r["entry"][1]["resource"]["id"] == a
    assert r["total"] == 3 and any(link["relation"] == "next" for link in r["link"])


def test_unknown_parameters_strict_by_default_and_lenient_on_request(client, data) -> None:  # type: ignore[no-untyped-def]
    """An unsupported filter never silently widens a search over patient data: 400 naming it,
    unless the client asks for lenient handling (then a warning in the Bundle)."""
    r = client.get("/fhir/Observation", params={"banana": "1"})
    assert r.status_code == 400 and "banana" in r.text
    chained = client.get(
        "/fhir/Observation",
        params={"subject:Patient.banana": "Olsen"},
    )
    assert chained.status_code == 400 and "banana" in chained.text
    r = client.get(
        "/fhir/Observation", params={"banana": "1"}, headers={"Prefer": "handling=lenient"}
    )
    assert r.status_code == 200
    outcome = [e for e in r.json()["entry"] if e["search"]["mode"] == "outcome"]
    assert outcome and "banana" in outcome[0]["resource"]["issue"][0]["diagnostics"]
    # what only shapes the answer is ignored with a warning, never refused
    assert client.get("/fhir/Observation", params={"_totalMethod": "count"}).status_code == 200
    assert client.get("/fhir/Observation", params={"date": "yesterday"}).status_code == 400
    assert client.get("/fhir/Observation", params={"_sort": "value"}).status_code == 400
    assert client.get("/fhir/Observation", params={"_cursor": "garbage!"}).status_code == 400


def test_paging_stays_correct_under_concurrent_writes(client) -> None:  # type: ignore[no-untyped-def]
    pid = _p(client, FNR_A)
    original = [
        _o(client, pid, f"2026-03-{d:02d}T08:00:00+01:00", value=60 + d) for d in range(1, 26)
    ]
    seen: list[str] = []
    r = client.get(
        "/fhir/Observation", params={"patient": pid, "_sort": "date", "_count": 10}
    ).json()
    page = 0
    while True:
        seen += [e["resource"]["id"] for e in r.get("entry", []) if e["search"]["mode"] == "match"]
        page += 1
        # between pages: new Observations before and after the cursor, and corrections
        _o(client, pid, f"2026-02-{page:02d}T08:00:00+01:00")
        _o(client, pid, f"2026-04-{page:02d}T08:00:00+01:00")
        victim = client.get(f"/fhir/Observation/{original[page]}").json()
        victim["status"] = "amended"
        assert client.put(f"/fhir/Observation/{victim['id']}", json=victim).status_code == 200
        nxt = [link["url"] for link in r["link"] if link["relation"] == "next"]
        if not nxt:
            break
        r = client.get(nxt[0].replace("http://testserver", "")).json()
    assert len(seen) == len(set(seen)), "an Observation was served twice"
    assert set(original) <= set(seen), "an Observation that existed at the start was skipped"


def test_transaction_is_atomic(client) -> None:  # type: ignore[no-untyped-def]
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {
                "fullUrl": "urn:uuid:11111111-1111-4111-8111-111111111111",
                "resource": {
                    "resourceType": "Patient",
                    "identifier": [{"system": FNR_SYSTEM, "value": FNR_A}],
                },
                "request": {"method": "POST", "url": "Patient"},
            },
            {
                "resource": {
                    "resourceType": "Observation",
                    "status": "final",
                    "code": {"coding": [{"system": LOINC, "code": "8867-4"}]},
                    "subject": {"reference": "urn:uuid:11111111-1111-4111-8111-111111111111"},
                    "valueQuantity": {"value": 70},
                },
                "request": {"method": "POST", "url": "Observation"},
            },
            {
                "resource": {
                    "resourceType": "Observation",
                    "status": "not-a-status",
                    "code": {"text": "x"},
                },
                "request": {"method": "POST", "url": "Observation"},
            },
        ],
    }
    r = client.post("/fhir", json=bundle)
    assert r.status_code == 422 and "entry[2]" in r.text
    assert client.get("/fhir/Patient", params={"_summary": "count"}).json()["total"] == 0
    del bundle["entry"][2]
    r = client.post("/fhir", json=bundle)
    assert r.status_code == 200, r.text
    obs = r.json()["entry"][1]["resource"]
    pid = r.json()["entry"][0]["resource"]["id"]
    assert obs["subject"]["reference"] == f"Patient/{pid}"
    assert ids(client, "/fhir/Observation", patient=pid) == [obs["id"]]


def test_a_patients_data_by_their_national_id(client) -> None:  # type: ignore[no-untyped-def]
    """``subject:Patient.identifier=<system>|<fødselsnummer>`` — the usual way to ask for a
    Norwegian patient's data — finds that patient's Observations, and only theirs."""
    a, b = _p(client, FNR_A), _p(client, FNR_B)
    oa = _o(client, a, "2026-03-01T08:00:00+01:00")
    _o(client, b, "2026-03-01T08:00:00+01:00")
    for key in ("subject:Patient.identifier", "patient.identifier", "patient:Patient.identifier"):
        r = client.get("/fhir/Observation", params={key: f"urn:oid:2.16.578.1.12.4.1.4.1|{FNR_A}"})
        assert r.status_code == 200, r.text
        assert [e["resource"]["id"] for e in r.json()["entry"]] == [oa], key
    nobody = client.get(
        "/fhir/Observation",
        params={"subject:Patient.identifier": "urn:oid:2.16.578.1.12.4.1.4.1|15076591919"},
    )
    assert nobody.status_code == 200 and not nobody.json().get("entry")


def test_the_total_counts_what_the_pages_hold_after_a_correction(client) -> None:  # type: ignore[no-untyped-def]
    """The total of an Observation search is counted from the index alone: an Observation
    whose code was corrected to another and another patient's are not in it (Observations are
    never deleted; the store clears a deleted resource's index rows like an update does)."""
    pid, other = _p(client, FNR_A), _p(client, FNR_B)
    ids = [_o(client, pid, f"2024-03-0{d}T08:00:00+01:00") for d in range(1, 6)]
    _o(client, other, "2024-03-02T08:00:00+01:00")
    changed = client.get(f"/fhir/Observation/{ids[1]}").json()
    changed["status"] = "corrected"
    changed["code"] = {"coding": [{"system": LOINC, "code": "8310-5"}]}
    changed["valueQuantity"] = {
        "value": 37.0,
        "unit": "Cel",
        "system": "http://unitsofmeasure.org",
        "code": "Cel",
    }
    assert client.put(f"/fhir/Observation/{ids[1]}", json=changed).status_code == 200
    for query in (
        f"patient=Patient/{pid}&code={LOINC}|8867-4",
        f"patient=Patient/{pid}&code={LOINC}|8867-4&date=ge2024-03-01",
        f"subject=Patient/{pid}&date=ge2024-03-01",
    ):
        bundle = client.get(f"/fhir/Observation?{query}&_count=2").json()
        listed: list[str] = []
        page: dict[str, Any] | None = bundle
        while page is not None:
            listed += [e["resource"]["id"] for e in page.get("entry", [])]
            nxt = [link["url"] for link in page.get("link", []) if link["relation"] == "next"]
            page = client.get(nxt[0]).json() if nxt else None
        expected = {ids[0], *ids[2:]} | ({ids[1]} if query.startswith("subject") else set())
        assert set(listed) == expected, query
        assert bundle["total"] == len(expected), query
