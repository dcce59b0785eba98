"""Import a patient's plan from NHN *Pasientens planer* as a **draft** egenbehandlingsplan.

NHN's zones are free text (``condition``, ``action``, ``level``) with no coded measurement or
limits, so the draft has no zones to judge by: per level the condition becomes a sign and the
action what to do, for a nurse to make computable (limits per measurement) and send to the GP.
The draft never judges measurements (only an active plan does) and is tied to the NHN plan
(id, version, content read), so activating it updates that NHN plan with the version read —
409, and no overwrite, if someone changed the zones since.

Only an actor who may write this patient's plans imports (the caller checks the policy before
NHN is asked); the plans NHN answers with are for the number asked for, or are refused.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from interop.access.actor import Actor
from interop.care.plan_lifecycle import save_draft
from interop.fhir.outcome import error
from interop.national.plans_api import PlansApiClient, PlansApiError, clinical, subject_number
from interop.national.plans_export import set_link
from interop.text import local_time, text


def choose_plan(plans: list[dict[str, Any]], nhn_id: str | None = None) -> dict[str, Any]:
    """The NHN plan to import: the one named, else the active one changed last, else the one
    changed last."""
    if nhn_id is not None:
        named = [p for p in plans if p.get("id") == nhn_id]
        if not named:
            raise error(404, "not-found", f"NHN plan {nhn_id} is not a plan of this patient")
        return named[0]
    if not plans:
        raise error(404, "not-found", "NHN Pasientens planer has no plan for this patient")
    return max(plans, key=lambda p: (p.get("status") == "active", str(p.get("updated_at") or "")))


def draft_body(plan: dict[str, Any]) -> dict[str, Any]:
    content = plan.get("clinical_content") or {}
    zones: dict[str, dict[str, list[str]]] = {}
    for z in content.get("zones") or []:
        level = z.get("level")
        if level not in ("green", "yellow", "red"):
            raise error(502, "invalid", f"NHN plan {plan.get('id')}: zone level {level!r}")
        entry = zones.setdefault(level, {"signs": [], "patientActions": []})
        if z.get("condition"):
            entry["signs"].append(str(z["condition"]))
        if z.get("action"):
            entry["patientActions"].append(str(z["action"]))
    return {
        "title": str(content.get("title") or "Egenbehandlingsplan"),
        "zones": [],
        "content": [
            {"zone": level, **zones[level]}
            for level in ("green", "yellow", "red")
            if level in zones
        ],
    }


def import_nhn_plan(
    services: Any,
    api: PlansApiClient,
    national_id: str,
    actor: Actor,
    *,
    nhn_id: str | None = None,
) -> dict[str, Any]:
    """Fetch the patient's NHN plan and save it as a draft plan of that patient."""
    try:
        found = api.search(national_id)
    except PlansApiError as exc:
        raise error(
            503 if exc.transient else 502, "transient", f"Pasientens planer: {exc}"
        ) from None
    foreign = [p for p in found if subject_number(p) != national_id]
    if foreign:
        raise error(
            502,
            "invalid",
            f"Pasientens planer answered a search for this patient with {len(foreign)} plan(s) "
            "of another person; nothing imported",
        )
    plan = choose_plan(found, nhn_id)
    body = draft_body(plan)
    when = plan.get("updated_at")
    try:
        when_text = local_time(datetime.fromisoformat(str(when)), services.settings.timezone)
    except ValueError:
        when_text = str(when or "")
    note = text("nhn_plan.import_note", time=when_text, version=plan.get("version"))

    def annotate(cp: dict[str, Any]) -> None:
        set_link(cp, str(plan["id"]), int(plan["version"]), clinical(plan.get("clinical_content")))
        cp["note"] = [*cp.get("note", []), {"text": note}]

    return save_draft(services, national_id, body, actor, annotate=annotate)
