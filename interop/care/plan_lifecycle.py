"""The egenbehandlingsplan's life cycle: ``draft`` → ``proposed`` (sent to the GP) → ``active``
(approved) → ``revoked`` / ``completed``.

* Only an active plan judges measurements: a draft or proposed plan has no period in force
  (:func:`interop.care.plans.plan_periods` leaves it out); an activated one replaces the plan
  active before it, which is completed at that instant. Every version is kept: each change is
  a new version of the CarePlan resource (its history), each plan content a new CarePlan.
* Proposing sends the patient's GP a Dialogmelding *forespørsel* with the plan in readable
  Norwegian (and as an attachment), in a conversation of its own.
* The GP's *svar* in that conversation approving it (phrases in
  ``mappings/plans/gp-approval.yaml``), or the GP approving through the API, activates it with
  the GP recorded as approver (Provenance ``verifier``). An answer asking for changes returns
  it to draft with the GP's text; an answer that is neither leaves it proposed, with the text,
  for a nurse to read — a plan is never activated on a guess.
* The plan holds what a real egenbehandlingsplan holds: the patient's own goals (*Hva er
  viktig for deg?*), per zone the signs (measurements, and symptoms), what the patient and the
  service do (medication included) and whom to contact.

The state is the extension ``plan-state`` on the CarePlan; its FHIR ``status`` follows
(draft/proposed → ``draft``, with ``intent`` ``proposal`` once proposed).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from functools import cache
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from interop.access.actor import Actor
from interop.care.events import PlanAnswered, PlanChanged, raise_event
from interop.care.gp_approval import gp_approval_rules
from interop.care.plan_state import CONTENT_URL, STATE_URL, State, state_of
from interop.care.plans import (
    HPR_SYSTEM,
    NOTIFY_GP_URL,
    PLAN_CATEGORY,
    ZoneIn,
    _lock_plans,
    _patient_id,
    _recorder,
    goal_resource,
    patients_gp,
    plan_versions,
)
from interop.fhir.dates import fhir_instant, format_instant, from_micros, now_utc, to_micros
from interop.fhir.outcome import FhirError, error, invalid_issues
from interop.store.context import Door, WriteContext
from interop.store.repository import WriteTx
from interop.text import text

if TYPE_CHECKING:  # the wiring hands its parts in; the care core does not import it
    from interop.care.ports import CareServices as Services

GP_ANSWER_URL = "https://dho-interop.no/fhir/StructureDefinition/plan-gp-answer"
FHIR_STATUS: dict[str, str] = {
    "draft": "draft",
    "proposed": "draft",
    "active": "active",
    "revoked": "revoked",
    "completed": "completed",
}


class ContactIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1)
    phone: str | None = None


class ZoneContentIn(BaseModel):
    """What the plan says for one zone."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)
    zone: Literal["green", "yellow", "red"]
    signs: list[str] = Field(default_factory=list)
    """Signs the patient looks for: measurements and symptoms (from questionnaires)."""
    patient_actions: list[str] = Field(default_factory=list, alias="patientActions")
    service_actions: list[str] = Field(default_factory=list, alias="serviceActions")
    medication: list[str] = Field(default_factory=list)
    """Medication actions (e.g. an extra diuretic dose as agreed with the GP)."""
    contact: ContactIn | None = None


class PlanDraftIn(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)
    zones: list[ZoneIn]
    title: str | None = None
    notify_gp: list[Literal["yellow", "red"]] = Field(default_factory=list, alias="notifyGp")
    goals: list[str] = Field(default_factory=list)
    """The patient's own goals: *Hva er viktig for deg?*"""
    content: list[ZoneContentIn] = Field(default_factory=list)


def _set_state(cp: dict[str, Any], state: State) -> None:
    cp["extension"] = [e for e in cp.get("extension", []) if e.get("url") != STATE_URL]
    cp["extension"].append({"url": STATE_URL, "valueCode": state})
    cp["status"] = FHIR_STATUS[state]
    cp["intent"] = "proposal" if state == "proposed" else "plan"


@cache
def read_gp_answer(answer: str) -> Literal["approve", "changes", "unclear"]:
    """What a GP's free-text answer says about a proposed plan (phrases are data)."""
    said = " ".join(answer.lower().split())
    rules = gp_approval_rules()["answers"]
    if any(p in said for p in rules["changes"]):
        return "changes"
    words = set(said.replace(",", " ").replace(".", " ").replace("!", " ").split())
    for phrase in rules["approve"]:
        if (" " in phrase and phrase in said) or phrase in words:
            return "approve"
    return "unclear"


def _validated(body: Any) -> PlanDraftIn:
    try:
        return PlanDraftIn.model_validate(body)
    except ValidationError as exc:
        raise FhirError(422, invalid_issues(exc.errors())) from None


def _check_codes(services: Services, plan: PlanDraftIn) -> None:
    from adapters.base import Code
    from interop.care.plans import LOINC
    from interop.mapping import MappingSet

    mappings = MappingSet.load(services.settings.mappings_dir)
    for z in plan.zones:
        concept = mappings.concept_for(Code(LOINC, z.code))
        if concept is None:
            raise error(422, "code-invalid", f"zones: {z.code} is not a known measurement code")
        if concept.unit and z.unit != concept.unit:
            raise error(
                422, "value", f"zones: {z.code} must be given in {concept.unit}, not {z.unit}"
            )


def _get_plan(tx: WriteTx, pid: str, plan_id: str) -> dict[str, Any]:
    stored = tx.get("CarePlan", plan_id)
    cp = stored.json() if stored is not None and not stored.deleted else None
    if cp is None or (cp.get("subject") or {}).get("reference") != f"Patient/{pid}":
        raise error(404, "not-found", f"CarePlan/{plan_id} is not a plan of this patient")
    cp.pop("meta", None)
    return cp


def _require(cp: dict[str, Any], *states: State) -> State:
    state = state_of(cp)
    if state not in states:
        raise error(
            409,
            "business-rule",
            f"the plan is {state}; this needs a plan that is {' or '.join(states)}",
        )
    return state


def _now(services: Services, versions: list[dict[str, Any]]) -> str:
    """Now, after the start of every earlier version (versions sort by period.start)."""
    now_us = to_micros(now_utc())
    starts = [
        fhir_instant(p["period"]["start"], services.settings.timezone)
        for p in versions
        if p.get("period", {}).get("start")
    ]
    if starts and now_us <= max(starts):
        now_us = max(starts) + 1000
    return format_instant(from_micros(now_us))


def save_draft(
    services: Services,
    national_id: str,
    body: Any,
    actor: Actor,
    *,
    plan_id: str | None = None,
    annotate: Callable[[dict[str, Any]], None] | None = None,
) -> dict[str, Any]:
    """A new draft plan, or (``plan_id``) a new version of a draft's content; ``annotate``
    adds to the CarePlan before it is written (e.g. where an imported plan came from)."""
    import orjson

    plan = _validated(body)
    _check_codes(services, plan)
    with services.store.write(WriteContext(actor, Door.PLAN)) as tx:
        pid = _patient_id(tx, national_id)
        patient_ref = f"Patient/{pid}"
        now = format_instant(now_utc())
        drafts = [goal_resource(z, patient_ref, now) for z in plan.zones]
        for goal in drafts:
            goal["lifecycleStatus"] = "proposed"  # judges nothing until the plan is active
        goals = tx.create_many([(goal, None) for goal in drafts])
        content = plan.model_dump(mode="json", by_alias=True, exclude_none=True)
        base: dict[str, Any] = (
            _get_plan(tx, pid, plan_id)
            if plan_id is not None
            else {
                "resourceType": "CarePlan",
                "category": [{"coding": [PLAN_CATEGORY]}],
                "subject": {"reference": patient_ref},
                "created": now,
            }
        )
        if plan_id is not None:
            _require(base, "draft")
        base["title"] = plan.title or "Egenbehandlingsplan"
        base["goal"] = [{"reference": g.reference} for g in goals]
        if not goals:  # a draft with text only (an imported plan): no limits yet
            del base["goal"]
        base["extension"] = [
            e for e in base.get("extension", []) if e.get("url") not in (CONTENT_URL, NOTIFY_GP_URL)
        ]
        base["extension"] += [
            {"url": NOTIFY_GP_URL, "valueCode": zone} for zone in sorted(set(plan.notify_gp))
        ]
        base["extension"].append(
            {"url": CONTENT_URL, "valueString": orjson.dumps(content).decode()}
        )
        base["author"] = _recorder(actor)
        _set_state(base, "draft")
        if annotate is not None:
            annotate(base)
        stored = tx.update("CarePlan", plan_id, base)[0] if plan_id else tx.create(base)
    return {"state": "draft", "carePlan": stored.json()}


def propose(services: Services, national_id: str, plan_id: str, actor: Actor) -> dict[str, Any]:
    """Draft → proposed: the GP gets a Dialogmelding forespørsel with the plan to approve."""
    from interop.care.plan_request import send_plan_request

    with services.store.write(WriteContext(actor, Door.PLAN)) as tx:
        pid = _patient_id(tx, national_id)
        cp = _get_plan(tx, pid, plan_id)
        _require(cp, "draft")
        row = send_plan_request(services, tx, pid, cp)
        _set_state(cp, "proposed")
        stored = tx.update("CarePlan", plan_id, cp)[0]
    return {"state": "proposed", "carePlan": stored.json(), "message": row}


def activate(
    services: Services,
    tx: WriteTx,
    pid: str,
    cp: dict[str, Any],
    approver: str,
    approver_hpr: str,
    recorded_by: dict[str, Any],
) -> dict[str, Any]:
    """Proposed → active, approved by the GP ``approver`` (Practitioner id): it replaces the
    active plan, which is completed at the same instant."""
    _require(cp, "proposed")
    _lock_plans(tx, pid)
    versions = plan_versions(tx.conn, pid)
    now = _now(services, versions)
    previous = [p for p in versions if p.get("status") == "active" and p["id"] != cp["id"]]
    for g in cp.get("goal", []):
        stored_goal = tx.get("Goal", g["reference"].split("/", 1)[1])
        if stored_goal is not None:
            goal = stored_goal.json()
            goal.pop("meta", None)
            goal["lifecycleStatus"] = "active"
            goal["startDate"] = now[:10]
            tx.update("Goal", goal["id"], goal)
    _set_state(cp, "active")
    cp["period"] = {"start": now}
    if previous:
        cp["replaces"] = [{"reference": f"CarePlan/{p['id']}"} for p in previous]
    stored = tx.update("CarePlan", cp["id"], cp)[0]
    for p in previous:
        old = dict(p)
        old.pop("meta", None)
        _set_state(old, "completed")
        old["period"] = {**old.get("period", {}), "end": now}
        tx.update("CarePlan", p["id"], old)
    tx.create(
        {
            "resourceType": "Provenance",
            "target": [{"reference": stored.reference}]
            + [{"reference": g["reference"]} for g in cp.get("goal", [])],
            "recorded": now,
            "agent": [
                {
                    "type": {"coding": [{"system": _PARTICIPANT, "code": "verifier"}]},
                    "who": {
                        "reference": f"Practitioner/{approver}",
                        "identifier": {"system": HPR_SYSTEM, "value": approver_hpr},
                        "display": "approving GP",
                    },
                },
                {
                    "type": {"coding": [{"system": _PARTICIPANT, "code": "author"}]},
                    "who": recorded_by,
                },
            ],
        }
    )
    # routed (plan.changed) by the subscribers when the transaction ends
    raise_event(tx, PlanChanged(pid, stored.reference))
    return stored.json()


_PARTICIPANT = "http://terminology.hl7.org/CodeSystem/provenance-participant-type"


def _gp_in_charge(services: Services, tx: WriteTx, pid: str, actor: Actor) -> tuple[str, str]:
    """(Practitioner id, HPR number) of the acting GP: a role that may approve plans
    (``approve-plan`` in ``mappings/access/actions.yaml``), with an HPR number, who is this
    patient's GP (``Patient.generalPractitioner``)."""
    from interop.access.policy import Action

    services.policy.require_role(actor, Action.APPROVE_PLAN)
    if not actor.hpr:
        raise error(403, "forbidden", "approving a plan needs your HPR number")
    approver = patients_gp(tx.conn, pid, actor.hpr)
    if approver is None:
        raise error(403, "forbidden", "you are not this patient's GP (Patient.generalPractitioner)")
    return approver, actor.hpr


def _proposed_as_seen(tx: WriteTx, pid: str, plan_id: str, seen: int | None) -> dict[str, Any]:
    """The proposed plan; with ``seen`` (the CarePlan version the GP was shown), 409 when it
    changed since: a GP approves exactly what they read."""
    cp = _get_plan(tx, pid, plan_id)
    _require(cp, "proposed")
    if seen is not None:
        stored = tx.get("CarePlan", plan_id)
        if stored is None or stored.version != seen:
            raise error(
                409, "conflict", "the plan changed after you opened it: open it again and read it"
            )
    return cp


def approve_by_gp(
    services: Services,
    national_id: str,
    plan_id: str,
    actor: Actor,
    *,
    seen_version: int | None = None,
    door: Literal["api", "page"] = "api",
) -> dict[str, Any]:
    """The patient's GP approves a proposed plan (the API, or the GP's HTML page): it becomes
    active with the GP recorded as approver (Provenance ``verifier``, when), and the follow-up
    centre hears of it (:class:`~interop.care.events.PlanAnswered`)."""
    with services.store.write(WriteContext(actor, Door.PLAN)) as tx:
        pid = _patient_id(tx, national_id)
        approver, hpr = _gp_in_charge(services, tx, pid, actor)
        cp = _proposed_as_seen(tx, pid, plan_id, seen_version)
        active = activate(services, tx, pid, cp, approver, hpr, _recorder(actor))
        _answered(tx, pid, plan_id, "approved", actor.name or f"HPR {hpr}", approver, None, door)
    return {"state": "active", "carePlan": active}


def _answered(
    tx: WriteTx,
    pid: str,
    plan_id: str,
    decision: Literal["approved", "changes", "unclear", "not-the-gp"],
    gp_name: str | None,
    gp: str | None,
    comment: str | None,
    door: str,
) -> None:
    raise_event(
        tx,
        PlanAnswered(
            pid,
            f"CarePlan/{plan_id}",
            decision,
            gp_name,
            f"Practitioner/{gp}" if gp else None,
            comment,
            format_instant(now_utc()),
            door,
        ),
    )


def changes_by_gp(
    services: Services,
    national_id: str,
    plan_id: str,
    actor: Actor,
    answer: str,
    *,
    seen_version: int | None = None,
) -> dict[str, Any]:
    """The patient's GP asks for changes to a proposed plan (the GP's HTML page): it returns
    to draft with the GP's text, as a *svar* asking for changes does."""
    answer = answer.strip()
    if not answer:
        raise error(422, "required", "text: say what should be changed")
    with services.store.write(WriteContext(actor, Door.PLAN)) as tx:
        pid = _patient_id(tx, national_id)
        approver, hpr = _gp_in_charge(services, tx, pid, actor)
        cp = _proposed_as_seen(tx, pid, plan_id, seen_version)
        name = actor.name or f"HPR {hpr}"
        note = text("plan.gp_page.changes_note", name=name, answer=answer)
        stored = _return_to_draft(tx, cp, answer, note)
        _answered(tx, pid, plan_id, "changes", name, approver, answer, "page")
    return {"state": "draft", "carePlan": stored}


def _return_to_draft(tx: WriteTx, cp: dict[str, Any], answer: str, note: str) -> dict[str, Any]:
    cp["note"] = [*cp.get("note", []), {"text": note, "time": format_instant(now_utc())}]
    cp["extension"] = [e for e in cp.get("extension", []) if e.get("url") != GP_ANSWER_URL]
    cp["extension"].append({"url": GP_ANSWER_URL, "valueString": answer})
    _set_state(cp, "draft")
    return tx.update("CarePlan", cp["id"], cp)[0].json()


def answer_from_gp(
    services: Services,
    tx: WriteTx,
    plan_ref: str,
    answer: str,
    gp: dict[str, Any],
) -> str:
    """The GP's *svar* to a plan request: approve, return to draft with the GP's text, or
    (unclear) keep it proposed with the text. ``gp``: ``hpr``/``her``/``name`` of the sender.
    Returns what it did."""
    from sqlalchemy import select

    from interop.identifiers import HERID_OID
    from interop.store.schema import token_table

    plan_id = plan_ref.split("/", 1)[1]
    stored = tx.get("CarePlan", plan_id)
    if stored is None or stored.deleted:
        return "unknown-plan"
    cp = stored.json()
    cp.pop("meta", None)
    pid = (cp.get("subject") or {}).get("reference", "").split("/", 1)[-1]
    if state_of(cp) != "proposed":
        return f"ignored: the plan is {state_of(cp)}"
    verdict: str = read_gp_answer(answer)
    note = {
        "text": text("plan.gp_page.changes_note", name=gp.get("name") or "", answer=answer),
        "time": format_instant(now_utc()),
    }
    if verdict == "approve":
        # the answering GP must be the patient's GP: found by the person's HER-id
        approver = None
        hpr = gp.get("hpr")
        if hpr:
            approver = patients_gp(tx.conn, pid, hpr)
        if approver is None and gp.get("her"):
            roles = {
                r[0]
                for r in tx.conn.execute(
                    select(token_table.c.res_id).where(
                        token_table.c.res_type == "PractitionerRole",
                        token_table.c.param == "identifier",
                        token_table.c.system == HERID_OID,
                        token_table.c.code == gp["her"],
                    )
                )
            }
            for role_id in sorted(roles):
                role = tx.get("PractitionerRole", role_id)
                prac = ((role.json() if role else {}).get("practitioner") or {}).get("reference")
                prac_res = tx.get("Practitioner", prac.split("/", 1)[1]) if prac else None
                for ident in (prac_res.json() if prac_res else {}).get("identifier", []):
                    if ident.get("system") == HPR_SYSTEM:
                        approver = patients_gp(tx.conn, pid, ident["value"])
                        hpr = ident["value"] if approver else hpr
        if approver is None or not hpr:
            verdict = "not-the-gp"  # an approval from someone who is not the patient's GP
        else:
            cp["note"] = [*cp.get("note", []), note]
            activate(
                services,
                tx,
                pid,
                cp,
                approver,
                hpr,
                {"display": "svar fra fastlege (Dialogmelding)"},
            )
            _answered(
                tx, pid, plan_id, "approved", gp.get("name"), approver, answer, "dialogmelding"
            )
            return "approved"
    if verdict == "changes":
        _return_to_draft(tx, cp, answer, note["text"])
        _answered(tx, pid, plan_id, "changes", gp.get("name"), None, answer, "dialogmelding")
        return "returned-to-draft"
    cp["note"] = [*cp.get("note", []), note]
    tx.update("CarePlan", plan_id, cp)
    kept: Literal["unclear", "not-the-gp"] = "not-the-gp" if verdict == "not-the-gp" else "unclear"
    _answered(tx, pid, plan_id, kept, gp.get("name"), None, answer, "dialogmelding")
    return "unclear"


def revoke(
    services: Services, national_id: str, plan_id: str, actor: Actor, reason: str | None
) -> dict[str, Any]:
    """Active → revoked: it stops judging from now; the defaults apply until a new plan."""
    with services.store.write(WriteContext(actor, Door.PLAN)) as tx:
        pid = _patient_id(tx, national_id)
        _lock_plans(tx, pid)
        cp = _get_plan(tx, pid, plan_id)
        _require(cp, "active")
        now = _now(services, plan_versions(tx.conn, pid))
        _set_state(cp, "revoked")
        cp["period"] = {**cp.get("period", {}), "end": now}
        if reason:
            cp["note"] = [*cp.get("note", []), {"text": reason, "time": now}]
        stored = tx.update("CarePlan", plan_id, cp)[0]
        raise_event(tx, PlanChanged(pid, stored.reference))
    return {"state": "revoked", "carePlan": stored.json()}


def new_conversation() -> str:
    return str(uuid.uuid4())
