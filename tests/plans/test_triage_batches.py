"""Triage of many readings written together (group-committed creates, transaction Bundles):
what triage and reference integrity need for all the batch's patients is read once per batch,
and every reading still gets exactly the zone it gets when written alone, on its own patient,
with what earlier entries of the same batch wrote (a plan, an open Task or Flag) seen by later
ones as before."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest
from sqlalchemy import event, select

from interop.access.actor import ADMIN
from interop.bench.data import fnr_for
from interop.care.plans import PLAN_CATEGORY, ZoneIn, goal_resource
from interop.care.triage import SEVERITY_URL
from interop.fhir.dates import format_instant
from interop.fhir.outcome import FhirError
from interop.store.context import Door, WriteContext
from interop.store.schema import token_table
from tests.address_book import FNR_OID, HPR_OID, PLAN_GP_HPR
from tests.plans.test_triage_every_path import LOINC, ZONE, _matches, spo2

SPO2_PLAN_A = {"code": "2708-6", "unit": "%", "green": {"low": 90}, "yellow": {"low": 85}}
SPO2_PLAN_B = {"code": "2708-6", "unit": "%", "green": {"low": 96}, "yellow": {"low": 93}}
VALUES = (91, 95, 89, 87)
EXPECTED = {
    "A": ["green", "green", "yellow", "yellow"],  # its plan: green ≥ 90, yellow ≥ 85
    "B": ["red", "yellow", "red", "red"],  # its plan: green ≥ 96, yellow ≥ 93
    "C": ["red", "green", "red", "red"],  # no plan, defaults: green ≥ 94, yellow ≥ 92
    "D": ["green", "green", "green", "yellow"],  # no plan, KOLS defaults: green ≥ 88, yellow ≥ 85
}
"""The zone of each of :data:`VALUES` (SpO2 %) for each patient."""


def _now(minutes: float = 0) -> str:
    return format_instant(datetime.now(UTC) - timedelta(minutes=minutes))


def _soon(seconds: float) -> str:
    """A reading's time just after now (after the plans the test set up took effect, within
    the clock skew allowed)."""
    return format_instant(datetime.now(UTC) + timedelta(seconds=seconds))


def _weight(pid: str, kg: float) -> dict[str, Any]:
    """A body weight: no plan threshold and no default, so never assessed."""
    obs = spo2(pid, 0)
    obs["code"] = {"coding": [{"system": LOINC, "code": "29463-7"}]}
    obs["valueQuantity"] = {
        "value": kg,
        "unit": "kg",
        "system": "http://unitsofmeasure.org",
        "code": "kg",
    }
    return obs


def _patients(client: Any, first: int = 0) -> dict[str, str]:
    """Five patients with the same GP: A and B with SpO2 plans of their own, C without a
    plan, D without a plan in the KOLS group (its episode), E without a plan (weights).
    ``first``: the first of their synthetic national ids (another five: another ``first``)."""
    gps = _matches(client, "/fhir/Practitioner", identifier=f"{HPR_OID}|{PLAN_GP_HPR}")
    if gps:
        gp_id = gps[0]["id"]
    else:
        gp = client.post(
            "/fhir/Practitioner",
            json={
                "resourceType": "Practitioner",
                "identifier": [{"system": HPR_OID, "value": PLAN_GP_HPR}],
            },
        )
        assert gp.status_code == 201, gp.text
        gp_id = gp.json()["id"]
    out: dict[str, str] = {}
    for i, name in enumerate("ABCDE"):
        r = client.post(
            "/fhir/Patient",
            json={
                "resourceType": "Patient",
                "identifier": [{"system": FNR_OID, "value": fnr_for(first + i)}],
                "generalPractitioner": [{"reference": f"Practitioner/{gp_id}"}],
            },
        )
        assert r.status_code == 201, r.text
        out[name] = r.json()["id"]
    for name, zone in (("A", SPO2_PLAN_A), ("B", SPO2_PLAN_B)):
        fnr = fnr_for(first + "AB".index(name))
        body = {"approvedBy": {"hpr": PLAN_GP_HPR}, "zones": [zone]}
        r = client.put(f"/api/v1/patients/{fnr}/plan", json=body)
        assert r.status_code == 201, r.text
    episode = {
        "resourceType": "EpisodeOfCare",
        "status": "active",
        "type": [{"coding": [{"system": "http://snomed.info/sct", "code": "13645005"}]}],
        "patient": {"reference": f"Patient/{out['D']}"},
    }
    assert client.post("/fhir/EpisodeOfCare", json=episode).status_code == 201
    return out


def _zones(services: Any, ids: list[str]) -> list[str | None]:
    """The computed zone of each Observation (its ``zone`` index row), in order."""
    t = token_table.c
    with services.engine.connect() as conn:
        rows = dict(
            conn.execute(
                select(t.res_id, t.code).where(
                    t.res_type == "Observation", t.param == "zone", t.res_id.in_(ids)
                )
            ).all()
        )
    return [rows.get(i) for i in ids]


def _mixed(pids: dict[str, str]) -> list[tuple[str, dict[str, Any]]]:
    """The readings of all patients interleaved (A, B, C, D, E, A, B …), each with its
    patient's letter."""
    out = []
    for k, value in enumerate(VALUES):
        for name in "ABCD":
            out.append((name, spo2(pids[name], value, when=_soon(1 + k))))
        out.append(("E", _weight(pids["E"], 70 + k)))
    return out


def _check(client: Any, services: Any, pids: dict[str, str], written: list[tuple[str, str]]):  # type: ignore[no-untyped-def]
    """Each reading on its patient, in the zone :data:`EXPECTED` gives it (E: not assessed,
    one thresholds-missing Task); every Task about its own patient's reading."""
    ids = [oid for _name, oid in written]
    zones = _zones(services, ids)
    got: dict[str, list[str | None]] = {}
    for (name, oid), zone in zip(written, zones, strict=True):
        back = client.get(f"/fhir/Observation/{oid}").json()
        assert back["subject"]["reference"] == f"Patient/{pids[name]}"
        got.setdefault(name, []).append(zone)
    assert {k: v for k, v in got.items() if k != "E"} == EXPECTED
    assert got["E"] == ["not-assessed"] * len(VALUES)
    owner = {oid: pids[name] for name, oid in written}
    for task in _matches(client, "/fhir/Task", _count="200"):
        focus = task["focus"]["reference"].split("/", 1)[1]
        assert task["for"]["reference"] == f"Patient/{owner[focus]}"
    [missing] = [
        t
        for t in _matches(client, "/fhir/Task", patient=pids["E"])
        if "Grenseverdier mangler" in t["code"]["text"]
    ]
    assert missing["focus"]["reference"] == f"Observation/{written[4][1]}"


def test_each_reading_alone_gets_its_patients_zone(client, services) -> None:  # type: ignore[no-untyped-def]
    pids = _patients(client)
    written = []
    for name, obs in _mixed(pids):
        r = client.post("/fhir/Observation", json=obs)
        assert r.status_code == 201, r.text
        written.append((name, r.json()["id"]))
    _check(client, services, pids, written)


def test_a_group_committed_batch_judges_each_reading_as_if_alone(client, services) -> None:  # type: ignore[no-untyped-def]
    """What group commit makes of concurrent creates: one ``create_many`` in one transaction
    for readings of several patients, with different plans, defaults and none."""
    pids = _patients(client)
    readings = _mixed(pids)
    with services.store.write(WriteContext(ADMIN, Door.FHIR)) as tx:
        stored = tx.create_many([(obs, None) for _name, obs in readings], validate=False)
    written = [(name, s.res_id) for (name, _obs), s in zip(readings, stored, strict=True)]
    _check(client, services, pids, written)


def test_a_transaction_bundle_judges_each_reading_as_if_alone(client, services) -> None:  # type: ignore[no-untyped-def]
    pids = _patients(client)
    readings = _mixed(pids)
    r = client.post("/fhir", json=_bundle("transaction", [obs for _name, obs in readings]))
    assert r.status_code == 200, r.text
    ids = [e["response"]["location"].split("/")[1] for e in r.json()["entry"]]
    _check(
        client, services, pids, [(name, oid) for (name, _o), oid in zip(readings, ids, strict=True)]
    )


def _bundle(kind: str, resources: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "resourceType": "Bundle",
        "type": kind,
        "entry": [
            {
                "fullUrl": f"urn:uuid:00000000-0000-4000-8000-{i:012d}",
                "resource": res,
                "request": {"method": "POST", "url": res["resourceType"]},
            }
            for i, res in enumerate(resources)
        ],
    }


def _plan_resources(pid: str, zone: dict[str, Any], start: str) -> list[dict[str, Any]]:
    """A Goal and an active egenbehandlingsplan CarePlan naming it (``urn:uuid`` entries 0, 1
    of a transaction)."""
    goal = goal_resource(ZoneIn.model_validate(zone), f"Patient/{pid}", start)
    plan = {
        "resourceType": "CarePlan",
        "status": "active",
        "intent": "plan",
        "category": [{"coding": [PLAN_CATEGORY]}],
        "subject": {"reference": f"Patient/{pid}"},
        "period": {"start": start},
        "goal": [{"reference": "urn:uuid:00000000-0000-4000-8000-000000000000"}],
    }
    return [goal, plan]


def test_a_plan_earlier_in_a_transaction_judges_its_readings(client, services) -> None:  # type: ignore[no-untyped-def]
    """A Bundle with a plan and then readings of its patient (and of another, which the plan
    does not judge): the readings are judged by that plan, not by the defaults before it."""
    pids = _patients(client)
    start = _now(5)
    readings = [spo2(pids["C"], 91, when=_soon(1)), spo2(pids["B"], 91, when=_soon(1))]
    r = client.post(
        "/fhir",
        json=_bundle("transaction", [*_plan_resources(pids["C"], SPO2_PLAN_A, start), *readings]),
    )
    assert r.status_code == 200, r.text
    ids = [e["response"]["location"].split("/")[1] for e in r.json()["entry"]]
    # C's new plan: 91 is green (the defaults made it red); B keeps its own plan: red
    assert _zones(services, ids[2:]) == ["green", "red"]
    # the next reading, in a transaction of its own, is judged by the committed plan
    r = client.post("/fhir/Observation", json=spo2(pids["C"], 91, when=_soon(2)))
    assert _zones(services, [r.json()["id"]]) == ["green"]


def test_a_second_red_reading_in_a_batch_escalates_the_first_ones_task(client, services) -> None:  # type: ignore[no-untyped-def]
    """Two readings of one patient in one batch: the yellow one opens a Task and a Flag, the
    red one after it escalates them — one Task, one Flag, both red — as when sent one by one."""
    pids = _patients(client)
    c, b = pids["C"], pids["B"]
    batch = [
        (spo2(c, 93, when=_soon(1)), None),  # yellow by the defaults
        (spo2(b, 95, when=_soon(1)), None),  # another patient between them (yellow by its plan)
        (spo2(c, 85, when=_soon(2)), None),  # red
    ]
    with services.store.write(WriteContext(ADMIN, Door.FHIR)) as tx:
        stored = tx.create_many(batch, validate=False)
    [task] = _matches(client, "/fhir/Task", patient=c)
    assert task["priority"] == "asap" and task["focus"]["reference"] == (
        f"Observation/{stored[2].res_id}"
    )
    assert len(task["note"]) == 1 and task["note"][0]["text"].startswith("Rød måling")
    [flag] = _matches(client, "/fhir/Flag", patient=c, status="active")
    # the zone, then the measurement the Flag is about (found by it; the text is words)
    assert flag["code"]["coding"] == [
        {"system": ZONE, "code": "red"},
        {"system": "http://loinc.org", "code": "2708-6", "display": "Oksygenmetning (SpO2)"},
    ]
    assert "2708-6" not in flag["code"]["text"]
    [other] = _matches(client, "/fhir/Task", patient=b)
    assert other["focus"]["reference"] == f"Observation/{stored[1].res_id}"
    assert other["priority"] == "urgent"


def test_a_reading_for_a_patient_that_is_not_there(client, services) -> None:  # type: ignore[no-untyped-def]
    """In a batch Bundle only that entry is refused; a transaction is refused whole; a
    group-committed batch fails whole (group commit then writes each request alone)."""
    pids = _patients(client)
    good, bad = spo2(pids["C"], 97, when=_now(2)), spo2("no-such-patient", 97, when=_now(2))
    r = client.post("/fhir", json=_bundle("batch", [good, bad, good]))
    assert r.status_code == 200, r.text
    statuses = [e["response"]["status"] for e in r.json()["entry"]]
    assert [s[:3] for s in statuses] == ["201", "422", "201"]
    assert "Patient/no-such-patient" in str(r.json()["entry"][1]["response"]["outcome"])
    before = len(_matches(client, "/fhir/Observation", patient=pids["C"]))
    r = client.post("/fhir", json=_bundle("transaction", [good, bad]))
    assert r.status_code == 422, r.text
    assert "Patient/no-such-patient" in r.text
    with (
        pytest.raises(FhirError) as refused,
        services.store.write(WriteContext(ADMIN, Door.FHIR)) as tx,
    ):
        tx.create_many([(good, None), (bad, None)], validate=False)
    assert refused.value.status == 422
    assert len(_matches(client, "/fhir/Observation", patient=pids["C"])) == before == 2
    # a deleted Patient is not there either, in a batch of readings
    r = client.post(
        "/fhir/Patient",
        json={"resourceType": "Patient", "identifier": [{"system": FNR_OID, "value": fnr_for(9)}]},
    )
    gone = r.json()["id"]
    assert client.delete(f"/fhir/Patient/{gone}").status_code in (200, 204)
    with pytest.raises(FhirError), services.store.write(WriteContext(ADMIN, Door.FHIR)) as tx:
        tx.create_many([(good, None), (spo2(gone, 97, when=_now(2)), None)], validate=False)


def test_a_rolled_back_plan_is_not_kept_in_triages_cache(client, services) -> None:  # type: ignore[no-untyped-def]
    """A transaction that writes a plan, judges a reading by it and is then rolled back leaves
    no trace of that plan in triage's per-process cache: the next reading is judged by the
    defaults again."""
    pids = _patients(client)
    c = pids["C"]

    class Abandon(Exception):
        pass

    start = _now(5)
    goal, plan = _plan_resources(c, SPO2_PLAN_A, start)
    with pytest.raises(Abandon), services.store.write(WriteContext(ADMIN, Door.FHIR)) as tx:
        g = tx.create(goal)
        tx.create({**plan, "goal": [{"reference": f"Goal/{g.res_id}"}]})
        o = tx.create(spo2(c, 91, when=_soon(1)))
        assert tx.context["zone_index"][o.res_id] == "green"  # judged by the plan, in there
        raise Abandon
    # another write moves the shared generation on to the value the rolled-back one gave it
    r = client.post(
        "/fhir/Patient",
        json={"resourceType": "Patient", "identifier": [{"system": FNR_OID, "value": fnr_for(9)}]},
    )
    assert r.status_code == 201, r.text
    r = client.post("/fhir/Observation", json=spo2(c, 91, when=_soon(2)))
    assert _zones(services, [r.json()["id"]]) == ["red"]  # the defaults: no plan was kept


def test_a_batch_reads_its_patients_once(client, services) -> None:  # type: ignore[no-untyped-def]
    """What triage and reference integrity need is read per batch, not per patient: ten
    readings of five patients make no more statements than ten of one patient."""
    pids = _patients(client)

    def statements(names: str) -> int:
        readings = [
            spo2(pids[names[i % len(names)]], 97, when=_soon(i / 100), identifier=[_ident()])
            for i in range(10)
        ]
        return len(_statements_of_batch(services, readings))

    statements("ABCDE")  # the first readings' Tasks and Flags are written now, plans cached
    assert statements("ABCDE") <= statements("C")


def _statements_of_batch(services: Any, readings: list[dict[str, Any]]) -> list[tuple[str, bool]]:
    """The statements (and whether each ran as an executemany) of one group-committed
    ``create_many`` of ``readings``."""
    seen: list[tuple[str, bool]] = []

    def listen(*args: Any) -> None:
        seen.append((args[2], args[5]))

    event.listen(services.engine, "before_cursor_execute", listen)
    try:
        with services.store.write(WriteContext(ADMIN, Door.FHIR)) as tx:
            tx.create_many([(o, None) for o in readings], validate=False)
    finally:
        event.remove(services.engine, "before_cursor_execute", listen)
    return seen


_idents = iter(range(10**6))


def _ident() -> dict[str, str]:
    return {"system": "urn:test:batch", "value": str(next(_idents))}


def test_a_deleted_plan_judges_no_more(client, services) -> None:  # type: ignore[no-untyped-def]
    """A plan deleted through ``/fhir`` is not used for the next reading (the deletion moves
    the shared generation as a new version does, so no process keeps the plan cached)."""
    pids = _patients(client)
    c = pids["C"]
    r = client.post("/fhir", json=_bundle("transaction", _plan_resources(c, SPO2_PLAN_A, _now(5))))
    assert r.status_code == 200, r.text
    plan_id = r.json()["entry"][1]["response"]["location"].split("/")[1]
    r = client.post("/fhir/Observation", json=spo2(c, 91, when=_soon(1)))
    assert _zones(services, [r.json()["id"]]) == ["green"]  # its plan, now cached
    assert client.delete(f"/fhir/CarePlan/{plan_id}").status_code in (200, 204)
    r = client.post("/fhir/Observation", json=spo2(c, 91, when=_soon(2)))
    assert _zones(services, [r.json()["id"]]) == ["red"]  # the defaults again


def test_an_observation_corrected_twice_has_one_zone(client, services) -> None:  # type: ignore[no-untyped-def]
    """Each version's write clears the zone of the version before: one zone row, the
    latest's, after a correction (also when it is written twice in one transaction)."""
    pids = _patients(client)
    c = pids["C"]
    r = client.post("/fhir/Observation", json=spo2(c, 85, when=_now(3)))
    oid = r.json()["id"]
    fixed = {**spo2(c, 97, when=_now(3)), "id": oid, "status": "corrected"}
    assert client.put(f"/fhir/Observation/{oid}", json=fixed).status_code == 200
    with services.store.write(WriteContext(ADMIN, Door.FHIR)) as tx:
        tx.update("Observation", oid, {**fixed, "valueQuantity": {**fixed["valueQuantity"]}})
        tx.update("Observation", oid, {**fixed, "status": "amended"})
    t = token_table.c
    with services.engine.connect() as conn:
        rows = conn.execute(
            select(t.code).where(t.res_type == "Observation", t.param == "zone", t.res_id == oid)
        ).all()
    assert [row[0] for row in rows] == ["green"]
    assert [o["id"] for o in _matches(client, "/fhir/Observation", zone="green")] == [oid]
    assert _matches(client, "/fhir/Observation", zone="red") == []


# ---- the Tasks and Flags of a batch, written together ---------------------------------------

SCENARIO: list[tuple[str, str, float, str]] = [
    # (patient, measurement, value, when): "now+k" a current reading k seconds after now,
    # "late+k" one taken three days ago (late: INTEROP_LATE_AFTER_HOURS is 24)
    ("C", "spo2", 93, "now+1"),  # yellow (defaults): a Task and a Flag
    ("B", "spo2", 95, "now+1"),  # yellow (its plan)
    ("C", "spo2", 85, "now+2"),  # red: escalates C's Task and Flag
    ("C", "spo2", 93, "now+3"),  # yellow again: a note only, the Task and Flag stay red
    ("E", "weight", 70, "now+1"),  # not assessed: one thresholds-missing Task …
    ("E", "weight", 71, "now+2"),  # … per patient and code, not one per reading
    ("A", "spo2", 80, "late+1"),  # late red: a routine Task marked late, no Flag
    ("A", "spo2", 84, "late+2"),  # late red again: a note on it
    ("A", "spo2", 86, "now+1"),  # current yellow (its plan): the Task is current, a Flag
    ("B", "spo2", 97, "now+2"),  # green: B's Flag inactive (its Task stays open)
    ("B", "spo2", 94, "now+3"),  # yellow: a new Flag, a note on the Task
    ("D", "spo2", 95, "late+1"),  # late green: nothing
    ("D", "spo2", 80, "now+2"),  # red (KOLS defaults): escalates D's Task from before
]
"""A batch of readings of five patients, interleaved, each kind of change triage makes."""
BEFORE = ("D", "spo2", 86, "now+0")
"""Written alone before the batch: D's yellow reading (KOLS defaults), its open Task and
Flag, which the batch then changes."""


def _reading(pids: dict[str, str], spec: tuple[str, str, float, str], k: int = 0) -> dict[str, Any]:
    """The reading ``spec`` describes, the ``k``-th of its batch, ``k`` milliseconds later
    still: no two readings of a batch share a time. The summary names a time by the reading
    it was taken from; two readings built within one millisecond (A's and B's "now+1") had
    one name for both, and which one depended on the machine's speed."""
    name, kind, value, when = spec
    base, offset = when.split("+")
    late = 72 * 60 - float(offset) - k / 60_000
    at = _soon(float(offset) + k / 1000) if base == "now" else _now(late)
    if kind == "weight":
        return {**_weight(pids[name], value), "effectiveDateTime": at}
    return spo2(pids[name], value, when=at)


_TIME = re.compile(r"\d\d\.\d\d\.\d{4} kl\. \d\d:\d\d")


def _summary(
    client: Any, services: Any, pids: dict[str, str], ids: list[str]
) -> dict[str, dict[str, Any]]:
    """Per patient (by letter): the zone of each of its readings, its Tasks and Flags with
    what they say, every reference as the letter or the reading's place in the batch, and
    the times as ``<time>`` (the modes run one after the other); no ids, versions or
    ``meta``."""
    letters = {f"Patient/{pid}": name for name, pid in pids.items()}
    places = {f"Observation/{oid}": f"reading {k}" for k, oid in enumerate(ids)}
    places[f"Observation/{ids[-1]}"] = "the reading before"  # BEFORE, written last here
    # a time a Task takes from a reading (its ``since`` input) as that reading's place
    taken = {
        str(client.get(f"/fhir/Observation/{oid}").json()["effectiveDateTime"]): f"time of {place}"
        for oid, place in ((ref.split("/", 1)[1], place) for ref, place in places.items())
    }

    def plain(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: plain(v) for k, v in value.items() if k not in ("id", "meta")}
        if isinstance(value, list):
            return [plain(v) for v in value]
        if isinstance(value, str):
            value = taken.get(value, letters.get(value, places.get(value, value)))
            for ref, place in places.items():
                value = value.replace(ref, place)
            return _TIME.sub("<time>", value)
        return value

    stamps = ("authoredOn", "lastModified", "time", "start", "end")

    def unstamped(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: "<stamp>" if k in stamps else unstamped(v) for k, v in value.items()}
        if isinstance(value, list):
            return [unstamped(v) for v in value]
        return value

    out: dict[str, dict[str, Any]] = {}
    zones = _zones(services, ids)
    for name, pid in pids.items():
        tasks = [unstamped(plain(t)) for t in _matches(client, "/fhir/Task", patient=pid)]
        flags = [unstamped(plain(f)) for f in _matches(client, "/fhir/Flag", patient=pid)]
        mine = [
            (k, zone)
            for k, zone in enumerate(zones)
            if client.get(f"/fhir/Observation/{ids[k]}").json()["subject"]["reference"]
            == f"Patient/{pid}"
        ]
        out[name] = {
            "zones": mine,
            "tasks": sorted(tasks, key=lambda t: orjson.dumps(t, option=orjson.OPT_SORT_KEYS)),
            "flags": sorted(flags, key=lambda f: orjson.dumps(f, option=orjson.OPT_SORT_KEYS)),
        }
    return out


def _run_scenario(client: Any, services: Any, first: int, mode: str) -> dict[str, dict[str, Any]]:
    """:data:`BEFORE` alone, then :data:`SCENARIO` one reading at a time (``alone``), as one
    group-committed ``create_many`` (``batch``) or one transaction Bundle (``bundle``)."""
    pids = _patients(client, first)
    r = client.post("/fhir/Observation", json=_reading(pids, BEFORE))
    assert r.status_code == 201, r.text
    before = r.json()["id"]
    readings = [_reading(pids, spec, k) for k, spec in enumerate(SCENARIO)]
    if mode == "alone":
        ids = []
        for obs in readings:
            r = client.post("/fhir/Observation", json=obs)
            assert r.status_code == 201, r.text
            ids.append(r.json()["id"])
    elif mode == "batch":
        with services.store.write(WriteContext(ADMIN, Door.FHIR)) as tx:
            ids = [s.res_id for s in tx.create_many([(o, None) for o in readings])]
    else:
        r = client.post("/fhir", json=_bundle("transaction", readings))
        assert r.status_code == 200, r.text
        ids = [e["response"]["location"].split("/")[1] for e in r.json()["entry"]]
    return _summary(client, services, pids, [*ids, before])


def test_a_batchs_tasks_and_flags_are_what_its_readings_make_alone(client, services) -> None:  # type: ignore[no-untyped-def]
    """The Tasks and Flags of a batch are written together at its end: what each patient
    has after it — every Task's priority, description, focus, zone, notes and late mark,
    every Flag's status and zone — is what the same readings make sent one at a time, for a
    group-committed batch and for a transaction Bundle alike."""
    alone = _run_scenario(client, services, 10, "alone")
    assert _run_scenario(client, services, 20, "batch") == alone
    assert _run_scenario(client, services, 30, "bundle") == alone
    # and what that is, patient by patient
    c, a, b, d, e = (alone[k] for k in "CABDE")
    [c_task] = c["tasks"]
    assert c_task["priority"] == "asap" and c_task["focus"]["reference"] == "reading 2"
    assert c_task["description"].startswith("Rød måling")
    assert [n["text"][:4] for n in c_task["note"]] == ["Rød ", "Gul "]
    [c_flag] = c["flags"]
    assert c_flag["status"] == "active" and c_flag["code"]["coding"][0]["code"] == "red"
    [missing] = e["tasks"]
    assert "Grenseverdier mangler" in missing["code"]["text"]
    assert missing["focus"]["reference"] == "reading 4" and e["flags"] == []
    [a_task] = a["tasks"]  # late, then current: no longer only late
    assert a_task["priority"] == "urgent" and "businessStatus" not in a_task
    assert a_task["focus"]["reference"] == "reading 8" and len(a_task["note"]) == 2
    assert [f["code"]["coding"][0]["code"] for f in a["flags"]] == ["yellow"]
    [b_task] = b["tasks"]
    assert b_task["status"] == "requested" and b_task["focus"]["reference"] == "reading 10"
    assert sorted(f["status"] for f in b["flags"]) == ["active", "inactive"]
    [d_task] = d["tasks"]  # written before the batch, escalated by it
    assert d_task["priority"] == "asap" and d_task["focus"]["reference"] == "reading 12"
    assert [f["code"]["coding"][0]["code"] for f in d["flags"]] == ["red"]
    assert d["zones"] == [(11, "green"), (12, "red"), (13, "yellow")]


def test_a_late_batch_raises_routine_tasks_only(client, services) -> None:  # type: ignore[no-untyped-def]
    """Late readings in a batch (a gateway's backlog): red or yellow ones raise a routine
    Task marked late per patient and code, with a note per reading, and no Flag — as alone."""
    pids = _patients(client)
    readings = [
        spo2(pids[name], value, when=_now(72 * 60 - k))
        for k, (name, value) in enumerate([("C", 85), ("B", 90), ("C", 93), ("C", 97)])
    ]
    with services.store.write(WriteContext(ADMIN, Door.FHIR)) as tx:
        tx.create_many([(o, None) for o in readings], validate=False)
    for name, notes in (("C", 1), ("B", 0)):
        [task] = _matches(client, "/fhir/Task", patient=pids[name])
        assert task["priority"] == "routine", name
        assert task["businessStatus"]["coding"][0]["code"] == "late"
        assert len(task.get("note", [])) == notes
        assert _matches(client, "/fhir/Flag", patient=pids[name]) == []


def test_a_batch_writes_its_tasks_with_one_statement_per_table(client, services) -> None:  # type: ignore[no-untyped-def]
    """A batch of yellow readings of patients who have an open Task each changes all those
    Tasks with as many statements as one patient's reading does: writing them does not
    grow with the batch."""
    pids = _patients(client)

    def written(patients: list[str], value: float, k: int) -> tuple[int, int]:
        """(statements, resource rows updated one at a time) of one batch."""
        readings = [spo2(p, value, when=_soon(k + i / 100)) for i, p in enumerate(patients)]
        seen = _statements_of_batch(services, readings)
        single_updates = sum(
            1 for sql, many in seen if sql.lstrip().upper().startswith("UPDATE") and not many
        )
        return len(seen), single_updates

    four = [pids[n] for n in "ABCD"]
    one = [pids["C"]]
    written(four, 86, 1)  # yellow or red for each: their Tasks and Flags are opened
    written(one, 86, 2)
    many, many_single = written(four, 86, 3)  # each patient's Task gets a note
    few, _ = written(one, 86, 4)
    assert many <= few
    assert many_single <= 1  # on SQLite an executemany; on PostgreSQL one statement in all
    for p in four:
        [task] = _matches(client, "/fhir/Task", patient=p)
        assert len(task.get("note", [])) == (3 if p == pids["C"] else 1)  # C: in every batch


def _questionnaire(pid: str, zone: str, minutes: float) -> dict[str, Any]:
    """A questionnaire response the source's own flow judged ``zone`` (as an ingest builds
    it: ``source-severity``)."""
    return {
        "resourceType": "QuestionnaireResponse",
        "status": "completed",
        "questionnaire": "urn:test:kol-daily",
        "_questionnaire": {
            "extension": [
                {
                    "url": "http://hl7.org/fhir/StructureDefinition/display",
                    "valueString": "KOL daglig",
                }
            ]
        },
        "subject": {"reference": f"Patient/{pid}"},
        "authored": _now(minutes),
        "extension": [{"url": SEVERITY_URL, "valueCoding": {"code": zone}}],
    }


def test_questionnaires_of_one_ingest_share_their_task(client, services) -> None:  # type: ignore[no-untyped-def]
    """Two judged answers to one questionnaire in one ingest batch (a yellow, then a red one)
    raise one Task, escalated by the second, with the same content as when they come in two
    ingests; another patient's answer in between gets its own."""
    outcomes = []
    for first, together in ((10, False), (20, True)):
        pids = _patients(client, first)
        answers = [
            _questionnaire(pids["C"], "yellow", 3),
            _questionnaire(pids["B"], "yellow", 3),
            _questionnaire(pids["C"], "red", 2),
        ]
        batches = [answers] if together else [[a] for a in answers]
        for batch in batches:
            with services.store.write(WriteContext(ADMIN, Door.INGEST)) as tx:
                tx.context["triage"] = True  # as the ingest pipeline builds them
                tx.create_many([(a, None) for a in batch], validate=False)
        [task] = _matches(client, "/fhir/Task", patient=pids["C"])
        [other] = _matches(client, "/fhir/Task", patient=pids["B"])
        assert task["priority"] == "asap" and other["priority"] == "urgent"
        assert len(task["note"]) == 1 and "note" not in other
        outcomes.append(
            [
                {k: _TIME.sub("<time>", str(t[k])) for k in ("priority", "description", "code")}
                for t in (task, other)
            ]
        )
    assert outcomes[0] == outcomes[1]
