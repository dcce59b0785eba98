"""The egenbehandlingsplan in readable Norwegian (for the GP's forespørsel and its attachment),
every sentence from the message catalogue (``mappings/text/nb.yaml``, ``plan.*``)."""

from __future__ import annotations

from typing import Any

from interop.text import measurement_name, number, text, unit, zone_name

ZONES = ("green", "yellow", "red")


def _num(v: Any) -> float | None:
    return None if v is None else float(v)  # the draft keeps numbers as decimal text


def range_text(r: dict[str, Any] | None, code: str) -> str:
    """A plan range as a person reads it: ``60–100 /min``, ``≥ 92 %``, decimal comma."""
    r = r or {}
    lo, hi = _num(r.get("low")), _num(r.get("high"))
    u = unit(code)
    if lo is not None and hi is not None:
        return f"{number(lo)}–{number(hi)} {u}".strip()
    if lo is not None:
        return f"≥ {number(lo)} {u}".strip()
    if hi is not None:
        return f"≤ {number(hi)} {u}".strip()
    return text("plan.open_range")


def yellow_text(zone: dict[str, Any]) -> str:
    """The yellow range; with no bounds of its own, everything outside green is yellow."""
    yellow = zone.get("yellow") or {}
    if yellow.get("low") is None and yellow.get("high") is None:
        return text("plan.yellow_outside_green")
    return range_text(yellow, zone.get("unit", ""))


def red_text(zone: dict[str, Any]) -> str:
    """Where red starts: beyond the yellow range (``under 45 eller over 110 /min``); a plan
    with no yellow bound on a side has no red on that side, and says so."""
    yellow = zone.get("yellow") or {}
    parts = []
    if yellow.get("low") is not None:
        parts.append(text("plan.red_below", value=number(float(yellow["low"]))))
    if yellow.get("high") is not None:
        parts.append(text("plan.red_above", value=number(float(yellow["high"]))))
    if not parts:
        return text("plan.no_red")
    return f"{text('plan.red_or').join(parts)} {unit(zone.get('unit'))}".strip()


def plan_text(content: dict[str, Any], patient_name: str) -> str:
    """``content``: the plan as drafted (``zones``, ``goals``, ``content`` per zone)."""
    lines = [text("plan.heading", patient=patient_name), "", text("plan.intro"), ""]
    goals = content.get("goals") or []
    if goals:
        lines.append(text("plan.goals"))
        lines += [f"– {g}" for g in goals]
        lines.append("")
    zones = content.get("zones") or []
    if zones:
        lines.append(text("plan.limits"))
        for z in zones:
            lines.append(
                text(
                    "plan.limit_line",
                    measurement=measurement_name(z["code"]),
                    green=range_text(z.get("green"), z.get("unit", "")),
                    yellow=yellow_text(z),
                    red=red_text(z),
                )
            )
        lines.append("")
    by_zone = {c["zone"]: c for c in content.get("content") or []}
    for zone in ZONES:
        c = by_zone.get(zone)
        if not c:
            continue
        lines.append(text("plan.zone", zone=zone_name(zone)))
        for key, field in (
            ("plan.signs", "signs"),
            ("plan.patient_actions", "patientActions"),
            ("plan.service_actions", "serviceActions"),
            ("plan.medication", "medication"),
        ):
            if c.get(field):
                lines.append(text(key, items="; ".join(c[field])))
        contact = c.get("contact")
        if contact:
            phone = f", tlf. {contact['phone']}" if contact.get("phone") else ""
            lines.append(text("plan.contact", name=contact["name"], phone=phone))
        lines.append("")
    lines.append(text("plan.answer"))
    return "\n".join(lines)
