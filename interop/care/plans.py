"""Egenbehandlingsplan (self-management plan) as FHIR CarePlan + one Goal per measurement code.

A Goal carries its zones: ``target.detailRange`` is the green range; the extension
``https://dho-interop.no/fhir/StructureDefinition/zone-range`` (sub-extensions ``zone``,
``low``, ``high``, ``unit``) carries every zone's range, and ``…/zone-action`` the action text
per zone. A plan change is a new CarePlan version (a new resource that ``replaces`` the one
before, whose ``period.end`` is set and status becomes ``completed``): the past is never
rewritten, so a measurement is always judged by the plan in force at its effective time. The
approving GP is recorded as a Provenance ``verifier``.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

import orjson
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from sqlalchemy import Connection, select

from adapters.base import Code
from interop.access.actor import Actor
from interop.care.default_thresholds import defaults_for
from interop.care.events import PlanChanged, raise_event
from interop.care.ports import CareServices
from interop.care.zones import ZoneRanges
from interop.fhir.dates import fhir_instant, format_instant, from_micros, now_utc, to_micros
from interop.fhir.outcome import FhirError, error, invalid_issues
from interop.identifiers import person_id_system, validate_hpr
from interop.mapping import MappingSet
from interop.patients import patient_by_identifier
from interop.store.context import Door, WriteContext
from interop.store.patient_resources import of_patients
from interop.store.relations import referrers, targets, with_tokens
from interop.store.repository import WriteTx
from interop.store.schema import resource_table

LOINC = "http://loinc.org"
UCUM = "http://unitsofmeasure.org"
PLAN_CATEGORY = {
    "system": "http://hl7.no/fhir/vkp/CodeSystem/vkp-careplan-category-v090",
    "code": "2",
    "display": "Egenbehandlingsplan",
}
ZONE_RANGE_URL = "https://dho-interop.no/fhir/StructureDefinition/zone-range"
ZONE_ACTION_URL = "https://dho-interop.no/fhir/StructureDefinition/zone-action"
SCHEDULE_URL = "https://dho-interop.no/fhir/StructureDefinition/measurement-schedule"
NOTIFY_GP_URL = "https://dho-interop.no/fhir/StructureDefinition/notify-gp"
"""CarePlan extension: a zone (``yellow``) the GP also wants to be told about."""
HPR_SYSTEM = "urn:oid:2.16.578.1.12.4.1.4.4"
PLAN_STATE_URL = "https://dho-interop.no/fhir/StructureDefinition/plan-state"
"""The life-cycle state of a plan (draft, proposed, active, revoked, completed): see
:mod:`interop.care.plan_lifecycle`."""


class RangeIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    low: Decimal | None = None
    high: Decimal | None = None

    @model_validator(mode="after")
    def _ordered(self) -> RangeIn:
        if self.low is not None and self.high is not None and self.low > self.high:
            raise ValueError(f"low {self.low} is above high {self.high}")
        return self


class ZoneIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    code: str
    unit: str
    green: RangeIn
    yellow: RangeIn = RangeIn()
    actions: dict[str, str] = {}
    max_gap_hours: int | None = Field(default=None, alias="maxGapHours")

    @model_validator(mode="after")
    def _yellow_contains_green(self) -> ZoneIn:
        g, y = self.green, self.yellow
        if (y.low is not None and (g.low is None or g.low < y.low)) or (
            y.high is not None and (g.high is None or g.high > y.high)
        ):
            raise ValueError(f"{self.code}: the yellow range must contain the green range")
        unknown = set(self.actions) - {"green", "yellow", "red"}
        if unknown:
            raise ValueError(f"{self.code}: actions for unknown zones {sorted(unknown)}")
        return self


class ApprovedBy(BaseModel):
    model_config = ConfigDict(extra="allow")
    hpr: str


class PlanIn(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)
    approved_by: ApprovedBy = Field(alias="approvedBy")
    zones: list[ZoneIn]
    title: str | None = None
    notify_gp: list[str] = Field(default_factory=list, alias="notifyGp")
    """Zones the GP wants a message about besides red (the routing rules read it): ``yellow``."""

    @model_validator(mode="after")
    def _known_zones(self) -> PlanIn:
        unknown = set(self.notify_gp) - {"yellow", "red"}
        if unknown:
            raise ValueError(f"notifyGp: unknown zones {sorted(unknown)} (yellow, red)")
        return self


def default_ranges() -> dict[str, ZoneRanges]:
    """The general default ranges (see :mod:`interop.care.default_thresholds`)."""
    return defaults_for()


def _dec(v: Any) -> Decimal | None:
    return None if v is None else Decimal(str(v))


def _num(d: Decimal) -> int | float:
    return int(d) if d == d.to_integral_value() else float(d)


def _qty(v: Decimal, unit: str) -> dict[str, Any]:
    return {"value": _num(v), "unit": unit, "system": UCUM, "code": unit}


def _range_ext(zone: str, r: RangeIn, unit: str) -> dict[str, Any]:
    ext: list[dict[str, Any]] = [{"url": "zone", "valueCode": zone}]
    if r.low is not None:
        ext.append({"url": "low", "valueQuantity": _qty(r.low, unit)})
    if r.high is not None:
        ext.append({"url": "high", "valueQuantity": _qty(r.high, unit)})
    return {"url": ZONE_RANGE_URL, "extension": ext}


def goal_resource(z: ZoneIn, patient_ref: str, start: str) -> dict[str, Any]:
    detail: dict[str, Any] = {}
    if z.green.low is not None:
        detail["low"] = _qty(z.green.low, z.unit)
    if z.green.high is not None:
        detail["high"] = _qty(z.green.high, z.unit)
    ext = [_range_ext("green", z.green, z.unit), _range_ext("yellow", z.yellow, z.unit)]
    for zone, text in z.actions.items():
        ext.append(
            {
                "url": ZONE_ACTION_URL,
                "extension": [
                    {"url": "zone", "valueCode": zone},
                    {"url": "text", "valueString": text},
                ],
            }
        )
    if z.max_gap_hours:
        ext.append(
            {
                "url": SCHEDULE_URL,
                "extension": [{"url": "maxGapHours", "valueInteger": z.max_gap_hours}],
            }
        )
    goal: dict[str, Any] = {
        "resourceType": "Goal",
        "extension": ext,
        "lifecycleStatus": "active",
        "category": [{"coding": [PLAN_CATEGORY]}],
        "description": {"text": f"{z.code}: green {z.green.low}–{z.green.high} {z.unit}"},
        "subject": {"reference": patient_ref},
        "startDate": start[:10],
        "target": [{"measure": {"coding": [{"system": LOINC, "code": z.code}]}}],
    }
    if detail:
        goal["target"][0]["detailRange"] = detail
    return goal


def _patient_id(tx: WriteTx, national_id: str) -> str:
    system = person_id_system(national_id)
    if system is None:
        raise error(422, "value", f"{national_id!r} is not a valid fødselsnummer or D-nummer")
    pid = patient_by_identifier(tx.conn, system, national_id)
    if pid is None:
        raise error(404, "not-found", f"no Patient with {system}|{national_id}")
    return pid


def patients_gp(conn: Connection, patient_id: str, hpr: str) -> str | None:
    """The Practitioner id with HPR number ``hpr`` when that person is the patient's GP
    (``Patient.generalPractitioner`` names the Practitioner or one of its PractitionerRoles)."""
    practitioners = with_tokens(conn, "Practitioner", "identifier", [(HPR_SYSTEM, hpr)])
    if not practitioners:
        return None
    refs = {f"Practitioner/{p}" for p in practitioners}
    roles = referrers(conn, "PractitionerRole", "practitioner", refs)
    gps = targets(conn, "Patient", "general-practitioner", [patient_id])
    if gps & (refs | {f"PractitionerRole/{r}" for r in roles}):
        return sorted(practitioners)[0]
    return None


def _recorder(actor: Actor) -> dict[str, Any]:
    """Who recorded the plan (the acting nurse, GP or operator)."""
    who: dict[str, Any] = {"display": actor.name or f"{actor.role} {actor.id}"}
    if actor.hpr:
        who["identifier"] = {"system": HPR_SYSTEM, "value": actor.hpr}
    return who


def plan_versions(conn: Any, patient_id: str) -> list[dict[str, Any]]:
    """All egenbehandlingsplan CarePlans of a patient, oldest first."""
    return plan_versions_of(conn, [patient_id])[patient_id]


def plan_versions_of(conn: Any, patient_ids: list[str]) -> dict[str, list[dict[str, Any]]]:
    """:func:`plan_versions` of each patient, in one statement per 500 patients."""
    out = {
        pid: [
            cp
            for cp in care_plans
            if any(
                c.get("code") == PLAN_CATEGORY["code"]
                and c.get("system") == PLAN_CATEGORY["system"]
                for cat in cp.get("category", [])
                for c in cat.get("coding", [])
            )
        ]
        for pid, care_plans in of_patients(conn, "CarePlan", patient_ids).items()
    }
    for plans in out.values():
        plans.sort(key=lambda p: p.get("period", {}).get("start", ""))
    return out


def _lock_plans(tx: WriteTx, patient_id: str) -> None:
    """Serialise plan changes of one patient: each change reads the plan in force and replaces
    it, so two at once would both replace the same version and leave two plans active (one
    update lost on a side branch). On PostgreSQL the Patient row is locked until commit;
    SQLite writers are serialised already."""
    if tx.store.is_postgres:
        tx.conn.execute(
            select(resource_table.c.version)
            .where(resource_table.c.res_type == "Patient", resource_table.c.res_id == patient_id)
            .with_for_update()
        )


def put_plan(
    services: CareServices,
    national_id: str,
    body: Any,
    actor: Actor,
    *,
    if_match: int | None = None,
    effective: datetime | None = None,
) -> dict[str, Any]:
    """Make a new plan version. ``if_match`` (the plan version the client last read, as in
    ``GET …/plan``) makes the change conditional: 412 when another version came in between.
    ``effective``: when the approval took effect, for one recorded before the readings it
    judges are loaded (the demo's history); default now, and never before an earlier
    version's start. Readings already stored are not judged again.

    The approval: a GP approves with their own HPR number; a follow-up nurse (or an admin)
    records an approval the patient's GP gave elsewhere, naming that GP, who must be the
    patient's GP in the address book. The Provenance names both (who approved, who recorded)."""
    try:
        plan = PlanIn.model_validate(body)
    except ValidationError as exc:
        raise FhirError(422, invalid_issues(exc.errors())) from None
    if not validate_hpr(plan.approved_by.hpr):
        raise error(422, "value", f"approvedBy.hpr {plan.approved_by.hpr!r} is not an HPR number")
    mappings = MappingSet.load(services.settings.mappings_dir)
    for z in plan.zones:
        concept = mappings.concept_for(Code(LOINC, z.code))
        if concept is None:
            raise error(422, "code-invalid", f"zones: {z.code} is not a known measurement code")
        if concept.unit and z.unit != concept.unit:
            raise error(
                422, "value", f"zones: {z.code} must be given in {concept.unit}, not {z.unit}"
            )
    if actor.role == "gp" and plan.approved_by.hpr != actor.hpr:
        raise error(
            403,
            "forbidden",
            "a GP approves a plan with their own HPR number: approvedBy.hpr "
            f"{plan.approved_by.hpr!r} is not yours",
            expression=["approvedBy.hpr"],
        )
    with services.store.write(WriteContext(actor, Door.PLAN)) as tx:
        pid = _patient_id(tx, national_id)
        approver = patients_gp(tx.conn, pid, plan.approved_by.hpr)
        if approver is None:
            raise error(
                422,
                "business-rule",
                f"approvedBy.hpr {plan.approved_by.hpr!r} is not this patient's GP in the "
                "address book (Patient.generalPractitioner)",
                expression=["approvedBy.hpr"],
            )
        _lock_plans(tx, pid)
        versions = plan_versions(tx.conn, pid)
        if if_match is not None and if_match != len(versions):
            raise error(
                412,
                "conflict",
                f"plan version conflict: If-Match names version {if_match}, "
                f"the current version is {len(versions)}",
            )
        version = len(versions) + 1
        # taken under the lock, and after the start of every earlier version: versions sort
        # by period.start, and the replaced version's end is this version's start
        now_us = to_micros(effective if effective is not None else now_utc())
        starts = [
            fhir_instant(p["period"]["start"], services.settings.timezone)
            for p in versions
            if p.get("period", {}).get("start")
        ]
        if starts and now_us <= max(starts):
            now_us = max(starts) + 1000
        now = format_instant(from_micros(now_us))
        patient_ref = f"Patient/{pid}"
        previous = [p for p in versions if p.get("status") == "active"]
        goals = tx.create_many([(goal_resource(z, patient_ref, now), None) for z in plan.zones])
        careplan: dict[str, Any] = {
            "resourceType": "CarePlan",
            "status": "active",
            "intent": "plan",
            "category": [{"coding": [PLAN_CATEGORY]}],
            "title": plan.title or "Egenbehandlingsplan",
            "subject": {"reference": patient_ref},
            "period": {"start": now},
            "created": now,
            "goal": [{"reference": g.reference} for g in goals],
        }
        if plan.notify_gp:
            careplan["extension"] = [
                {"url": NOTIFY_GP_URL, "valueCode": zone} for zone in sorted(set(plan.notify_gp))
            ]
        if previous:
            careplan["replaces"] = [{"reference": f"CarePlan/{p['id']}"} for p in previous]
        stored = tx.create(careplan)
        for p in previous:
            old = dict(p)
            old["status"] = "completed"
            old["extension"] = [
                e for e in old.get("extension", []) if e.get("url") != PLAN_STATE_URL
            ] + [{"url": PLAN_STATE_URL, "valueCode": "completed"}]
            old["period"] = {**old.get("period", {}), "end": now}
            old.pop("meta", None)
            tx.update("CarePlan", p["id"], old)
        tx.create(
            {
                "resourceType": "Provenance",
                "target": [{"reference": stored.reference}]
                + [{"reference": g.reference} for g in goals],
                "recorded": now,
                "agent": [
                    {
                        "type": {
                            "coding": [
                                {
                                    "system": "http://terminology.hl7.org/CodeSystem/provenance-participant-type",
                                    "code": "verifier",
                                }
                            ]
                        },
                        "who": {
                            "reference": f"Practitioner/{approver}",
                            "identifier": {"system": HPR_SYSTEM, "value": plan.approved_by.hpr},
                            "display": "approving GP",
                        },
                    },
                    {
                        "type": {
                            "coding": [
                                {
                                    "system": "http://terminology.hl7.org/CodeSystem/provenance-participant-type",
                                    "code": "author",
                                }
                            ]
                        },
                        "who": _recorder(actor),
                    },
                ],
            }
        )
        # routed (plan.changed) by the subscribers when the transaction ends
        raise_event(tx, PlanChanged(pid, stored.reference))
    return {
        "version": version,
        "carePlan": stored.json(),
        "goals": [g.json() for g in goals],
    }


def plan_versions_count(services: CareServices, patient_id: str) -> int:
    with services.store.reader() as conn:
        return len(plan_versions(conn, patient_id))


def ranges_in_force(
    conn: Any, patient_id: str, when: datetime | int, zone: str = "Europe/Oslo"
) -> dict[str, ZoneRanges]:
    """code → ranges of the plan version in force at ``when`` (µs or datetime)."""
    t = when if isinstance(when, int) else to_micros(when)
    chosen = plan_at(plan_periods(conn, patient_id, zone), t)
    return ranges_of_plan(conn, chosen) if chosen is not None else {}


PlanPeriod = tuple[int | None, int | None, dict[str, Any]]
"""(start, end) in µs, open ends ``None``, and the CarePlan version valid then."""


def plan_periods(conn: Any, patient_id: str, zone: str = "Europe/Oslo") -> list[PlanPeriod]:
    """The patient's plan versions with their periods, oldest first (entered-in-error,
    drafts and proposals left out): what :func:`plan_at` chooses from."""
    return plan_periods_of(conn, [patient_id], zone)[patient_id]


def plan_periods_of(
    conn: Any, patient_ids: list[str], zone: str = "Europe/Oslo"
) -> dict[str, list[PlanPeriod]]:
    """:func:`plan_periods` of each patient, in one statement per 500 patients."""
    out: dict[str, list[PlanPeriod]] = {}
    for pid, versions in plan_versions_of(conn, patient_ids).items():
        periods = out[pid] = []
        for cp in versions:
            # only a plan that has been active judges: a draft or a proposal waiting for the
            # GP has no period in force (interop.care.plan_lifecycle)
            if cp.get("status") in ("entered-in-error", "draft"):
                continue
            period = cp.get("period", {})
            start = fhir_instant(period["start"], zone) if period.get("start") else None
            end = fhir_instant(period["end"], zone) if period.get("end") else None
            periods.append((start, end, cp))
    return out


def plan_at(periods: list[PlanPeriod], t: int, t_last: int | None = None) -> dict[str, Any] | None:
    """The plan version in force at ``t`` (µs): of those whose period holds it, the latest.

    A period holds its start instant and not its end (``[start, end)``): at the instant one
    version replaces another, the new one is in force. ``t_last`` (inclusive, µs) is the last
    instant of the time as the source stated it: a reading given to the second
    (``12:00:00``) stands for that whole second, so a plan approved at ``12:00:00.570`` is in
    force for it — the latest version whose period meets ``[t, t_last]`` judges the reading,
    never the defaults or an older version it replaced in that same second."""
    last = t if t_last is None or t_last < t else t_last
    chosen = None
    for start, end, cp in periods:
        if (start is None or start <= last) and (end is None or t < end):
            chosen = cp
    return chosen


def ranges_of_plan(conn: Any, chosen: dict[str, Any]) -> dict[str, ZoneRanges]:
    """code → zone ranges of one plan version (from its Goals)."""
    ids = [g["reference"].split("/", 1)[1] for g in chosen.get("goal", [])]
    rows = conn.execute(
        select(resource_table.c.content).where(
            resource_table.c.res_type == "Goal", resource_table.c.res_id.in_(ids)
        )
    ).all()
    out: dict[str, ZoneRanges] = {}
    for (content,) in rows:
        goal = orjson.loads(content)
        code = goal["target"][0]["measure"]["coding"][0]["code"]
        zones: dict[str, tuple[Decimal | None, Decimal | None]] = {}
        unit = ""
        actions: dict[str, str] = {}
        max_gap: int | None = None
        for ext in goal.get("extension", []):
            sub = {e["url"]: e for e in ext.get("extension", [])}
            if ext["url"] == ZONE_RANGE_URL:
                low = sub.get("low", {}).get("valueQuantity")
                high = sub.get("high", {}).get("valueQuantity")
                unit = (low or high or {}).get("code", unit)
                zones[sub["zone"]["valueCode"]] = (
                    _dec(low["value"]) if low else None,
                    _dec(high["value"]) if high else None,
                )
            elif ext["url"] == ZONE_ACTION_URL:
                actions[sub["zone"]["valueCode"]] = sub["text"]["valueString"]
            elif ext["url"] == SCHEDULE_URL and "maxGapHours" in sub:
                max_gap = int(sub["maxGapHours"]["valueInteger"])
        out[code] = ZoneRanges(
            code,
            unit,
            zones.get("green", (None, None)),
            zones.get("yellow", (None, None)),
            f"CarePlan/{chosen['id']}",
            actions,
            max_gap,
        )
    return out
