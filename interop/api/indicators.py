"""``GET /api/v1/indicators``: styringsinformasjon as JSON, CSV, FHIR MeasureReport or HTML."""

from __future__ import annotations

import html
from typing import Any

import orjson
from fastapi import APIRouter, Depends, Request
from starlette.responses import HTMLResponse, Response

from interop.access.policy import Action
from interop.api.auth import Actor, require_actor
from interop.api.responses import json_response
from interop.care.deviations import outcome_display
from interop.fhir.outcome import error
from interop.identifiers import validate_orgnr
from interop.indicators import (
    Indicators,
    compute,
    default_period,
    parse_period,
    to_csv,
    to_measure_report,
)
from interop.text import catalogue, number, text, zone_name
from interop.views.page import page

router = APIRouter(prefix="/api/v1", tags=["indicators"])


def _bar_chart(ind: Indicators) -> str:
    shares = [
        (zone_name(zone), ind.values.get(key, {}).get("value"), colour)
        for zone, key, colour in (
            ("green", "shareGreen", "#1b5e20"),
            ("yellow", "shareYellow", "#8a6d00"),
            ("red", "shareRed", "#b00020"),
        )
    ]
    bars = []
    for i, (label, value, colour) in enumerate(shares):
        width = 0 if value is None else int(value * 300)
        shown = text("indicators.suppressed") if value is None else f"{number(value * 100, 1)} %"
        y = 10 + i * 28
        bars.append(
            f'<text x="0" y="{y + 15}" font-size="13" fill="#1a1a1a">{html.escape(label)}</text>'
            f'<rect x="60" y="{y}" width="{width}" height="20" fill="{colour}"/>'
            f'<text x="{66 + width}" y="{y + 15}" font-size="13" fill="#1a1a1a">{html.escape(shown)}</text>'
        )
    return (
        f'<svg role="img" aria-label="{html.escape(text("indicators.chart_label"))}" width="520" '
        'height="96" xmlns="http://www.w3.org/2000/svg">' + "".join(bars) + "</svg>"
    )


SHARES = frozenset({"adherence", "shareGreen", "shareYellow", "shareRed", "shareHandledWithoutGp"})
"""The figures that are shares (0–1 in the data), shown on the page as percentages."""


def _figure(item: dict[str, Any], share: bool = False) -> str:
    if "median" in item:
        if item["median"] is None:
            return text("indicators.suppressed") if item.get("suppressed") else "–"
        return text(
            "indicators.hours",
            median=number(item["median"]),
            p90=number(item["p90"]),
            n=item["n"],
        )
    if item.get("value") is None:
        return text("indicators.suppressed") if item.get("suppressed") else "–"
    value = item["value"]
    if share and isinstance(value, int | float):
        return f"{number(value * 100, 1)} %"
    return number(value) if isinstance(value, int | float) else str(value)


def render_html(ind: Indicators) -> str:
    rows = []
    for name, item in ind.values.items():
        label = catalogue().get(f"indicators.names.{name}")
        if label is None:
            continue  # a figure for machines (e.g. the adherence basis), not for the page
        if name == "contactsPerPatientMonth":
            for code, sub in item.items():
                rows.append(
                    (
                        text(f"indicators.names.{name}", outcome=outcome_display(code)),
                        _figure(sub),
                    )
                )
        elif isinstance(item, dict):
            rows.append((label, _figure(item, name in SHARES)))
        else:
            rows.append((label, number(item) if isinstance(item, int | float) else str(item)))
    table = "".join(
        f'<tr><th scope="row">{html.escape(k)}</th><td>{html.escape(v)}</td></tr>' for k, v in rows
    )
    title = text("indicators.title", organization=ind.organization_name or ind.organization)
    return page(
        title,
        f"<h1>{html.escape(title)}</h1><p>"
        + html.escape(
            text(
                "indicators.period",
                start=ind.period_start.strftime("%d.%m.%Y"),
                end=ind.period_end.strftime("%d.%m.%Y"),
                threshold=ind.suppress_below,
            )
        )
        + f"</p>{_bar_chart(ind)}<table>{table}</table>",
    )


@router.get("/indicators")
def indicators(
    request: Request,
    organization: str,
    period: str | None = None,
    format: str = "json",
    actor: Actor = Depends(require_actor),
) -> Response:
    if not validate_orgnr(organization):
        raise error(422, "value", f"organization {organization!r} is not a valid org.nr")
    request.app.state.services.policy.require_role(actor, Action.INDICATORS)
    if not (actor.is_admin or actor.orgnr == organization):
        raise error(
            403,
            "forbidden",
            "indicators are for admins and the organisation's own follow-up centre/EPJ",
        )
    svc = request.app.state.services
    start, end = parse_period(period) if period else default_period(svc.settings.timezone)
    with svc.store.reader() as conn:
        ind = compute(
            conn,
            organization,
            start,
            end,
            zone_name=svc.settings.timezone,
            suppress_below=svc.settings.suppress_below,
        )
    accept = request.headers.get("accept", "")
    if format == "csv":
        return Response(to_csv(ind), media_type="text/csv; charset=utf-8")
    if format in ("fhir", "measurereport") or "fhir" in accept:
        return json_response(to_measure_report(ind))
    if format == "html" or ("text/html" in accept and format == "json" and "json" not in accept):
        return HTMLResponse(render_html(ind))
    if format != "json":
        raise error(400, "invalid", f"format {format!r}: use json, csv, fhir or html")
    return Response(orjson.dumps(ind.to_json()), media_type="application/json")
