"""``GET /``: the first page a person sees after ``make run`` — what runs, and where to go next
(the worklist, a patient's summary, the API documentation, health and metrics). It names no
patient and needs no credentials."""

from __future__ import annotations

import html

from fastapi import APIRouter, Request
from starlette.responses import HTMLResponse

from interop import __version__
from interop.text import catalogue, text
from interop.views.page import page

router = APIRouter(tags=["operations"])


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
