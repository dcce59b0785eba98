"""Egenbehandlingsplan (contract endpoint) and traffic-light triage in the ingest transaction."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from adapters.base import (
    FNR_OID,
    LOINC,
    MDC,
    AdapterResult,
    Code,
    Component,
    IngestMeta,
    Measurement,
    PatientRef,
)
from interop.access.actor import ADMIN
from interop.fhir.validation import validate_resource
from interop.ingest.pipeline import IngestPipeline
from tests.address_book import patient_with_gp

FNR = "13031353453"
PLAN = {
    "approvedBy": {"hpr": "9144889"},
    "zones": [
        {
            "code": "8480-6",
            "unit": "mm[Hg]",
            "green": {"low": 100, "high": 150},
            "yellow": {"low": 90, "high": 170},
            "actions": {"yellow": "Ring sykepleier", "red": "Ring lege"},
        },
        {"code": "8462-4", "unit": "mm[Hg]", "green": {"high": 90}, "yellow": {"high": 100}},
    ],
}
REF = PatientRef(FNR_OID, FNR)


def _setup(client) -> str:  # type: ignore[no-untyped-def]
    """The patient, with the GP who approves the plans (HPR 9144889) as fastlege."""
    return patient_with_gp(client, FNR)


def _bp(sys_: str, dia: str, when: datetime, unit: str = "mm[Hg]") -> Measurement:
    return Measurement(
        Code(MDC, "150020"),
        None,
        None,
        when,
        REF,
        "x",
        components=(
            Component(Code(MDC, "150021"), Decimal(sys_), unit),
            Component(Code(MDC, "150022"), Decimal(dia), unit),
        ),
    )


def _ingest(services, *ms: Measurement):  # type: ignore[no-untyped-def]
    return IngestPipeline(services).ingest_result(
        "test", AdapterResult(measurements=list(ms)), IngestMeta(source="t")
    )


def _obs(client, pid: str) -> list[dict]:  # type: ignore[no-untyped-def,type-arg]
    b = client.get(
        "/fhir/Observation", params={"patient": pid, "_sort": "date", "_count": 100}
    ).json()
    return [e["resource"] for e in b.get("entry", []) if e["search"]["mode"] == "match"]


def _zones(obs: dict) -> list[tuple[str, str]]:  # type: ignore[type-arg]
    out = []
    for c in obs["component"]:
        coding = c["interpretation"][0]["coding"]
        out.append((coding[0]["code"], coding[1]["code"]))
    return out


def test_plan_contract_and_versions(client) -> None:  # type: ignore[no-untyped-def]
    _setup(client)
    r = client.put(f"/api/v1/patients/{FNR}/plan", json=PLAN)
    assert r.status_code == 201, r.text
    body = r.json()
    assert (
        body["version"] == 1 and body["carePlan"]["status"] == "active" and len(body["goals"]) == 2
    )
    assert body["carePlan"]["category"][0]["coding"][0]["display"] == "Egenbehandlingsplan"
    goal = body["goals"][0]
    assert goal["target"][0]["detailRange"]["low"]["value"] == 100
    r2 = client.put(f"/api/v1/patients/{FNR}/plan", json=PLAN)
    assert r2.status_code == 200 and r2.json()["version"] == 2
    first = client.get(f"/fhir/CarePlan/{body['carePlan']['id']}").json()
    assert first["status"] == "completed" and "end" in first["period"]
    assert r2.json()["carePlan"]["replaces"][0]["reference"] == f"CarePlan/{body['carePlan']['id']}"
    assert (
        client.get(f"/api/v1/patients/{FNR}/plan").json()["carePlan"]["id"]
        == r2.json()["carePlan"]["id"]
    )


@pytest.mark.parametrize(
    ("body", "status"),
    [
        (
            {
                **PLAN,
                "zones": [
                    {
                        "code": "8480-6",
                        "unit": "mm[Hg]",
                        "green": {"low": 100, "high": 150},
                        "yellow": {"low": 110, "high": 170},
                    }
                ],
            },
            422,
        ),
        ({**PLAN, "zones": [{"code": "1234-5", "unit": "mm[Hg]", "green": {"low": 1}}]}, 422),
        ({**PLAN, "zones": [{"code": "8480-6", "unit": "kPa", "green": {"low": 1}}]}, 422),
        ({"zones": []}, 422),
    ],
)
def test_plan_errors(client, body: dict, status: int) -> None:  # type: ignore[no-untyped-def,type-arg]
    _setup(client)
    assert client.put(f"/api/v1/patients/{FNR}/plan", json=body).status_code == status


def test_plan_patient_errors(client) -> None:  # type: ignore[no-untyped-def]
    assert client.put("/api/v1/patients/12345678901/plan", json=PLAN).status_code == 422
    assert client.put(f"/api/v1/patients/{FNR}/plan", json=PLAN).status_code == 404
    _setup(client)
    assert client.put(f"/api/v1/patients/{FNR}/plan", content=b"{oops").status_code == 400


def test_zone_boundaries_components_and_conversion(client, services) -> None:  # type: ignore[no-untyped-def]
    pid = _setup(client)
    assert client.put(f"/api/v1/patients/{FNR}/plan", json=PLAN).status_code == 201
    t = datetime.now(UTC) + timedelta(seconds=60)  # after the plan's start (future skew allowed)
    cases = [
        ("150", "90"),
        ("151", "91"),
        ("170", "100"),
        ("171", "101"),
        ("100", "60"),
        ("90", "60"),
        ("89", "60"),
    ]
    rep = _ingest(
        services, *[_bp(s, d, t - timedelta(seconds=i)) for i, (s, d) in enumerate(cases)]
    )
    assert rep.created == len(cases)
    got = {o["component"][0]["valueQuantity"]["value"]: _zones(o) for o in _obs(client, pid)}
    assert got[150] == [("N", "green"), ("N", "green")]
    assert got[151] == [("H", "yellow"), ("H", "yellow")]
    assert got[170] == [("H", "yellow"), ("H", "yellow")]
    assert got[171] == [("HH", "red"), ("HH", "red")]
    assert got[100] == [("N", "green"), ("N", "green")]
    assert got[90] == [("L", "yellow"), ("N", "green")]
    assert got[89] == [("LL", "red"), ("N", "green")]
    worst = next(o for o in _obs(client, pid) if o["component"][0]["valueQuantity"]["value"] == 171)
    assert worst["interpretation"][0]["coding"][0]["code"] == "HH"
    assert worst["interpretation"][0]["coding"][1] == {
        "system": "https://dho-interop.no/fhir/CodeSystem/zone",
        "code": "red",
        "display": "red",
    }
    # kPa input is converted by the mapping step and triaged in mm[Hg]: 22.8 kPa ≈ 171 mm[Hg]
    _ingest(services, _bp("22.8", "10", t + timedelta(seconds=30), unit="kPa"))
    kpa = next(
        o
        for o in _obs(client, pid)
        if o["component"][0]["valueQuantity"]["value"] == 171 and o["id"] != worst["id"]
    )
    assert _zones(kpa)[0] == ("HH", "red")


def test_plan_in_force_at_effective_time(client, services) -> None:  # type: ignore[no-untyped-def]
    pid = _setup(client)
    before = datetime.now(UTC) - timedelta(hours=2)
    client.put(f"/api/v1/patients/{FNR}/plan", json=PLAN)
    after = datetime.now(UTC)
    # a late-arriving measurement from before the plan: default ranges (home BP, ESH 2023:
    # systolic green up to 134)
    _ingest(services, _bp("145", "70", before), _bp("145", "70", after))
    obs = {o["effectiveDateTime"]: o for o in _obs(client, pid)}
    old, new = (obs[k] for k in sorted(obs))
    assert (
        old["component"][0]["interpretation"][0]["coding"][1]["code"] == "yellow"
    )  # default: 145 > 134
    assert "default" in old["component"][0]["referenceRange"][0]["text"]
    assert "standardgrenser" in old["component"][0]["referenceRange"][0]["text"]
    assert new["component"][0]["interpretation"][0]["coding"][1]["code"] == "green"  # plan: 100–150


def test_task_and_flag_life_cycle(client, services) -> None:  # type: ignore[no-untyped-def]
    pid = _setup(client)
    client.put(f"/api/v1/patients/{FNR}/plan", json=PLAN)
    now = datetime.now(UTC)  # measurements below are 1–4 minutes after the plan's start

    def tasks() -> list[dict]:  # type: ignore[type-arg]
        b = client.get("/fhir/Task", params={"patient": pid}).json()
        return [e["resource"] for e in b.get("entry", []) if e["search"]["mode"] == "match"]

    _ingest(services, _bp("160", "80", now + timedelta(minutes=1)))  # yellow
    [task] = tasks()
    assert task["status"] == "requested" and task["priority"] == "urgent"
    _ingest(services, _bp("180", "80", now + timedelta(minutes=2)))  # red escalates the same Task
    [task] = tasks()
    assert task["priority"] == "asap" and len(task["note"]) == 1
    flags = client.get("/fhir/Flag", params={"patient": pid, "status": "active"}).json()
    assert flags["total"] == 1
    # triage writes its updates without the model validation: what it wrote must still pass it
    flag = client.get("/fhir/Flag", params={"patient": pid}).json()["entry"][0]["resource"]
    validate_resource(task)
    validate_resource(flag)
    _ingest(services, _bp("120", "80", now + timedelta(minutes=3)))  # green: Task stays open
    [task] = tasks()
    assert task["status"] == "requested"
    validate_resource(client.get(f"/fhir/Flag/{flag['id']}").json())
    assert (
        client.get("/fhir/Flag", params={"patient": pid, "status": "active"}).json()["total"] == 0
    )
    task["status"] = "completed"
    task["output"] = [{"type": {"text": "utfall"}, "valueString": "Pasienten er fulgt opp"}]
    assert client.put(f"/fhir/Task/{task['id']}", json=task).status_code == 200
    _ingest(services, _bp("185", "80", now + timedelta(minutes=4)))  # a new red: a new Task
    open_tasks = [t for t in tasks() if t["status"] == "requested"]
    assert (
        len(open_tasks) == 1
        and open_tasks[0]["id"] != task["id"]
        and open_tasks[0]["priority"] == "asap"
    )


def test_default_ranges_without_plan(client, services) -> None:  # type: ignore[no-untyped-def]
    pid = _setup(client)
    hr = Measurement(
        Code(LOINC, "2708-6"),
        Decimal("88"),
        "%",
        datetime.now(UTC) - timedelta(minutes=1),
        REF,
        "x",
    )
    _ingest(services, hr)
    [obs] = _obs(client, pid)
    assert (
        obs["interpretation"][0]["coding"][1]["code"] == "red"
    )  # default SpO2: green ≥96, yellow ≥92


def test_gp_summary_json_and_html(client, services) -> None:  # type: ignore[no-untyped-def]
    _setup(client)
    client.put(f"/api/v1/patients/{FNR}/plan", json=PLAN)
    now = datetime.now(UTC)
    _ingest(
        services,
        *[_bp(str(130 + 12 * (i % 5)), "80", now + timedelta(seconds=10 + i)) for i in range(8)],
    )
    r = client.get(f"/api/v1/patients/{FNR}/summary", params={"view": "gp"})
    assert r.status_code == 200, r.text
    s = r.json()
    sys_ = next(c for c in s["codes"] if c["code"] == "8480-6")
    assert sys_["count"] == 8 and sys_["max"] == 178 and sys_["ranges"]["green"] == [100.0, 150.0]
    assert s["eventCount"]["red"] >= 1 and s["tasks"]
    page = client.get(
        f"/api/v1/patients/{FNR}/summary", params={"view": "gp"}, headers={"Accept": "text/html"}
    )
    assert page.headers["content-type"].startswith("text/html")
    assert "<svg" in page.text and "band-green" in page.text and 'id="events"' in page.text
    assert "mm[Hg]" not in page.text and "(red)" not in page.text and "mmHg" in page.text
    assert f"fødselsnummer {FNR}" in page.text and " kl. " in page.text
    assert "http" not in page.text.split("<body>")[1].replace(
        "http://www.w3.org/2000/svg", ""
    )  # no external assets
    assert client.get(f"/api/v1/patients/{FNR}/summary", params={"view": "nope"}).status_code == 400


def test_missing_measurements_raise_one_task(client, services) -> None:  # type: ignore[no-untyped-def]
    from interop.care.missing import check_missing

    pid = _setup(client)
    plan = {**PLAN, "zones": [{**PLAN["zones"][0], "maxGapHours": 48}]}
    assert client.put(f"/api/v1/patients/{FNR}/plan", json=plan).status_code == 201
    now = datetime.now(UTC)
    assert check_missing(services, now + timedelta(hours=24)) == 0  # within the allowed gap
    assert check_missing(services, now + timedelta(hours=49)) == 1
    assert (
        check_missing(services, now + timedelta(hours=60)) == 0
    )  # idempotent while the Task is open
    tasks = client.get("/fhir/Task", params={"patient": pid}).json()["entry"]
    task = tasks[0]["resource"]
    # Norwegian words for the nurse: the measurement's name, local time, days and hours
    assert task["code"]["text"] == "Manglende måling: Systolisk blodtrykk"
    assert re.fullmatch(
        r"Ingen måling av Systolisk blodtrykk siden \d\d\.\d\d\.\d{4} kl\. \d\d:\d\d "
        r"\(49 timer\); planen tillater høyst 48 timer mellom målingene\.",
        task["description"],
    ), task["description"]
    assert task["input"][0]["valueCode"] == "8480-6"  # the code stays in the data
    # since when it is missing: the last reading's time, in the data and in the words
    from interop.care.deviation_episode import task_since
    from interop.fhir.dates import fhir_instant, from_micros
    from interop.text import local_time

    since = task_since(task)
    assert since is not None and fhir_instant(since) < fhir_instant(task["authoredOn"])
    assert f"siden {local_time(from_micros(fhir_instant(since)))} " in task["description"]
    [flag] = client.get("/fhir/Flag", params={"patient": pid}).json()["entry"]
    flag = flag["resource"]
    assert flag["status"] == "active" and "8480-6" not in flag["code"]["text"]
    assert flag["code"]["text"].startswith("Manglende måling: Systolisk blodtrykk siden ")
    assert {"system": "http://loinc.org", "code": "8480-6"}.items() <= flag["code"]["coding"][
        0
    ].items()
    # a Flag a clinician wrote about the same measurement is not the service's to end
    theirs = client.post(
        "/fhir/Flag",
        json={
            "resourceType": "Flag",
            "status": "active",
            "code": {
                "coding": [{"system": "http://loinc.org", "code": "8480-6"}],
                "text": "Følg blodtrykket nøye",
            },
            "subject": {"reference": f"Patient/{pid}"},
        },
    ).json()["id"]
    _ingest(services, _bp("130", "80", now + timedelta(minutes=1)))
    assert check_missing(services, now + timedelta(hours=40)) == 0  # measured again
    # the reading ended the Flag that said it was missing, and only that one
    flag = client.get(f"/fhir/Flag/{flag['id']}").json()
    assert flag["status"] == "inactive" and flag["period"]["end"]
    assert client.get(f"/fhir/Flag/{theirs}").json()["status"] == "active"


def test_a_reading_ends_missing_flags_written_before_they_carried_their_kind(
    client, services
) -> None:  # type: ignore[no-untyped-def]
    """Missing-measurement Flags as the service wrote them before they carried their kind
    coding (Norwegian words and the LOINC coding, 06.12.2026; English words, earlier) are
    ended by a reading of the measurement, like today's; a clinician's Flag in other words
    about the same measurement is not."""
    pid = _setup(client)
    assert client.put(f"/api/v1/patients/{FNR}/plan", json=PLAN).status_code == 201
    systolic = {"system": "http://loinc.org", "code": "8480-6", "display": "Systolisk blodtrykk"}
    category = [
        {
            "coding": [
                {
                    "system": "http://terminology.hl7.org/CodeSystem/flag-category",
                    "code": "clinical",
                }
            ]
        }
    ]

    def flag(code: dict[str, Any]) -> str:
        body = {
            "resourceType": "Flag",
            "status": "active",
            "category": category,
            "code": code,
            "subject": {"reference": f"Patient/{pid}"},
            "period": {"start": "2026-12-06T13:05:00Z"},
        }
        r = client.post("/fhir/Flag", json=body)
        assert r.status_code == 201, r.text
        return str(r.json()["id"])

    norwegian = flag(
        {
            "coding": [systolic],
            "text": "Manglende måling: Systolisk blodtrykk siden 06.12.2026 kl. 14:05",
        }
    )
    english = flag({"text": "no data for 8480-6 since 2026-12-04T08:00:00+00:00"})
    other_measurement = flag(
        {
            "coding": [{"system": "http://loinc.org", "code": "2708-6"}],
            "text": "Manglende måling: Oksygenmetning (SpO2) siden 06.12.2026 kl. 14:05",
        }
    )
    theirs = flag(
        {"coding": [systolic], "text": "Manglende måling: Systolisk blodtrykk – ring pasienten"}
    )
    _ingest(services, _bp("130", "80", datetime.now(UTC) - timedelta(minutes=1)))
    status = {f: client.get(f"/fhir/Flag/{f}").json()["status"] for f in (norwegian, english)}
    assert status == {norwegian: "inactive", english: "inactive"}
    assert client.get(f"/fhir/Flag/{other_measurement}").json()["status"] == "active"
    assert client.get(f"/fhir/Flag/{theirs}").json()["status"] == "active"


@pytest.mark.parametrize(
    ("after_hours", "gap"),
    [(33.6, "33 timer"), (24.5, "mer enn 24 timer"), (106, "4,4 døgn")],
)
def test_missing_measurement_text_tells_the_gap_as_it_is(  # type: ignore[no-untyped-def]
    client, services, after_hours: float, gap: str
) -> None:
    """A gap of 1,4 days beside a plan's "høyst 24 timer" reads "33 timer", never "1 døgn"
    (less than the limit it passed); a gap that whole hours would show as the limit reads
    "mer enn 24 timer"; a long one in days with a decimal comma."""
    from interop.care.missing import check_missing

    pid = _setup(client)
    plan = {**PLAN, "zones": [{**PLAN["zones"][0], "maxGapHours": 24}]}
    assert client.put(f"/api/v1/patients/{FNR}/plan", json=plan).status_code == 201
    assert check_missing(services, datetime.now(UTC) + timedelta(hours=after_hours)) == 1
    [task] = client.get("/fhir/Task", params={"patient": pid}).json()["entry"]
    description = task["resource"]["description"]
    assert f"({gap}); planen tillater høyst 24 timer mellom" in description, description


def test_completing_a_missing_measurement_task_leaves_a_red_flag(client, services) -> None:  # type: ignore[no-untyped-def]
    """A nurse closing the "measurement missing" Task for blood pressure does not end the red
    zone Flag of the same measurement: it stays while the patient is red."""
    from interop.care.missing import check_missing

    pid = _setup(client)
    plan = {**PLAN, "zones": [{**PLAN["zones"][0], "maxGapHours": 48}]}
    assert client.put(f"/api/v1/patients/{FNR}/plan", json=plan).status_code == 201
    now = datetime.now(UTC)
    _ingest(services, _bp("190", "80", now - timedelta(minutes=1)))  # red, then nothing
    assert check_missing(services, now + timedelta(hours=49)) == 1
    flags = [
        e["resource"] for e in client.get("/fhir/Flag", params={"patient": pid}).json()["entry"]
    ]
    from interop.care.triage import MISSING_CODE, flag_kind, task_kind

    red = next(f for f in flags if flag_kind(f) == "assess-deviation")
    missing = next(f for f in flags if flag_kind(f) == MISSING_CODE)
    tasks = [
        e["resource"] for e in client.get("/fhir/Task", params={"patient": pid}).json()["entry"]
    ]
    task = next(t for t in tasks if task_kind(t) == MISSING_CODE)
    done = client.post(
        f"/api/v1/worklist/tasks/{task['id']}/actions",
        json={"action": "complete", "outcome": "ingen-tiltak"},
    )
    assert done.status_code == 200, done.text
    assert client.get(f"/fhir/Flag/{missing['id']}").json()["status"] == "inactive"
    assert client.get(f"/fhir/Flag/{red['id']}").json()["status"] == "active"


def test_a_flag_is_found_by_its_measurement_code_never_by_a_substring() -> None:
    from interop.care.triage import flag_is_about

    coded = {"code": {"coding": [{"system": "http://loinc.org", "code": "12708-6"}]}}
    assert flag_is_about(coded, "12708-6") and not flag_is_about(coded, "2708-6")
    # Flags written before the code was data: the code as their text held it
    legacy = {"code": {"text": "Rød sone: Oksygenmetning (SpO2) (12708-6) siden 01.12.2026"}}
    assert flag_is_about(legacy, "12708-6") and not flag_is_about(legacy, "2708-6")
    old_missing = {"code": {"text": "no data for 8480-6 for 3 days"}}
    assert flag_is_about(old_missing, "8480-6") and not flag_is_about(old_missing, "480-6")


def test_fhir_summary_bundle(client, services) -> None:  # type: ignore[no-untyped-def]
    pid = _setup(client)
    client.put(f"/api/v1/patients/{FNR}/plan", json=PLAN)
    now = datetime.now(UTC)
    _ingest(
        services, *[_bp(str(130 + 20 * i), "80", now + timedelta(seconds=10 + i)) for i in range(3)]
    )
    r = client.get(f"/fhir/Patient/{pid}/$summary", params={"view": "gp"})
    assert r.status_code == 200, r.text
    b = r.json()
    assert b["resourceType"] == "Bundle" and b["type"] == "collection"
    stats = {
        e["resource"]["code"]["coding"][0]["code"]: e["resource"]
        for e in b["entry"]
        if e["resource"]["resourceType"] == "Observation"
    }
    comps = {
        c["code"]["coding"][0]["code"]: c["valueQuantity"]["value"]
        for c in stats["8480-6"]["component"]
    }
    assert comps == {"minimum": 130.0, "average": 150.0, "maximum": 170.0, "count": 3}
    assert any(e["resource"]["resourceType"] == "Task" for e in b["entry"])
    assert client.get("/fhir/Patient/nope/$summary").status_code == 404


def test_epj_note_plan_actions_and_scheduled_adherence(client, services) -> None:  # type: ignore[no-untyped-def]
    _setup(client)
    plan = {**PLAN, "zones": [{**PLAN["zones"][0], "maxGapHours": 24}]}
    client.put(f"/api/v1/patients/{FNR}/plan", json=plan)
    now = datetime.now(UTC)
    _ingest(services, _bp("185", "80", now + timedelta(seconds=30)))
    s = client.get(f"/api/v1/patients/{FNR}/summary", params={"view": "epj"}).json()
    assert "Systolisk blodtrykk: siste 185" in s["note"] and "godkjent plan" in s["note"]
    assert s["plan"]["8480-6"]["actions"]["red"] == "Ring lege"
    assert s["adherenceBasis"].startswith("scheduled") and 0 < s["adherence"] <= 1
    red = [e for e in s["events"] if e["zone"] == "red"]
    assert red and red[0]["actions"] == ["Task requested"]


def test_hospital_view_follows_the_episode(client, services) -> None:  # type: ignore[no-untyped-def]
    pid = _setup(client)
    now = datetime.now(UTC)
    spo2 = Measurement(Code(LOINC, "2708-6"), Decimal("93"), "%", now - timedelta(days=1), REF, "x")
    _ingest(services, _bp("130", "80", now - timedelta(days=1)), spo2)
    codes = {
        c["code"]
        for c in client.get(f"/api/v1/patients/{FNR}/summary", params={"view": "hospital"}).json()[
            "codes"
        ]
    }
    assert {"8480-6", "2708-6"} <= codes
    client.post(
        "/fhir/EpisodeOfCare",
        json={
            "resourceType": "EpisodeOfCare",
            "status": "active",
            "patient": {"reference": f"Patient/{pid}"},
            "type": [{"text": "COPD"}],
        },
    )
    codes = {
        c["code"]
        for c in client.get(f"/api/v1/patients/{FNR}/summary", params={"view": "hospital"}).json()[
            "codes"
        ]
    }
    assert codes == {"2708-6"}  # a COPD episode: SpO2, pulse, respiration, temperature — no BP


def test_a_long_deviation_keeps_the_task_small() -> None:
    """Every yellow value on an open Task adds a note; only the latest ones are kept (the
    values themselves stay Observations), so a months-long deviation cannot bloat the Task."""
    from interop.care.triage import MAX_TASK_NOTES, _append_note

    notes: list[dict[str, str]] = []
    for i in range(MAX_TASK_NOTES + 15):
        notes = _append_note(notes, {"text": f"n{i}"})
    assert len(notes) == MAX_TASK_NOTES
    assert notes[-1]["text"] == f"n{MAX_TASK_NOTES + 14}" and notes[0]["text"] == "n15"


def test_a_plan_set_by_another_process_is_used_at_once(client, services, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """Triage caches each patient's plans, but a plan written by another process (the API
    beside a worker, or a second API worker) is used for the very next reading: the plan write
    moves the shared generation, and a cache read at an older one is not used."""
    import interop.care.triage as triage_module
    from interop.care.plans import put_plan
    from interop.services import Services, wire_store
    from interop.store.repository import FhirStore

    pid = _setup(client)
    clock = [triage_module.time.monotonic()]
    monkeypatch.setattr(triage_module.time, "monotonic", lambda: clock[0])
    _ingest(services, _bp("145", "70", datetime.now(UTC) - timedelta(minutes=30)))

    other_store = FhirStore(services.engine, zone=services.settings.timezone)
    wire_store(other_store)  # a second process: its own triage, its own cache
    other = Services(services.settings, services.engine, other_store, services.search, None)  # type: ignore[arg-type]
    put_plan(other, FNR, PLAN, ADMIN)
    after_plan = datetime.now(UTC)

    _ingest(services, _bp("145", "70", after_plan))  # well within the cache's time
    clock[0] += triage_module.PLAN_CACHE_SECONDS + 1
    _ingest(services, _bp("145", "70", after_plan + timedelta(milliseconds=1)))
    zones = [o["component"][0]["interpretation"][0]["coding"][1]["code"] for o in _obs(client, pid)]
    # the defaults (home BP, systolic green up to 134) before the plan, its green 100-150 after
    assert zones == ["yellow", "green", "green"]
