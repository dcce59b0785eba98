"""The demo tells a story a nurse, a GP and a hospital clinician recognise: plans approved,
patients in their start-up period, earlier deviations handled, some deteriorating now, one with
a hospital episode."""

from __future__ import annotations

from interop.demo_loader import load_demo


def test_demo_story(settings, services, client) -> None:  # type: ignore[no-untyped-def]
    report = load_demo(settings, patients=10, days=20, seed=7)
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
