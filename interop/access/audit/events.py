"""Building AuditEvents: who did what to which patients' data, with what outcome, and whether
it was emergency access (*nødrett*: access without the usual grounds, purposeOfUse ``ETREAT``)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from interop.access.actor import Actor
from interop.fhir.dates import format_instant, now_utc

HPR_SYSTEM = "urn:oid:2.16.578.1.12.4.1.4.4"
ACT_REASON = "http://terminology.hl7.org/CodeSystem/v3-ActReason"
EMERGENCY = "ETREAT"
"""purposeOfUse for emergency treatment: *nødrett* (helsepersonelloven § 7)."""
ACTION = {"read": "R", "search": "E", "create": "C", "update": "U", "delete": "D"}
OUTCOMES = ("0", "4", "8", "12")
"""0 success, 4 refused/minor failure, 8 serious failure, 12 major failure."""
PATIENT_ROLE = {"system": "http://terminology.hl7.org/CodeSystem/object-role", "code": "1"}


def is_emergency(actor: Actor, emergency: bool | None = None) -> bool:
    """Emergency access: the explicit flag, else the actor's purpose of use ``ETREAT``."""
    if emergency is not None:
        return emergency
    purpose = (actor.purpose or "").strip()
    return purpose.rsplit("|", 1)[-1].upper() == EMERGENCY


def build_event(
    actor: Actor,
    action: str,
    what: str,
    patients: Iterable[str] = (),
    outcome: str = "0",
    *,
    detail: str | None = None,
    emergency: bool | None = None,
) -> dict[str, Any]:
    """An AuditEvent for one access.

    ``action``: read, search, create, update or delete. ``what``: the resource accessed
    (``Observation/123``) or the query (``Observation?code=…``). ``patients``: the ids of
    every Patient whose data the access returned or changed (a search names each one).
    ``outcome``: ``"0"`` granted, ``"4"`` refused. ``emergency``: *nødrett*; by default taken
    from the actor's purpose of use."""
    if action not in ACTION:
        raise ValueError(f"audit action {action!r}: use one of {', '.join(ACTION)}")
    if outcome not in OUTCOMES:
        raise ValueError(f"audit outcome {outcome!r}: use one of {', '.join(OUTCOMES)}")
    who: dict[str, Any] = {"display": actor.name or f"{actor.role} {actor.id}"}
    if actor.hpr:
        who["identifier"] = {"system": HPR_SYSTEM, "value": actor.hpr}
    agent: dict[str, Any] = {
        "type": {
            "coding": [
                {
                    "system": "http://terminology.hl7.org/CodeSystem/extra-security-role-type",
                    "code": "humanuser" if actor.hpr else "dataprocessor",
                }
            ]
        },
        "role": [{"text": actor.role}],
        "who": who,
        "altId": actor.id,
        "requestor": True,
    }
    if actor.orgnr or actor.herid:
        agent["location"] = {
            "display": f"org.nr {actor.orgnr or '-'} / HER-id {actor.herid or '-'}"
        }
    emergency_access = is_emergency(actor, emergency)
    if emergency_access:
        agent["purposeOfUse"] = [{"coding": [{"system": ACT_REASON, "code": EMERGENCY}]}]
    elif actor.purpose:
        agent["purposeOfUse"] = [{"text": actor.purpose}]
    entity: list[dict[str, Any]] = [
        {"what": {"reference": what} if "/" in what and "?" not in what else {"display": what}}
    ]
    seen: set[str] = set()
    for pid in patients:
        if pid and pid not in seen:
            seen.add(pid)
            entity.append({"what": {"reference": f"Patient/{pid}"}, "role": PATIENT_ROLE})
    ev: dict[str, Any] = {
        "resourceType": "AuditEvent",
        "type": {
            "system": "http://terminology.hl7.org/CodeSystem/audit-event-type",
            "code": "rest",
            "display": "RESTful Operation",
        },
        "action": ACTION[action],
        "recorded": format_instant(now_utc()),
        "outcome": outcome,
        "agent": [agent],
        "source": {"observer": {"display": "DHO Interop"}},
        "entity": entity,
    }
    if emergency_access:
        ev["purposeOfEvent"] = [{"coding": [{"system": ACT_REASON, "code": EMERGENCY}]}]
    if detail:
        ev["outcomeDesc"] = detail[:500]
    return ev


def event_is_emergency(event: dict[str, Any]) -> bool:
    return any(
        c.get("code") == EMERGENCY
        for p in event.get("purposeOfEvent") or []
        for c in p.get("coding") or []
    )
