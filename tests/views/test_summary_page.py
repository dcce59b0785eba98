"""The summary page a clinician trusts: one row per concept (SpO2 under either LOINC code),
events red first and never cut silently, Norwegian text, the EPJ view's note and plan."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

from tests.views.test_worklist import (
    GP_HPR,
    MUNICIPALITY,
    PLAN,
    _ingest,
    _org,
    _patient,
    _spo2,
)

FNR = "13031353453"


def _one_patient(client) -> str:  # type: ignore[no-untyped-def]
    org = _org(client, MUNICIPALITY, "Fjordvik kommune")
    gp = client.post(
        "/fhir/Practitioner",
        json={
            "resourceType": "Practitioner",
            "identifier": [{"system": "urn:oid:2.16.578.1.12.4.1.4.4", "value": GP_HPR}],
        },
    ).json()["id"]
    pid = _patient(client, FNR, "Kari", org, gp)
    assert client.put(f"/api/v1/patients/{FNR}/plan", json=PLAN).status_code == 201
    return pid


def test_spo2_under_two_codes_is_one_row(client, services) -> None:  # type: ignore[no-untyped-def]
    _one_patient(client)
    now = datetime.now(UTC)
    _ingest(
        services,
        *[_spo2(FNR, "97", now + timedelta(seconds=1 + i)) for i in range(2)],
        *[_spo2(FNR, "96", now + timedelta(seconds=5 + i), code="59408-5") for i in range(3)],
    )
    s = client.get(f"/api/v1/patients/{FNR}/summary", params={"view": "gp"}).json()
    spo2 = [c for c in s["codes"] if c["code"] in ("2708-6", "59408-5")]
    assert len(spo2) == 1 and spo2[0]["code"] == "2708-6" and spo2[0]["count"] == 5
    assert spo2[0]["display"] == "Oksygenmetning (SpO2)"


def test_events_red_first_and_never_cut_silently(client, services) -> None:  # type: ignore[no-untyped-def]
    _one_patient(client)
    now = datetime.now(UTC)
    # 36 yellow readings, then 4 red ones among them early on: 40 events
    values = ["86" if i in (1, 2, 3, 4) else "92" for i in range(40)]
    _ingest(
        services, *[_spo2(FNR, v, now + timedelta(seconds=1 + i)) for i, v in enumerate(values)]
    )
    s = client.get(f"/api/v1/patients/{FNR}/summary", params={"view": "gp"}).json()
    assert s["eventCount"] == {"red": 4, "yellow": 36} and s["eventsTotal"] == 40
    assert [e["zone"] for e in s["events"][:4]] == ["red"] * 4
    html = client.get(
        f"/api/v1/patients/{FNR}/summary", params={"view": "gp"}, headers={"Accept": "text/html"}
    ).text
    listed = re.findall(r'<li class="ev-(red|yellow)">', html)
    assert len(listed) == 30 and listed[:4] == ["red"] * 4
    assert "Viser 30 av 40 (røde først)" in html
    link = re.search(r'<a href="([^"]+)">Vis alle hendelsene</a>', html)
    assert link is not None
    everything = client.get(
        link.group(1).replace("&amp;", "&"), headers={"Accept": "text/html"}
    ).text
    assert len(re.findall(r'<li class="ev-(?:red|yellow)">', everything)) == 40
    assert "Viser 30" not in everything
    # the header's counts are what the full list holds
    assert "Røde hendelser: 4, gule: 36" in everything
    for wrong in ("(yellow)", "(red)", "snitt 93.", "1 målinger", "%)</", "T0"):
        assert wrong not in html, wrong


def test_epj_page_has_note_and_plan(client, services) -> None:  # type: ignore[no-untyped-def]
    _one_patient(client)
    now = datetime.now(UTC)
    _ingest(services, _spo2(FNR, "91,5".replace(",", "."), now + timedelta(minutes=1)))
    s = client.get(f"/api/v1/patients/{FNR}/summary", params={"view": "epj"}).json()
    assert "91,5 %" in s["note"] and "gul" in s["note"] and "1 måling." in s["note"]
    html = client.get(
        f"/api/v1/patients/{FNR}/summary", params={"view": "epj"}, headers={"Accept": "text/html"}
    ).text
    assert 'id="note"' in html and s["note"] in html.replace("&#x27;", "'")
    assert 'id="plan"' in html and "Oksygenmetning (SpO2): grønn ≥ 94 %, gul ≥ 90 %" in html
    # the bounds belong to the zone they open (a reading of 94 % is green), as the text says
    assert "grønn over 94" not in html
    assert "Kari Nordmann, fødselsnummer 13031353453" in html
    # … and a reading of exactly 94 % is judged green, as «grønn ≥ 94 %» says
    _ingest(services, _spo2(FNR, "94", now + timedelta(minutes=2)))
    s = client.get(f"/api/v1/patients/{FNR}/summary", params={"view": "epj"}).json()
    [spo2] = [c for c in s["codes"] if c["code"] == "2708-6"]
    assert spo2["latest"]["value"] == 94 and spo2["latest"]["zone"] == "green"


def test_gp_message_text_is_norwegian() -> None:
    from interop.messaging.compose import _code_lines

    lines = _code_lines(
        {
            "codes": [
                {
                    "display": "Systolisk blodtrykk",
                    "unit": "mm[Hg]",
                    "latest": {"value": 154.0, "zone": "red"},
                    "mean": 93.875,
                    "min": 120.0,
                    "max": 154.0,
                    "count": 1,
                    "trendPerWeek": 2.26,
                    "ranges": {"source": "CarePlan/1", "green": [100.0, 150.0], "yellow": None},
                }
            ],
            "eventCount": {"red": 1, "yellow": 0},
            "adherence": 0.5,
        }
    )
    text = " ".join(lines)
    assert "siste 154 mmHg (rødt)" in text and "snitt 93,9 mmHg" in text
    assert "1 måling" in text and "1 målinger" not in text and "mm[Hg]" not in text
    assert "100–150 mmHg" in text and "trend 2,3 mmHg/uke" in text


def test_adherence_counts_from_when_the_patient_began_measuring(client, services) -> None:  # type: ignore[no-untyped-def]
    """A patient measuring every day since 10 days ago is not 11 % adherent in the 90-day
    view: adherence counts from the first measurement, and the page says from when; a patient
    who measured before the period is counted over the whole period."""
    _one_patient(client)
    now = datetime.now(UTC)
    _ingest(services, *(_spo2(FNR, "96", now - timedelta(days=d, hours=1)) for d in range(10)))
    s = client.get(f"/api/v1/patients/{FNR}/summary", params={"view": "followup"}).json()
    assert s["adherence"] >= 0.9, s["adherence"]
    first = datetime.fromisoformat(s["adherenceFrom"])
    assert abs(first - (now - timedelta(days=9, hours=1))) < timedelta(seconds=2)
    page = client.get(
        f"/api/v1/patients/{FNR}/summary",
        params={"view": "followup"},
        headers={"Accept": "text/html"},
    ).text
    assert re.search(
        r"Etterlevelse \d+ % \(av dagene med minst én måling, fra \d\d\.\d\d\.\d{4}\)", page
    )
    # a measurement before the 90 days: the whole period counts, 10 days of 90
    _ingest(services, _spo2(FNR, "96", now - timedelta(days=120)))
    s = client.get(f"/api/v1/patients/{FNR}/summary", params={"view": "followup"}).json()
    assert s["adherenceFrom"] is None and s["adherence"] < 0.2


def test_adherence_counts_from_the_plan_when_it_began_before_the_measuring(
    client, services
) -> None:  # type: ignore[no-untyped-def]
    """A plan in force for 60 days, and measurements only the last 10: the 50 days without a
    measurement count (adherence about 10 of 61 days), from the plan's start, not from the
    first measurement, which would read as nearly 100 %."""
    from interop.access.actor import ADMIN
    from interop.store.context import Door, WriteContext

    _one_patient(client)
    now = datetime.now(UTC)
    plan_start = now - timedelta(days=60)
    [entry] = client.get("/fhir/CarePlan", params={"status": "active"}).json()["entry"]
    plan = entry["resource"]
    plan["period"] = {**plan.get("period", {}), "start": plan_start.isoformat()}
    with services.store.write(WriteContext(ADMIN, Door.FHIR)) as tx:
        tx.update("CarePlan", plan["id"], plan)
    _ingest(services, *(_spo2(FNR, "96", now - timedelta(days=d, hours=1)) for d in range(10)))
    s = client.get(f"/api/v1/patients/{FNR}/summary", params={"view": "followup"}).json()
    assert 0.1 < s["adherence"] < 0.25, s["adherence"]
    assert abs(datetime.fromisoformat(s["adherenceFrom"]) - plan_start) < timedelta(seconds=2)
