"""``GET /api/v1/indicators``: styringsinformasjon as JSON, CSV, FHIR MeasureReport or HTML."""

from __future__ import annotations

import html

import orjson
from fastapi import APIRouter, Depends, Request
from starlette.responses import HTMLResponse, Response

from interop.access.policy import Action
from interop.api.auth import Actor, require_actor
from interop.api.responses import json_response
from interop.fhir.outcome import error
from interop.identifiers import validate_orgnr
from interop.indicators import Indicators, compute, parse_period, to_csv, to_measure_report

router = APIRouter(prefix="/api/v1", tags=["indicators"])


def _bar_chart(ind: Indicators) -> str:
    shares = [
        (label, ind.values.get(key, {}).get("value"), colour)
        for label, key, colour in (
            ("green", "shareGreen", "#2e7d32"),
            ("yellow", "shareYellow", "#f9a825"),
            ("red", "shareRed", "#c62828"),
        )
    ]
    bars = []
    for i, (label, value, colour) in enumerate(shares):
        width = 0 if value is None else int(value * 300)
        text = "suppressed" if value is None else f"{value * 100:.1f} %"
        y = 10 + i * 28
        bars.append(
            f'<text x="0" y="{y + 15}" font-size="13">{label}</text>'
            f'<rect x="60" y="{y}" width="{width}" height="20" fill="{colour}"/>'
            f'<text x="{66 + width}" y="{y + 15}" font-size="13">{text}</text>'
        )
    return (
        '<svg role="img" aria-label="share of measurements per zone" width="460" height="96" '
        'xmlns="http://www.w3.org/2000/svg">' + "".join(bars) + "</svg>"
    )


def render_html(ind: Indicators) -> str:
    rows = []
    for name, item in ind.values.items():
        if isinstance(item, dict) and "value" in item:
            val = "–" if item["value"] is None else item["value"]
            note = " (suppressed: small count)" if item.get("suppressed") else ""
            rows.append(
                f"<tr><th>{html.escape(name)}</th><td>{html.escape(str(val))}{note}</td></tr>"
            )
        elif isinstance(item, dict) and "median" in item:
            rows.append(
                f"<tr><th>{html.escape(name)}</th><td>median {item['median']} h, "
                f"p90 {item['p90']} h (n={item['n']})</td></tr>"
            )
    title = f"Styringsinformasjon — {html.escape(ind.organization_name or ind.organization)}"
    return f"""<!doctype html><html lang="no"><head><meta charset="utf-8"><title>{title}</title>
<style>body{{font-family:system-ui,sans-serif;margin:2em;max-width:60em}}table{{border-collapse:collapse}}
th,td{{text-align:left;padding:.25em 1em;border-bottom:1px solid #ddd}}@media print{{body{{margin:0}}}}</style>
</head><body><h1>{title}</h1><p>Periode {ind.period_start} – {ind.period_end}; tall under {ind.suppress_below} vises ikke.</p>
{_bar_chart(ind)}<table>{"".join(rows)}</table></body></html>"""


@router.get("/indicators")
def indicators(
    request: Request,
    organization: str,
    period: str,
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
    start, end = parse_period(period)
    svc = request.app.state.services
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
