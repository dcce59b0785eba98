"""Our egenbehandlingsplan as NHN *Pasientens planer* JSON, and our record of the NHN plan.

When a plan becomes active (or is revoked or completed) routing builds :func:`plan_payloads`
for the Endpoints subscribed with ``nhn-plans`` (rule ``plan-to-nhn-pasientens-planer``): the
request body — ``status`` (``mappings/national/nhn-plans.yaml``), ``subject`` (the patient's
fødselsnummer or D-nummer), ``updated_by`` and ``clinical_content`` with the title, a
description and one zone per level whose ``condition`` and ``action`` are Norwegian text from
the message catalogue (``nhn_plan.*``, ``plan.*``): the plan's limits per measurement and the
signs, and what the patient and the service do.

Our CarePlan keeps the NHN plan's id (identifier ``plan_id_system``) and, in the extension
``link_extension``, the NHN plan version and the clinical content we last exported (or
imported), so the next version updates that plan and a 409 can tell our own earlier write
from someone else's change; a change we did not make is recorded there as ``conflict``.
"""

from __future__ import annotations

from functools import lru_cache
from importlib.resources import files
from typing import Any

import orjson
import yaml
from sqlalchemy import Connection

from interop.care.plan_state import content_of, state_of
from interop.care.plan_text import ZONES, range_text
from interop.care.plans import plan_versions, ranges_of_plan
from interop.messaging.addressbook import AddressError, resource_json
from interop.national.plans_api import clinical
from interop.store.repository import FhirStore
from interop.text import measurement_name, text

NHN_PLAN = "nhn-plan"
"""The outbox message kind (routing rule message) and the Endpoint subscription code's use."""


@lru_cache(maxsize=1)
def mapping() -> dict[str, Any]:
    return dict(yaml.safe_load((files("mappings") / "national" / "nhn-plans.yaml").read_text()))


def _zone_texts(conn: Connection, cp: dict[str, Any]) -> list[dict[str, str]]:
    ranges = ranges_of_plan(conn, cp)
    content = content_of(cp)
    by_zone = {c["zone"]: c for c in content.get("content") or []}
    zones = []
    for level in ZONES:
        conditions: list[str] = []
        actions: list[str] = []
        for code in sorted(ranges):
            zr = ranges[code]
            green = range_text({"low": zr.green[0], "high": zr.green[1]}, zr.unit)
            yellow = range_text({"low": zr.yellow[0], "high": zr.yellow[1]}, zr.unit)
            m = measurement_name(code)
            conditions.append(
                text(f"nhn_plan.{level}", measurement=m, range=green, green=green, yellow=yellow)
            )
            if zr.actions.get(level):
                actions.append(zr.actions[level])
        c = by_zone.get(level) or {}
        if c.get("signs"):
            conditions.append(text("plan.signs", items="; ".join(c["signs"])))
        for key, field in (
            ("plan.patient_actions", "patientActions"),
            ("plan.service_actions", "serviceActions"),
            ("plan.medication", "medication"),
        ):
            if c.get(field):
                actions.append(text(key, items="; ".join(c[field])))
        if c.get("contact"):
            phone = f", tlf. {c['contact']['phone']}" if c["contact"].get("phone") else ""
            actions.append(text("plan.contact", name=c["contact"]["name"], phone=phone))
        zones.append(
            {
                "condition": " ".join(conditions) or text("nhn_plan.no_limits"),
                "action": " ".join(actions) or text("nhn_plan.no_action"),
                "level": level,
            }
        )
    return zones


def nhn_subject(patient: dict[str, Any]) -> dict[str, str]:
    """The patient as NHN's ``subject``: fødselsnummer, else D-nummer (:class:`AddressError`
    without either: NHN's plans are for persons in Folkeregisteret)."""
    systems = mapping()["subject_systems"]
    for system in systems:
        for ident in patient.get("identifier") or []:
            if ident.get("system") == system and ident.get("value"):
                return {"system": system, "value": str(ident["value"])}
    raise AddressError(
        f"Patient/{patient.get('id')} has no fødselsnummer or D-nummer: NHN Pasientens planer "
        "identifies the person by one of them"
    )


def plan_request(
    store: FhirStore, conn: Connection, cp: dict[str, Any], source_system: str
) -> dict[str, Any] | None:
    """NHN's create/update body (without ``version``) for a CarePlan; None for a state that is
    not exported (draft, proposed)."""
    status = mapping()["status"].get(state_of(cp))
    if status is None:
        return None
    patient_ref = (cp.get("subject") or {}).get("reference")
    patient = resource_json(store, conn, patient_ref)
    if patient is None:
        raise AddressError(f"CarePlan/{cp.get('id')}: patient {patient_ref} not found")
    author = cp.get("author") or {}
    updated_by: dict[str, Any] = {"system": source_system}
    if author.get("display"):
        updated_by["name"] = author["display"]
    if (author.get("identifier") or {}).get("value"):
        updated_by["hpr"] = author["identifier"]["value"]
    notes = [n.get("text") for n in cp.get("note") or [] if n.get("text")]
    body: dict[str, Any] = {
        "status": status,
        "subject": nhn_subject(patient),
        "updated_by": updated_by,
        "clinical_content": {
            "title": cp.get("title") or "Egenbehandlingsplan",
            "description": text("nhn_plan.description"),
            "zones": _zone_texts(conn, cp),
        },
    }
    if notes:
        body["comment"] = notes[-1]
    return body


def plan_payloads(
    store: FhirStore, conn: Connection, focus: str | None, source_system: str
) -> list[bytes]:
    """The outbox payload for ``CarePlan/<id>`` (none for a draft or proposed plan)."""
    if not focus or not focus.startswith("CarePlan/"):
        return []
    cp = resource_json(store, conn, focus)
    if cp is None:
        return []
    body = plan_request(store, conn, cp, source_system)
    if body is None:
        return []
    return [orjson.dumps({"carePlan": focus, "request": body})]


# ---- our record of the NHN plan ------------------------------------------------------------


def link_of(cp: dict[str, Any]) -> dict[str, Any] | None:
    """``{"id", "version", "exported", "conflict", "noticed"}`` of the NHN plan this CarePlan is
    tied to."""
    m = mapping()
    nhn_id = next(
        (
            i["value"]
            for i in cp.get("identifier") or []
            if i.get("system") == m["plan_id_system"] and i.get("value")
        ),
        None,
    )
    if nhn_id is None:
        return None
    link: dict[str, Any] = {
        "id": nhn_id,
        "version": None,
        "exported": None,
        "conflict": None,
        "noticed": None,
    }
    for ext in cp.get("extension") or []:
        if ext.get("url") != m["link_extension"]:
            continue
        for sub in ext.get("extension") or []:
            if sub["url"] == "version":
                link["version"] = int(sub["valueInteger"])
            elif sub["url"] == "exported":
                link["exported"] = orjson.loads(sub["valueString"])
            elif sub["url"] == "conflict":
                link["conflict"] = sub["valueString"]
            elif sub["url"] == "noticed":
                link["noticed"] = int(sub["valueInteger"])
    return link


def patient_link(conn: Connection, patient_id: str) -> dict[str, Any] | None:
    """The NHN plan the patient's plans are tied to: the one with the highest version among
    the patient's CarePlans (a new plan version carries no link until it is exported)."""
    links = [lk for cp in plan_versions(conn, patient_id) if (lk := link_of(cp))]
    return max(links, key=lambda lk: lk.get("version") or 0) if links else None


def set_link(
    cp: dict[str, Any],
    nhn_id: str,
    version: int,
    exported: dict[str, Any],
    conflict: str | None = None,
    noticed: int | None = None,
) -> None:
    """Write the NHN plan's id, version and the clinical content last exported on ``cp``;
    ``noticed``: the NHN version whose change by someone else the care team was told of (kept
    from what ``cp`` holds when not given)."""
    m = mapping()
    if noticed is None:
        noticed = (link_of(cp) or {}).get("noticed")
    cp["identifier"] = [
        i for i in cp.get("identifier") or [] if i.get("system") != m["plan_id_system"]
    ] + [{"system": m["plan_id_system"], "value": nhn_id}]
    sub: list[dict[str, Any]] = [
        {"url": "version", "valueInteger": version},
        {"url": "exported", "valueString": orjson.dumps(clinical(exported)).decode()},
    ]
    if conflict:
        sub.append({"url": "conflict", "valueString": conflict})
    if noticed is not None:
        sub.append({"url": "noticed", "valueInteger": noticed})
    cp["extension"] = [
        e for e in cp.get("extension") or [] if e.get("url") != m["link_extension"]
    ] + [{"url": m["link_extension"], "extension": sub}]
