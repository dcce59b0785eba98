"""The demo's story, told after its history is loaded (``interop demo``), so that today's
worklist and today's messages to GPs are about today:

* plans: every patient past the start-up period has an egenbehandlingsplan approved by their
  GP (recorded by the demo in the GP's name, as a follow-up nurse records an approval given
  elsewhere): the default ranges where they exist, personal ranges for weight (around the
  patient's own weight) and blood glucose; the defaults are those of the patient's group
  (kols: SpO2 88-92 %). The plans are approved before the history is
  loaded and are in force from its start (:func:`approve_plans`), so every reading of theirs,
  red ones included, is judged by the patient's plan, never by the default ranges;
* the start-up period (*oppstartsperiode*): every tenth patient began
  :data:`STARTUP_DAYS` days ago and has no plan yet — the default ranges judge them;
* what was done before today: the deviations the history raised for patients with a plan are
  closed as a follow-up nurse closed them (the patient was called; thresholds added to the
  plan), so the worklist shows today's patients;
* deteriorating now: a few patients with a plan send a red reading within the last hour;
* a hospital episode: the first heart-failure patient is followed by the hospital's clinic
  (an active EpisodeOfCare), so the hospital's view has someone to show.

The numbers here are simulation parameters of a synthetic data set, not clinical advice.
"""

from __future__ import annotations

import statistics
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

import orjson
from sqlalchemy import select

from adapters.base import FNR_OID, LOINC, AdapterResult, Code, IngestMeta, Measurement, PatientRef
from interop.access.actor import Actor
from interop.care.default_thresholds import defaults_for
from interop.care.deviations import Person, complete
from interop.care.plans import plan_versions, put_plan
from interop.care.triage import OPEN_TASK, TASK_CODE_SYSTEM
from interop.demo import DEMO_SOURCE_SYSTEM, Condition, DemoDataSet, DemoPatient
from interop.fhir.dates import format_instant
from interop.ingest.pipeline import IngestPipeline
from interop.services import Services
from interop.store.context import Door, WriteContext
from interop.store.schema import resource_table

STARTUP_DAYS = 12
STARTUP_EVERY = 10
"""Patients ``index % 10 == 9`` are in their start-up period."""
PLAN_CODES: dict[Condition, tuple[str, ...]] = {
    Condition.COPD: ("2708-6", "8867-4", "8310-5"),
    Condition.HEART_FAILURE: ("29463-7", "8480-6", "8462-4", "8867-4", "2708-6"),
    Condition.DIABETES: ("14743-9", "29463-7", "8480-6", "8462-4"),
    Condition.HYPERTENSION: ("8480-6", "8462-4", "8867-4"),
}
WEIGHT_GREEN_KG, WEIGHT_YELLOW_KG = Decimal("2"), Decimal("3.5")
GLUCOSE = {"green": (Decimal("4"), Decimal("10")), "yellow": (Decimal("3.5"), Decimal("15"))}
DETERIORATING: dict[Condition, tuple[str, Decimal, str]] = {
    Condition.COPD: ("2708-6", Decimal("83"), "%"),
    Condition.HEART_FAILURE: ("8867-4", Decimal("128"), "/min"),
    Condition.HYPERTENSION: ("8867-4", Decimal("131"), "/min"),
}
"""A red reading now, per condition (one patient of each)."""
DEMO_ACTOR = Actor(id="demo", role="admin", name="interop demo")
PLAN_BEFORE_HISTORY = timedelta(days=1)
"""How long before a patient's first loaded reading the GP approved their plan."""


def in_startup(patient: DemoPatient) -> bool:
    return int(patient.key.rsplit("-", 1)[1]) % STARTUP_EVERY == STARTUP_EVERY - 1


def startup_cut(data: DemoDataSet, now: datetime) -> list[Measurement]:
    """The measurements to load: patients in their start-up period only from its start."""
    start = now - timedelta(days=STARTUP_DAYS)
    startup = {p.fnr for p in data.patients if in_startup(p)}
    return [m for m in data.measurements if m.patient.value not in startup or m.effective >= start]


def _gp_hpr(data: DemoDataSet) -> dict[str, str]:
    """PractitionerRole id → the GP's HPR number."""
    practitioners = {
        r["id"]: next(i["value"] for i in r["identifier"] if i["system"].endswith(".4.4"))
        for r in data.of_type("Practitioner")
    }
    return {
        r["id"]: practitioners[r["practitioner"]["reference"].split("/", 1)[1]]
        for r in data.of_type("PractitionerRole")
        if r.get("practitioner", {}).get("reference", "").startswith("Practitioner/")
    }


def _median_weight(data: DemoDataSet, patient: DemoPatient) -> Decimal | None:
    values = [
        m.value
        for m in data.measurements
        if m.patient.value == patient.fnr and m.code.code == "29463-7" and m.value is not None
    ]
    return Decimal(str(round(statistics.median(values), 1))) if values else None


def _range(bounds: tuple[Decimal | None, Decimal | None]) -> dict[str, str]:
    return {k: str(v) for k, v in zip(("low", "high"), bounds, strict=True) if v is not None}


def _zones(data: DemoDataSet, patient: DemoPatient) -> list[dict[str, Any]]:
    # the defaults of the patient's own group where the mapping has one (kols: SpO2 88-92 %,
    # not the 94-98 % for those not at risk of hypercapnia, which put every COPD patient in
    # the red all month)
    defaults = defaults_for(frozenset({patient.condition.value}))
    zones: list[dict[str, Any]] = []
    for code in PLAN_CODES[patient.condition]:
        green: tuple[Decimal | None, Decimal | None]
        yellow: tuple[Decimal | None, Decimal | None]
        if code == "29463-7":
            weight = _median_weight(data, patient)
            if weight is None:
                continue
            green = (weight - WEIGHT_GREEN_KG, weight + WEIGHT_GREEN_KG)
            yellow = (weight - WEIGHT_YELLOW_KG, weight + WEIGHT_YELLOW_KG)
            unit = "kg"
        elif code == "14743-9":
            green, yellow, unit = GLUCOSE["green"], GLUCOSE["yellow"], "mmol/L"
        elif code in defaults:
            r = defaults[code]
            green, yellow, unit = r.green, r.yellow, r.unit
        else:
            continue
        zones.append(
            {
                "code": code,
                "unit": unit,
                "green": _range(green),
                "yellow": _range(yellow),
                "actions": {
                    "yellow": "Ta ny måling om en time; ring oppfølgingstjenesten om den er gul igjen.",
                    "red": "Ring oppfølgingstjenesten nå; utenom åpningstid legevakt 116 117.",
                },
            }
        )
    return zones


def approve_plans(services: Services, data: DemoDataSet) -> int:
    """The plans of the patients past their start-up period, in force from before their first
    reading (run before the history is loaded, so that it is judged by them). A patient who
    has a plan already (the demo loaded again) keeps it."""
    hpr = _gp_hpr(data)
    first: dict[str, datetime] = {}
    for m in data.measurements:
        if m.patient.value not in first or m.effective < first[m.patient.value]:
            first[m.patient.value] = m.effective
    plans = 0
    for patient in data.patients:
        if in_startup(patient) or patient.fnr not in first:
            continue
        with services.store.reader() as conn:
            if plan_versions(conn, patient.resource_id):
                continue
        body = {
            "approvedBy": {"hpr": hpr[patient.gp_role_id]},
            "title": "Egenbehandlingsplan",
            "zones": _zones(data, patient),
        }
        if body["zones"]:
            effective = first[patient.fnr] - PLAN_BEFORE_HISTORY
            put_plan(services, patient.fnr, body, DEMO_ACTOR, effective=effective)
            plans += 1
    return plans


HISTORY_ENDS_BEFORE_NOW = timedelta(hours=1)
"""The generated history ends this long before now: today's deteriorating readings (20 to 50
minutes ago) are each such patient's latest, whatever the time of day (an evening session of
the history could otherwise come after them and show green on the worklist)."""


def tell(services: Services, data: DemoDataSet, now: datetime) -> dict[str, int]:
    """Earlier deviations closed, the readings of today's deteriorating patients and the
    hospital episode (after the history; the plans are approved before it)."""
    closed = _close_history(services, [p for p in data.patients if not in_startup(p)])
    readings: list[Measurement] = []
    for condition, (code, value, unit) in DETERIORATING.items():
        patient = next(p for p in data.patients if p.condition is condition and not in_startup(p))
        when = now - timedelta(minutes=20 + 15 * len(readings))
        readings.append(
            Measurement(
                code=Code(LOINC, code),
                value=value,
                unit=unit,
                effective=when,
                patient=PatientRef(FNR_OID, patient.fnr),
                location=f"demo/today-{patient.key}",
                source_id=(DEMO_SOURCE_SYSTEM, f"today-{patient.key}-{when:%Y%m%d}"),
            )
        )
    report = IngestPipeline(services).ingest_result(
        "demo",
        AdapterResult(measurements=readings, items_seen=len(readings)),
        IngestMeta(source="demo", filename="synthetic demo data: today"),
    )
    hospital = next(
        r for r in data.of_type("Organization") if "sykehus" in str(r.get("name", "")).lower()
    )
    patient = next(p for p in data.patients if p.condition is Condition.HEART_FAILURE)
    episodes = 0
    with services.store.write(WriteContext.service()) as tx:
        episode_id = f"{patient.resource_id}-hospital-episode"
        if tx.get("EpisodeOfCare", episode_id) is None:
            tx.update(
                "EpisodeOfCare",
                episode_id,
                {
                    "resourceType": "EpisodeOfCare",
                    "id": episode_id,
                    "status": "active",
                    "type": [
                        {
                            "coding": [
                                {
                                    "system": "http://snomed.info/sct",
                                    "code": "84114007",
                                    "display": "Heart failure",
                                }
                            ],
                            "text": "heart-failure",
                        }
                    ],
                    "patient": {"reference": f"Patient/{patient.resource_id}"},
                    "managingOrganization": {"reference": f"Organization/{hospital['id']}"},
                    "period": {"start": format_instant(now - timedelta(days=30))},
                },
            )
            episodes = 1
    return {
        "closed": closed,
        "readingsToday": report.created,
        "hospitalEpisodes": episodes,
    }


HISTORY_OUTCOMES = {"assess-deviation": "kontaktet-pasient", "thresholds-missing": "endret-plan"}


def _close_history(services: Services, patients: list[DemoPatient]) -> int:
    """Close the Tasks the loaded history left open for these patients, as a nurse did."""
    r = resource_table.c
    ids = [p.resource_id for p in patients]
    with services.store.reader() as conn:
        tasks = [
            orjson.loads(content)
            for (content,) in conn.execute(
                select(r.content).where(
                    r.res_type == "Task", r.patient_id.in_(ids), r.deleted.is_(False)
                )
            )
        ]
    nurse = Person("demo-nurse", None, "Sykepleier (demo)")
    closed = 0
    with services.store.write(WriteContext(DEMO_ACTOR, Door.WORKLIST)) as tx:
        for task in tasks:
            kind = next(
                (
                    c.get("code")
                    for c in (task.get("code") or {}).get("coding", [])
                    if c.get("system") == TASK_CODE_SYSTEM
                ),
                None,
            )
            if task.get("status") in OPEN_TASK and kind in HISTORY_OUTCOMES:
                complete(tx, task["id"], nurse, HISTORY_OUTCOMES[kind])
                closed += 1
    return closed
