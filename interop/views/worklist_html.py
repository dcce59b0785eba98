"""The worklist as an HTML page: a table a nurse reads at a glance, forms for the actions (plain
HTML forms, no JavaScript, no external assets), Norwegian text from the message catalogue.

Zones are written out in words beside their colour (readable in black and white, and for
those who do not tell red from green); contrast meets WCAG 2.1 AA."""

from __future__ import annotations

import html
from datetime import datetime
from functools import lru_cache
from typing import Any
from urllib.parse import quote, urlencode

from interop.care.deviations import outcome_display, outcome_list
from interop.text import local_time, plural, text
from interop.views.page import page
from interop.views.worklist import ordering


def _zone_badge(zone: str | None, zone_text: str | None) -> str:
    if not zone:
        return ""
    return f' <span class="zone zone-{html.escape(zone)}">{html.escape(zone_text or zone)}</span>'


@lru_cache(maxsize=1)
def _form_words() -> tuple[str, str, str, str, str, str]:
    """The forms' escaped words and outcome options, the same in every row (built once)."""
    _system, outcomes = outcome_list()
    options = "".join(
        f'<option value="{html.escape(code)}">{html.escape(outcome_display(code))}</option>'
        for code in outcomes
    )
    return (
        options,
        html.escape(text("worklist.take")),
        html.escape(text("worklist.note_label")),
        html.escape(text("worklist.note")),
        html.escape(text("worklist.outcome_label")),
        html.escape(text("worklist.complete")),
    )


def _forms(task: dict[str, Any], back: str) -> str:
    tid = html.escape(task["id"])
    action = f"/api/v1/worklist/tasks/{tid}/actions"
    back_field = f'<input type="hidden" name="back" value="{html.escape(back)}">'
    options, take_word, note_label, note_word, outcome_label, complete_word = _form_words()
    take = (
        ""
        if task.get("owner")
        else f'<form method="post" action="{action}">{back_field}'
        f'<input type="hidden" name="action" value="take">'
        f'<button type="submit">{take_word}</button></form>'
    )
    return (
        take + f'<form method="post" action="{action}">{back_field}'
        f'<input type="hidden" name="action" value="note">'
        f'<label for="note-{tid}">{note_label}</label>'
        f'<textarea id="note-{tid}" name="note" required></textarea>'
        f'<button type="submit">{note_word}</button></form>'
        f'<form method="post" action="{action}">{back_field}'
        f'<input type="hidden" name="action" value="complete">'
        f'<label for="outcome-{tid}">{outcome_label}</label>'
        f'<select id="outcome-{tid}" name="outcome">{options}</select> '
        f'<button type="submit">{complete_word}</button></form>'
    )


def _task_cell(task: dict[str, Any]) -> str:
    cell = (
        f"{html.escape(task['description'] or '')}"
        f"<br><small>{html.escape(task['statusText'])}</small>"
    )
    if task["notes"]:
        cell += f"<br><small>{html.escape(task['notes'][-1]['text'] or '')}</small>"
    return cell


def _items(r: dict[str, Any], back: str) -> list[tuple[str, ...]]:
    """The row's lines in the order the worklist gives them (most urgent first): per reason,
    its open Tasks with since when, owner and forms, or the reason alone when no Task stands
    for it (no measurements, a message not received); a Task whose reason is not among the
    row's reasons last, never left out."""

    def task_line(task: dict[str, Any]) -> tuple[str, ...]:
        return (
            task["reason"]["code"],
            task["reason"]["text"],
            task["since"]["text"] if task["since"] else text("worklist.since_unknown"),
            _task_cell(task),
            html.escape(task["owner"] or text("worklist.no_owner")),
            _forms(task, back),
        )

    lines: list[tuple[str, ...]] = []
    shown: set[str] = set()
    for reason in r["reasons"]:
        tasks = [t for t in r["tasks"] if t["reason"]["code"] == reason["code"]]
        if tasks:
            lines += [task_line(t) for t in tasks]
            shown.add(reason["code"])
            continue
        cell = ""
        if reason["code"] == "message-failed":
            cell = "<br>".join(
                f"{html.escape(m['statusText'])} ({html.escape(m['created']['text'])})"
                for m in r["messages"]
            )
        lines.append(
            (
                reason["code"],
                reason["text"],
                reason["since"]["text"] if reason["since"] else "–",
                cell,
                "–",
                "",
            )
        )
    lines += [task_line(t) for t in r["tasks"] if t["reason"]["code"] not in shown]
    return lines


def _row(r: dict[str, Any], back: str, days: int) -> str:
    """One patient: a row group with a line per open Task and per other reason; the patient
    and the latest values span the lines."""
    p = r["patient"]
    name = p["name"] or text("worklist.unknown_name")
    values = (
        "".join(
            f"<li>{html.escape(v['display'])}: {html.escape(v['text'])}"
            f"{_zone_badge(v['zone'], v['zoneText'])}"
            f" <small>({html.escape(v['time']['text'])})</small></li>"
            for v in r["latest"]
        )
        or f"<li>{html.escape(text('worklist.no_values', days=days))}</li>"
    )
    who = html.escape(name)
    if p["nationalId"]:  # the patient's summary (charts, events, plan) as the centre sees it
        summary = f"/api/v1/patients/{quote(p['nationalId'])}/summary?view=followup"
        who = f'<a href="{html.escape(summary)}">{who}</a>'
    lines = _items(r, back) or [("", "", "–", "", "–", "")]
    span = f' rowspan="{len(lines)}"' if len(lines) > 1 else ""
    out = []
    for i, (code, reason, since, task_cell, owner, forms) in enumerate(lines):
        cells = (
            f'<td class="reason-{html.escape(code)}">{html.escape(reason)}</td>'
            f"<td>{html.escape(since)}</td>"
        )
        if i == 0:
            cells = (
                f'<th scope="rowgroup"{span}>{who}<br>'
                f'<span class="fnr">{html.escape(p["nationalId"] or "")}</span></th>'
                + cells
                + f'<td{span}><ul class="plain">{values}</ul></td>'
            )
        out.append(f"<tr>{cells}<td>{task_cell}</td><td>{owner}</td><td>{forms}</td></tr>")
    return f"<tbody>{''.join(out)}</tbody>"


def render_html(
    rows: list[dict[str, Any]],
    organization: str,
    name: str | None,
    now: datetime,
    zone: str,
    path: str,
) -> str:
    days = ordering().latest_values_days
    back = f"{path}?{urlencode({'organization': organization})}"
    title = text("worklist.title", organization=name or organization)
    cols = "".join(
        f'<th scope="col">{html.escape(text(f"worklist.columns.{c}"))}</th>'
        for c in ("patient", "reasons", "since", "latest", "task", "owner", "actions")
    )
    body = "".join(_row(r, back, days) for r in rows)
    table = (
        f'<table id="worklist"><caption>{html.escape(text("worklist.count", patients=plural(len(rows), "patient")))}</caption>'
        f"<thead><tr>{cols}</tr></thead>{body}</table>"
        if rows
        else f"<p>{html.escape(text('worklist.empty'))}</p>"
    )
    return page(
        title,
        f"<h1>{html.escape(title)}</h1>"
        f'<p class="meta">{html.escape(text("worklist.intro", time=local_time(now, zone)))}</p>'
        f'<p class="meta">{html.escape(text("page.zone_legend"))}</p>{table}',
    )
