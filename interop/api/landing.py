"""``GET /``: the first page a person sees after ``make run`` — what runs, and where to go next
(the worklist and the indicators of each organisation that follows patients up here, a
patient's summary, the API documentation, health and metrics). It names no patient and needs
no credentials."""

from __future__ import annotations

import html
from urllib.parse import urlencode

import orjson
from fastapi import APIRouter, Request
from starlette.responses import HTMLResponse

from interop import __version__
from interop.text import catalogue, text
from interop.views.page import page

router = APIRouter(tags=["operations"])


ORGNR_SYSTEM = "urn:oid:2.16.578.1.12.4.1.4.101"
MAX_ORGANISATIONS = 20


def _followup_organisations(request: Request) -> list[tuple[str, str]]:
    """(name, org.nr) of the organisations that manage patients here (the demo's follow-up
    centre after ``make run``): public facts about organisations, never about a patient."""
    from sqlalchemy import select

    from interop.store.schema import reference_table as ref
    from interop.store.schema import resource_table as res
    from interop.store.schema import token_table as tok

    with request.app.state.services.store.reader() as conn:
        targets = [
            t[13:]
            for (t,) in conn.execute(
                select(ref.c.target)
                .where(ref.c.res_type == "Patient", ref.c.param == "organization")
                .distinct()
                .limit(MAX_ORGANISATIONS)
            )
            if isinstance(t, str) and t.startswith("Organization/")
        ]
        if not targets:
            return []
        orgnr = dict(
            conn.execute(
                select(tok.c.res_id, tok.c.code).where(
                    tok.c.res_type == "Organization",
                    tok.c.param == "identifier",
                    tok.c.system == ORGNR_SYSTEM,
                    tok.c.res_id.in_(targets),
                )
            ).all()
        )
        found = conn.execute(
            select(res.c.res_id, res.c.content).where(
                res.c.res_type == "Organization",
                res.c.res_id.in_(list(orgnr)),
                res.c.deleted.is_(False),
            )
        ).all()
    names = {rid: str(orjson.loads(content).get("name") or orgnr[rid]) for rid, content in found}
    return sorted((names[rid], orgnr[rid]) for rid in names)


def _organisation_links(request: Request) -> str:
    items = []
    for name, orgnr in _followup_organisations(request):
        q = urlencode({"organization": orgnr})
        items.append(
            f"<li>{html.escape(name)} ({html.escape(orgnr)}): "
            f'<a href="/api/v1/worklist?{html.escape(q)}">{html.escape(text("landing.worklist_link"))}</a>, '
            f'<a href="/api/v1/indicators?{html.escape(q)}">{html.escape(text("landing.indicators_link"))}</a></li>'
        )
    return f"<ul>{''.join(items)}</ul>" if items else ""


def _links() -> str:
    items = catalogue().lookup("landing.links")
    return "".join(
        f'<li><a href="{html.escape(href)}">{html.escape(label)}</a></li>'
        for href, label in items.items()
    )


@router.get("/", response_class=HTMLResponse)
def landing(request: Request) -> HTMLResponse:
    settings = request.app.state.services.settings
    store = "PostgreSQL" if settings.database_url.startswith("postgresql") else "SQLite"
    title = text("landing.title")
    body = (
        f"<h1>{html.escape(title)}</h1>"
        f"<p>{html.escape(text('landing.running', version=__version__, store=store))}</p>"
        f"<h2>{html.escape(text('landing.worklist'))}</h2>"
        f"{_organisation_links(request)}"
        f'<form method="get" action="/api/v1/worklist">'
        f'<label for="organization">{html.escape(text("landing.orgnr"))}</label>'
        f'<input id="organization" name="organization" inputmode="numeric" pattern="[0-9]{{9}}" required> '
        f'<button type="submit">{html.escape(text("landing.open"))}</button></form>'
        f"<h2>{html.escape(text('landing.summary'))}</h2>"
        f"<p>{html.escape(text('landing.summary_how'))}</p>"
        f"<p><code>/api/v1/patients/&lt;fødselsnummer&gt;/summary?view=gp</code></p>"
        f"<h2>{html.escape(text('landing.more'))}</h2><ul>{_links()}</ul>"
        f"<p>{html.escape(text('landing.keys'))}</p>"
    )
    return HTMLResponse(page(title, body))
