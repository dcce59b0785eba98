"""FHIR R4 JSON rules at the edge (issue 14 items 15 and 16).

Decimals are served with the text they were sent in; booleans and numbers given as strings,
empty strings, empty arrays and objects, and ``null`` are refused with 422 naming the element.
"""

from __future__ import annotations

import json
from typing import Any

from tests.api.test_fhir_crud import observation, patient

FHIR_JSON = {"Content-Type": "application/fhir+json"}


def _patient_id(client) -> str:  # type: ignore[no-untyped-def]
    r = client.post("/fhir/Patient", json=patient())
    assert r.status_code == 201, r.text
    return str(r.json()["id"])


def _with_value(pid: str, text: str) -> bytes:
    """An Observation body whose valueQuantity.value is written exactly as ``text``."""
    body = json.dumps(observation(pid, value=-424242.5))  # a sentinel no id or date holds
    assert body.count("-424242.5") == 1
    return body.replace("-424242.5", text).encode()


def test_decimals_are_served_as_sent(client) -> None:  # type: ignore[no-untyped-def]
    pid = _patient_id(client)
    for text in ("72.010", "66.899999999999991", "7.20e1", "72.0", "72"):
        r = client.post("/fhir/Observation", content=_with_value(pid, text), headers=FHIR_JSON)
        assert r.status_code == 201, r.text
        assert f'"value":{text},' in r.text, (text, r.text)
        oid = r.json()["id"]
        read = client.get(f"/fhir/Observation/{oid}")
        assert f'"value":{text},' in read.text, (text, read.text)
        found = client.get("/fhir/Observation", params={"_id": oid})
        assert f'"value":{text},' in found.text
        history = client.get(f"/fhir/Observation/{oid}/_history")
        assert f'"value":{text},' in history.text


def test_a_decimal_kept_as_text_is_still_its_number(client) -> None:  # type: ignore[no-untyped-def]
    """The index and the statistics see the number itself."""
    pid = _patient_id(client)
    for text in ("72.010", "80.50"):
        r = client.post("/fhir/Observation", content=_with_value(pid, text), headers=FHIR_JSON)
        assert r.status_code == 201, r.text
    stats = client.get(
        "/fhir/Observation/$stats",
        params={
            "subject": f"Patient/{pid}",
            "code": "http://loinc.org|8867-4",
            "statistic": "minimum,maximum",
        },
    )
    assert stats.status_code == 200, stats.text
    values = sorted(
        c["valueQuantity"]["value"]
        for e in stats.json()["entry"]
        for c in e["resource"].get("component", [])
    )
    assert values == [72.01, 80.5], stats.text


def test_decimals_in_bundles_are_served_as_sent(client) -> None:  # type: ignore[no-untyped-def]
    pid = _patient_id(client)
    entry = _with_value(pid, "72.010").decode()
    for kind in ("transaction", "batch"):
        bundle = (
            '{"resourceType":"Bundle","type":"' + kind + '","entry":[{"resource":' + entry + ","
            '"request":{"method":"POST","url":"Observation"}}]}'
        )
        r = client.post("/fhir", content=bundle.encode(), headers=FHIR_JSON)
        assert r.status_code == 200, r.text
        (first,) = r.json()["entry"]
        assert first["response"]["status"].startswith("201"), first
        assert '"value":72.010,' in r.text, r.text
        oid = first["response"]["location"].split("/")[1]
        assert '"value":72.010,' in client.get(f"/fhir/Observation/{oid}").text
    # a search inside a batch serves the stored bytes
    search = (
        '{"resourceType":"Bundle","type":"batch","entry":[{"request":{"method":"GET",'
        '"url":"Observation?subject=Patient/' + pid + '"}}]}'
    )
    r = client.post("/fhir", content=search.encode(), headers=FHIR_JSON)
    assert r.status_code == 200, r.text
    assert r.text.count('"value":72.010,') == 2, r.text


def _refused(r: Any, element: str) -> None:
    assert r.status_code == 422, r.text
    outcome = r.json()
    assert outcome["resourceType"] == "OperationOutcome"
    where = [e for i in outcome["issue"] for e in i.get("expression", [])]
    text = " ".join(i.get("diagnostics", "") for i in outcome["issue"])
    assert element in where or element in text, (element, outcome)


STRICT_CASES = [
    # (resource type, change to a valid resource, the element the refusal names)
    ("Patient", {"active": "true"}, "Patient.active"),
    ("Patient", {"deceasedBoolean": "false"}, "Patient.deceasedBoolean"),
    ("Patient", {"multipleBirthInteger": "2"}, "Patient.multipleBirthInteger"),
    ("Patient", {"gender": ""}, "Patient.gender"),
    ("Patient", {"name": []}, "Patient.name"),
    ("Patient", {"name": [{}]}, "Patient.name[0]"),
    ("Patient", {"name": [{"family": "Nordmann", "given": [""]}]}, "Patient.name[0].given[0]"),
    ("Patient", {"telecom": None}, "telecom"),
    ("Observation", {"valueQuantity": {"value": "72.5", "unit": "/min"}}, "valueQuantity.value"),
    ("Observation", {"valueBoolean": "true"}, "Observation.valueBoolean"),
    ("Observation", {"valueInteger": "3"}, "Observation.valueInteger"),
    ("Observation", {"note": []}, "Observation.note"),
    ("Observation", {"code": {}}, "Observation.code"),
    ("Observation", {"valueString": ""}, "Observation.valueString"),
    (
        "Observation",
        {"component": [{"code": {"text": "x"}, "valueQuantity": {"value": "1"}}]},
        "Observation.component[0].valueQuantity.value",
    ),
    (
        "Observation",
        {"extension": [{"url": "http://example.org/x", "valueBoolean": "false"}]},
        "Observation.extension[0].valueBoolean",
    ),
]


def test_strict_json_on_create_update_and_bundles(client) -> None:  # type: ignore[no-untyped-def]
    pid = _patient_id(client)
    for rtype, change, element in STRICT_CASES:
        base: dict[str, Any] = (
            patient(fnr="02028099471") if rtype == "Patient" else observation(pid)
        )
        if rtype == "Observation" and any(k.startswith("value") for k in change):
            base.pop("valueQuantity")
        resource = {**base, **change}
        _refused(client.post(f"/fhir/{rtype}", json=resource), element)
        _refused(
            client.put(f"/fhir/{rtype}/strict-1", json={**resource, "id": "strict-1"}), element
        )
        batch = {
            "resourceType": "Bundle",
            "type": "batch",
            "entry": [{"resource": resource, "request": {"method": "POST", "url": rtype}}],
        }
        r = client.post("/fhir", json=batch)
        if "null" in json.dumps(change):
            _refused(r, element)  # a null anywhere makes the whole body unreadable FHIR JSON
            continue
        assert r.status_code == 200, r.text
        (entry,) = r.json()["entry"]
        assert entry["response"]["status"].startswith("422"), (element, entry)
        assert element in json.dumps(entry["response"]["outcome"]), (element, entry)
        assert client.get(f"/fhir/{rtype}/strict-1").status_code == 404  # nothing stored
    # nothing of any refused write was stored
    total = client.get("/fhir/Observation", params={"_summary": "count"}).json()["total"]
    assert total == 0


def test_valid_json_forms_are_still_accepted(client) -> None:  # type: ignore[no-untyped-def]
    pid = _patient_id(client)
    given_with_extension = {
        **patient(fnr="02028099471"),
        "active": True,
        "multipleBirthInteger": 2,
        "name": [
            {
                "family": "Nordmann",
                "given": ["Kari", None],
                "_given": [None, {"extension": [{"url": "http://x", "valueString": "y"}]}],
            }
        ],
    }
    assert client.post("/fhir/Patient", json=given_with_extension).status_code == 201
    obs = {**observation(pid), "note": [{"text": "null and [] and {} inside text are fine"}]}
    assert client.post("/fhir/Observation", json=obs).status_code == 201
