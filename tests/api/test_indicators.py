"""Management indicators: figures, suppression of small counts, formats and access."""

from __future__ import annotations

import random
import re
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

from interop.identifiers import generate_fnr, generate_orgnr
from interop.indicators import compute

ZONE = "https://dho-interop.no/fhir/CodeSystem/zone"
ORGNR = "urn:oid:2.16.578.1.12.4.1.4.101"


def _setup(client, patients: int = 6) -> str:  # type: ignore[no-untyped-def]
    rng = random.Random(3)
    orgnr = generate_orgnr(rng)
    kommune = client.post(
        "/fhir/Organization",
        json={
            "resourceType": "Organization",
            "name": "Fjordvik kommune",
            "identifier": [{"system": ORGNR, "value": orgnr}],
        },
    ).json()["id"]
    centre = client.post(
        "/fhir/Organization",
        json={
            "resourceType": "Organization",
            "name": "Oppfølgingssenteret",
            "partOf": {"reference": f"Organization/{kommune}"},
        },
    ).json()["id"]
    for i in range(patients):
        fnr = generate_fnr(date(1950, 1, 1 + i), rng=rng, synthetic=True)
        pid = client.post(
            "/fhir/Patient",
            json={
                "resourceType": "Patient",
                "identifier": [{"system": "urn:oid:2.16.578.1.12.4.1.4.1", "value": fnr}],
                "managingOrganization": {"reference": f"Organization/{centre}"},
            },
        ).json()["id"]
        for day in range(1, 11):
            zone = "red" if (i == 0 and day == 5) else ("yellow" if day % 5 == 0 else "green")
            client.post(
                "/fhir/Observation",
                json={
                    "resourceType": "Observation",
                    "status": "final",
                    "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4"}]},
                    "subject": {"reference": f"Patient/{pid}"},
                    "effectiveDateTime": f"2026-03-{day:02d}T08:00:00+01:00",
                    "valueQuantity": {
                        "value": 70,
                        "unit": "/min",
                        "system": "http://unitsofmeasure.org",
                        "code": "/min",
                    },
                    "interpretation": [{"coding": [{"system": ZONE, "code": zone}]}],
                },
            )
        client.post(
            "/fhir/Task",
            json={
                "resourceType": "Task",
                "status": "completed",
                "intent": "order",
                "priority": "asap",
                "for": {"reference": f"Patient/{pid}"},
                "authoredOn": "2026-03-05T09:00:00+01:00",
                "lastModified": f"2026-03-05T{10 + i:02d}:00:00+01:00",
            },
        )
    return orgnr


def test_indicator_figures_and_suppression(client, services) -> None:  # type: ignore[no-untyped-def]
    orgnr = _setup(client)
    with services.store.reader() as conn:
        ind = compute(conn, orgnr, date(2026, 3, 1), date(2026, 3, 31), suppress_below=5)
    v = ind.values
    assert v["patientsInScope"]["value"] == 6
    assert v["activePatients"]["value"] == 6
    assert v["measurementsReceived"]["value"] == 60
    assert v["triagedMeasurements"]["value"] == 60
    assert v["shareYellow"]["value"] == round(11 / 60, 4)
    assert v["shareRed"] == {"value": None, "suppressed": True}  # one red measurement
    assert v["redEvents"]["value"] == 6
    assert v["redResponseHours"]["median"] == 3.5  # 1..6 hours
    assert 0 < v["adherence"]["value"] <= 1
    with services.store.reader() as conn:
        april = compute(conn, orgnr, date(2026, 4, 1), date(2026, 4, 30), suppress_below=5)
    assert april.values["measurementsReceived"]["value"] == 0


def test_indicator_formats_and_access(client) -> None:  # type: ignore[no-untyped-def]
    orgnr = _setup(client)
    q = {"organization": orgnr, "period": "2026-03-01/2026-03-31"}
    r = client.get("/api/v1/indicators", params=q)
    assert r.status_code == 200 and r.json()["indicators"]["measurementsReceived"]["value"] == 60
    csv = client.get("/api/v1/indicators", params={**q, "format": "csv"})
    assert (
        csv.headers["content-type"].startswith("text/csv")
        and "measurementsReceived,60,false" in csv.text
    )
    mr = client.get("/api/v1/indicators", params={**q, "format": "fhir"}).json()
    assert mr["resourceType"] == "MeasureReport" and mr["type"] == "summary"
    # without a period: the last 30 days up to today (Norwegian local date), not an error
    today = datetime.now(ZoneInfo("Europe/Oslo")).date()
    plain = client.get("/api/v1/indicators", params={"organization": orgnr})
    assert plain.status_code == 200, plain.text
    assert plain.json()["period"] == {
        "start": (today - timedelta(days=29)).isoformat(),
        "end": today.isoformat(),
    }
    page = client.get("/api/v1/indicators", params={**q, "format": "html"})
    assert "<svg" in page.text and "Fjordvik kommune" in page.text
    assert "Målinger mottatt" in page.text and "suppressed" not in page.text
    # shares are percentages on the page (0–1 in the data): «71,7 %», never «0,7165»
    share = r.json()["indicators"]["shareGreen"]["value"]
    assert f"Andel grønne målinger</th><td>{share * 100:.1f} %".replace(".", ",") in page.text
    assert not re.search(r"Etterlevelse[^<]*</th><td>0,\d", page.text)
    assert (
        client.get(
            "/api/v1/indicators", params={**q, "period": "2026-03-31/2026-03-01"}
        ).status_code
        == 400
    )
    assert (
        client.get("/api/v1/indicators", params={**q, "organization": "123456789"}).status_code
        == 422
    )
