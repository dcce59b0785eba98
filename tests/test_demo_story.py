"""The demo tells a story a nurse, a GP and a hospital clinician recognise: plans approved,
patients in their start-up period, earlier deviations handled, some deteriorating now, one with
a hospital episode."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from interop.demo_loader import load_demo


def _an_evening() -> datetime:
    """The latest past moment at 21:00 Norwegian time (in the history's evening sessions), at
    most 22 hours ago so that today's readings are not late data."""
    oslo = datetime.now(ZoneInfo("Europe/Oslo"))
    evening = oslo.replace(hour=21, minute=0, second=0, microsecond=0)
    if evening > oslo:
        evening -= timedelta(days=1)
    if oslo - evening > timedelta(hours=22):
        evening = oslo - timedelta(minutes=1)
    return evening.astimezone(UTC)


@pytest.mark.parametrize("when", ["now", "evening"])
def test_demo_story(settings, services, client, when) -> None:  # type: ignore[no-untyped-def]
    """The story holds whatever the time of day (the history's evening readings once came after
    today's deteriorating ones and hid them)."""
    now = datetime.now(UTC) if when == "now" else _an_evening()
    report = load_demo(settings, patients=10, days=20, seed=7, now=now)
    assert "plans approved 9" in report and "hospital episodes 1" in report
    plans = client.get("/fhir/CarePlan", params={"status": "active", "_count": 100}).json()
    assert plans["total"] == 9  # the tenth patient is in the start-up period
    episodes = client.get("/fhir/EpisodeOfCare", params={"status": "active"}).json()
    assert episodes["total"] == 1
    centre = next(
        e["resource"]
        for e in client.get("/fhir/Organization", params={"_count": 50}).json()["entry"]
        if "ppfølging" in e["resource"].get("name", "")
    )
    orgnr = next(i["value"] for i in centre["identifier"] if i["system"].endswith(".4.101"))
    rows = client.get("/api/v1/worklist", params={"organization": orgnr}).json()["rows"]
    red = [r for r in rows if r["reasons"][0]["code"] == "red"]
    # the three patients deteriorating now are among the red rows, a red latest value each
    assert sum(any(v["zone"] == "red" for v in r["latest"]) for r in red) >= 3
    assert rows[: len(red)] == red  # red rows lead the list


COPD_CODES = {"2708-6", "8867-4", "8310-5"}
"""The codes of a COPD patient's plan in the demo (interop.demo_story.PLAN_CODES)."""


def test_the_demos_events_are_judged_by_the_approved_plans(settings, services, client) -> None:  # type: ignore[no-untyped-def]
    """A patient with a plan has had it through the whole history: every reading of a code the
    plan holds was judged by the plan (not by the default ranges), as the GP's and the nurse's
    pages and the GP's messages show it; only the start-up patient is judged by the defaults."""
    from collections import Counter

    load_demo(settings, patients=10, days=20, seed=7)
    plans = client.get("/fhir/CarePlan", params={"status": "active", "_count": 100}).json()
    plan_of = {e["resource"]["subject"]["reference"]: e["resource"] for e in plans["entry"]}
    judged: Counter[str] = Counter()
    copd_spo2: Counter[str] = Counter()  # zones of the COPD patients' SpO2 readings
    for subject, plan in plan_of.items():
        codes = {
            client.get(f"/fhir/{g['reference']}").json()["target"][0]["measure"]["coding"][0][
                "code"
            ]
            for g in plan["goal"]
        }
        start = plan["period"]["start"]
        bundle = client.get("/fhir/Observation", params={"subject": subject, "_count": 1000}).json()
        assert bundle["total"] <= 1000
        for e in bundle["entry"]:
            obs = e["resource"]
            if obs["code"]["coding"][0]["code"] not in codes:
                continue
            assert obs["effectiveDateTime"] >= start[:10], "the plan covers the history"
            for i in obs.get("interpretation", []):
                text = i.get("text", "")
                if text.startswith(("red", "yellow", "green")):
                    assert f"plan CarePlan/{plan['id']}" in text, (subject, text)
                    judged[text.split(" ", 1)[0]] += 1
                    if codes == COPD_CODES and obs["code"]["coding"][0]["code"] == "2708-6":
                        copd_spo2[text.split(" ", 1)[0]] += 1
    assert judged["red"] >= 3 and judged["green"] > judged["red"]
    # a COPD patient's plan holds the kols target (SpO2 88-92 %), not 94-98 %: their usual
    # readings are not red all month (they were, under the general default)
    assert sum(copd_spo2.values()) > 20, copd_spo2
    assert copd_spo2["red"] < 0.1 * sum(copd_spo2.values()), copd_spo2
