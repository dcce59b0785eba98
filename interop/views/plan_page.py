"""The egenbehandlingsplan as a page for the patient's GP: the plan in readable Norwegian (the
patient's goals, the thresholds with display units and decimal comma, per zone the signs,
what the patient and the service do, medication and whom to contact), and while it is
proposed two plain HTML forms (no JavaScript): approve it, or ask for changes with a text.
Every sentence comes from the message catalogue (``plan.gp_page``)."""

from __future__ import annotations

import html
from datetime import datetime
from typing import Any

from interop.care.plan_state import content_of, state_of
from interop.care.plan_text import ZONES, range_text, red_text, yellow_text
from interop.text import local_time, measurement_name, text, zone_name
from interop.views.page import page


def _e(s: object) -> str:
    return html.escape(str(s))


def _limits(content: dict[str, Any]) -> str:
    zones = content.get("zones") or []
    if not zones:
        return f"<p>{_e(text('plan.gp_page.limits_none'))}</p>"
    head = "".join(
        f'<th scope="col">{_e(text(f"plan.gp_page.columns.{c}"))}</th>'
        for c in ("measurement", "green", "yellow", "red")
    )
    rows = "".join(
        f'<tr><th scope="row">{_e(measurement_name(z["code"]))}</th>'
        f"<td>{_e(range_text(z.get('green'), z.get('unit', '')))}</td>"
        f"<td>{_e(yellow_text(z))}</td>"
        f"<td>{_e(red_text(z))}</td></tr>"
        for z in zones
    )
    return (
        f'<table id="limits"><caption>{_e(text("plan.gp_page.limits"))}</caption>'
        f"<thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>"
    )


def _zone_section(c: dict[str, Any]) -> str:
    zone = c["zone"]
    parts = []
    for key, field in (
        ("signs", "signs"),
        ("patient_actions", "patientActions"),
        ("service_actions", "serviceActions"),
        ("medication", "medication"),
    ):
        if c.get(field):
            items = "".join(f"<li>{_e(item)}</li>" for item in c[field])
            parts.append(f"<h4>{_e(text(f'plan.gp_page.{key}'))}</h4><ul>{items}</ul>")
    contact = c.get("contact")
    if contact:
        phone = f", tlf. {contact['phone']}" if contact.get("phone") else ""
        parts.append(
            f"<h4>{_e(text('plan.gp_page.contact'))}</h4><p>{_e(contact['name'] + phone)}</p>"
        )
    badge = f'<span class="zone zone-{_e(zone)}">{_e(zone_name(zone))}</span>'
    return (
        f'<section id="zone-{_e(zone)}" aria-labelledby="zone-{_e(zone)}-h">'
        f'<h3 id="zone-{_e(zone)}-h">{_e(text("plan.gp_page.zone"))} {badge}</h3>'
        f"{''.join(parts)}</section>"
    )


def _forms(action: str, hidden: dict[str, str]) -> str:
    fields = "".join(
        f'<input type="hidden" name="{_e(k)}" value="{_e(v)}">' for k, v in hidden.items()
    )
    return (
        f'<section id="decide" aria-labelledby="decide-h"><h2 id="decide-h">'
        f"{_e(text('plan.gp_page.decide'))}</h2>"
        f"<p>{_e(text('plan.gp_page.approve_help'))}</p>"
        f'<form method="post" action="{_e(action)}">{fields}'
        f'<input type="hidden" name="decision" value="approve">'
        f'<button type="submit">{_e(text("plan.gp_page.approve"))}</button></form>'
        f'<form method="post" action="{_e(action)}">{fields}'
        f'<input type="hidden" name="decision" value="changes">'
        f'<label for="changes-text">{_e(text("plan.gp_page.changes_label"))}</label>'
        f'<textarea id="changes-text" class="wide" name="text" required></textarea>'
        f'<button type="submit">{_e(text("plan.gp_page.changes"))}</button></form></section>'
    )


def _when(instant: str | None, zone: str) -> str | None:
    if not instant:
        return None
    return local_time(datetime.fromisoformat(instant.replace("Z", "+00:00")), zone)


def render_plan_page(
    cp: dict[str, Any],
    patient_label: str,
    zone: str,
    *,
    action: str,
    hidden: dict[str, str] | None,
    message: str | None = None,
) -> str:
    """The page for plan ``cp``; ``hidden``: the forms' hidden fields (the signed form token,
    and the access token when the page was opened by link) — no forms when None or when the
    plan is not proposed."""
    state = state_of(cp)
    content = content_of(cp)
    title = text("plan.gp_page.title", patient=patient_label)
    state_text = text(f"plan.states.{state}")
    body = [f"<h1>{_e(title)}</h1>"]
    if message:
        body.append(f'<p id="outcome" role="status"><strong>{_e(message)}</strong></p>')
    body.append(
        f'<p class="meta" id="state">{_e(text("plan.gp_page.state", state=state_text))}</p>'
    )
    author = (cp.get("author") or {}).get("display")
    created = _when(cp.get("created"), zone)
    if author and created:
        body.append(
            f'<p class="meta">{_e(text("plan.gp_page.created", author=author, time=created))}</p>'
        )
    start = _when((cp.get("period") or {}).get("start"), zone)
    if start and state == "active":
        body.append(f'<p class="meta">{_e(text("plan.gp_page.active_from", time=start))}</p>')
    goals = content.get("goals") or []
    body.append(f'<h2 id="goals">{_e(text("plan.gp_page.goals"))}</h2>')
    body.append(
        "<ul>" + "".join(f"<li>{_e(g)}</li>" for g in goals) + "</ul>"
        if goals
        else f"<p>{_e(text('plan.gp_page.goals_none'))}</p>"
    )
    body.append(_limits(content))
    by_zone = {c["zone"]: c for c in content.get("content") or []}
    body += [_zone_section(by_zone[z]) for z in ZONES if z in by_zone]
    notes = [n.get("text") for n in cp.get("note", []) if n.get("text")]
    if notes:
        body.append(
            f"<h2>{_e(text('plan.gp_page.notes'))}</h2><ul>"
            + "".join(f"<li>{_e(n)}</li>" for n in notes)
            + "</ul>"
        )
    if state == "proposed" and hidden is not None:
        body.append(_forms(action, hidden))
    elif not message:
        body.append(
            f'<p id="not-proposed">{_e(text("plan.gp_page.not_proposed", state=state_text))}</p>'
        )
    return page(title, "".join(body))
