"""A tour of the running demo in real headless Chromium, as a follow-up nurse, a GP, a hospital
clinician and an operator would take it, checking from the rendered pages: Norwegian text,
Norwegian local times, charts with dated axes and units, every red event reachable, nothing
loaded from another host, and axe-core (WCAG 2.1 AA) with no serious or critical violation.
Screenshots are kept in var/test-output/tour/."""

from __future__ import annotations

import re
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlparse

import pytest
from axe_playwright_python.sync_playwright import Axe
from playwright.sync_api import Browser, Page, sync_playwright

from interop.api.app import create_app
from interop.demo_loader import load_demo
from tests.conftest import REPO
from tests.live_server import live_server

OUT = REPO / "var" / "test-output" / "tour"
ENGLISH = ("(red)", "(yellow)", "(green)", "Assess ", "mm[Hg]", "snitt 93.", "1 målinger", "Cel")
LOCAL_TIME = re.compile(r"\d{2}\.\d{2}\.\d{4} kl\. \d{2}:\d{2}")
ISO_TIME = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}")
PLAN = {
    "zones": [
        {"code": "2708-6", "unit": "%", "green": {"low": 92.5}, "yellow": {"low": 88}},
        {"code": "8867-4", "unit": "/min", "green": {"low": 50, "high": 100}},
    ],
    "goals": ["Gå på tur med barnebarna"],
    "content": [
        {
            "zone": "yellow",
            "signs": ["Mer tungpustet enn vanlig"],
            "medication": ["Ta ekstra Furix 40 mg som avtalt med fastlegen"],
            "contact": {"name": "Oppfølgingssenteret", "phone": "73555555"},
        }
    ],
}
"""The plan the follow-up centre proposes to a GP in the tour."""
AXE_TAGS = {"runOnly": {"type": "tag", "values": ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"]}}


def _chromium() -> str:
    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    assert exe, "headless Chromium is needed (Debian package chromium; `make test` installs it)"
    return exe


@dataclass
class Demo:
    base: str
    keys: dict[str, str]
    centre: str
    gp_patient: str
    hospital_patient: str
    proposed_plan: str
    """A plan the follow-up centre proposed to the GP of ``gp_patient``."""


def _identifier(resource: dict[str, Any], suffix: str) -> str:
    return next(i["value"] for i in resource["identifier"] if i["system"].endswith(suffix))


@pytest.fixture
def demo(settings, services, client) -> Iterator[Demo]:  # type: ignore[no-untyped-def]
    load_demo(settings, patients=12, days=30, seed=11)
    orgs = {
        e["resource"]["name"]: e["resource"]
        for e in client.get("/fhir/Organization", params={"_count": 50}).json()["entry"]
    }
    centre = _identifier(next(o for n, o in orgs.items() if "ppfølging" in n), ".4.101")
    hospital = _identifier(next(o for n, o in orgs.items() if "sykehus" in n), ".4.101")
    rows = client.get("/api/v1/worklist", params={"organization": centre}).json()["rows"]
    today = next(r for r in rows if any(v["zone"] == "red" for v in r["latest"]))
    patient = client.get(f"/fhir/Patient/{today['patient']['id']}").json()
    role = client.get(f"/fhir/{patient['generalPractitioner'][0]['reference']}").json()
    gp = client.get(f"/fhir/{role['practitioner']['reference']}").json()
    episode = client.get("/fhir/EpisodeOfCare", params={"status": "active"}).json()["entry"][0]
    in_hospital = client.get(f"/fhir/{episode['resource']['patient']['reference']}").json()

    def key(body: dict[str, Any]) -> str:
        r = client.post("/api/v1/actors", json=body)
        assert r.status_code == 201, r.text
        return str(r.json()["key"])

    keys = {
        "nurse": key(
            {"role": "followup", "organization": {"orgnr": centre}, "name": "Sykepleier Siri"}
        ),
        "gp": key({"role": "gp", "hpr": _identifier(gp, ".4.4"), "name": "Fastlege"}),
        "hospital": key({"role": "hospital", "organization": {"orgnr": hospital}}),
        "operator": settings.admin_key,
    }
    draft = client.post(f"/api/v1/patients/{_identifier(patient, '.4.1')}/plan/drafts", json=PLAN)
    assert draft.status_code == 201, draft.text
    proposed_plan = draft.json()["carePlan"]["id"]
    proposed = client.post(
        f"/api/v1/patients/{_identifier(patient, '.4.1')}/plan/drafts/{proposed_plan}/propose"
    )
    assert proposed.status_code == 200, proposed.text
    app = create_app(settings, services=services)
    with live_server(app) as base:
        yield Demo(
            base,
            keys,
            centre,
            _identifier(patient, ".4.1"),
            _identifier(in_hospital, ".4.1"),
            proposed_plan,
        )


@pytest.fixture
def browser() -> Iterator[Browser]:
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=_chromium(), args=["--no-sandbox"])
        try:
            yield b
        finally:
            b.close()


class Visit:
    """One user's browser: their key on every request, and every request to another host
    refused and recorded."""

    def __init__(self, browser: Browser, demo: Demo, who: str) -> None:
        self.who = who
        self.elsewhere: list[str] = []
        self.context = browser.new_context(
            extra_http_headers={"Authorization": f"Bearer {demo.keys[who]}"},
            viewport={"width": 1280, "height": 900},
            locale="nb-NO",
            timezone_id="Europe/Oslo",
        )
        host = urlparse(demo.base).netloc

        def route(r: Any) -> None:
            if urlparse(r.request.url).netloc != host:
                self.elsewhere.append(r.request.url)
                r.abort()
            else:
                r.continue_()

        self.context.route("**/*", route)
        self.page: Page = self.context.new_page()
        self.base = demo.base

    def open(self, path: str, shot: str) -> Page:
        response = self.page.goto(self.base + path, wait_until="networkidle")
        assert response is not None and response.status == 200, (path, response and response.status)
        OUT.mkdir(parents=True, exist_ok=True)
        self.page.screenshot(path=str(OUT / f"{self.who}-{shot}.png"), full_page=True)
        return self.page

    def check_text(self) -> str:
        text = self.page.inner_text("body")
        for wrong in ENGLISH:
            assert wrong not in text, (self.who, self.page.url, wrong)
        assert not ISO_TIME.search(text), (self.who, self.page.url, ISO_TIME.search(text))
        return text

    def check_axe(self) -> None:
        results = Axe().run(self.page, options=AXE_TAGS)
        bad = [
            (v["id"], v["impact"], len(v["nodes"]))
            for v in results.response["violations"]
            if v.get("impact") in ("serious", "critical")
        ]
        assert not bad, (self.who, self.page.url, bad)

    def close(self) -> None:
        assert not self.elsewhere, (self.who, "requests to other hosts", self.elsewhere)
        self.context.close()


def _summary_checks(v: Visit, view: str, fnr: str) -> None:
    page = v.open(f"/api/v1/patients/{fnr}/summary?view={view}", view)
    text = v.check_text()
    assert f"fødselsnummer {fnr}" in text
    assert LOCAL_TIME.search(text)
    charts = page.locator("svg.chart")
    assert charts.count() >= 1
    first = charts.first.inner_html()
    assert re.search(r">\d{2}\.\d{2}\.\d{2}<", first), "the time axis has dates"
    assert 'class="axis"' in first and "<text" in first
    # every red event is reachable: the header's count is what the (full) list holds
    red = int(re.search(r"Røde hendelser: (\d+)", text).group(1))  # type: ignore[union-attr]
    more = page.locator("#events-shown a")
    if more.count():
        more.first.click()
        page.wait_for_load_state("networkidle")
        v.check_text()
    assert page.locator("#events li.ev-red").count() == red
    v.check_axe()


def test_tour(demo: Demo, browser: Browser, client: Any) -> None:
    # the follow-up nurse: her worklist, a Task taken and completed from the page
    nurse = Visit(browser, demo, "nurse")
    page = nurse.open(f"/api/v1/worklist?organization={demo.centre}", "worklist")
    text = nurse.check_text()
    assert "Arbeidsliste" in text and "Rød måling" in text and LOCAL_TIME.search(text)
    nurse.check_axe()
    first = page.locator("#worklist tbody tr").first
    who = first.locator("th").inner_text()
    first.get_by_role("button", name="Ta ansvar").click()
    page.wait_for_load_state("networkidle")
    row = page.locator("#worklist tbody tr", has_text=who.splitlines()[0]).first
    assert "Sykepleier Siri" in row.inner_text()
    row.get_by_label("Utfall").select_option("kontaktet-pasient")
    row.get_by_role("button", name="Fullfør").click()
    page.wait_for_load_state("networkidle")
    page = nurse.open(f"/api/v1/worklist?organization={demo.centre}", "worklist-after")
    # … a patient's summary from the row's link, and the centre's indicators
    link = page.locator("#worklist tbody tr th a").first
    name = link.inner_text()
    link.click()
    page.wait_for_load_state("networkidle")
    OUT.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(OUT / "nurse-summary.png"), full_page=True)
    text = nurse.check_text()
    assert name in text and "fødselsnummer" in text and LOCAL_TIME.search(text)
    assert page.locator("svg.chart").count() >= 1
    nurse.check_axe()
    nurse.open(f"/api/v1/indicators?organization={demo.centre}", "indicators")
    text = nurse.check_text()
    assert "Styringsinformasjon" in text and "Kontakter per pasientmåned" in text
    nurse.check_axe()
    nurse.close()

    # the GP: the summary of a patient deteriorating now
    gp = Visit(browser, demo, "gp")
    _summary_checks(gp, "gp", demo.gp_patient)
    # … and a plan the follow-up centre proposes for that patient, approved on its page
    approval = f"/api/v1/patients/{demo.gp_patient}/plan/{demo.proposed_plan}/approval"
    page = gp.open(approval, "plan-approval")
    text = gp.check_text()
    assert "Hva er viktig for deg?" in text and "Gå på tur med barnebarna" in text
    assert "≥ 92,5 %" in text and "Ta ekstra Furix 40 mg" in text
    gp.check_axe()
    page.get_by_role("button", name="Godkjenn planen").click()
    page.wait_for_load_state("networkidle")
    text = gp.check_text()
    assert "Du godkjente planen" in text and LOCAL_TIME.search(text)
    assert page.get_by_role("button", name="Godkjenn planen").count() == 0
    OUT.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(OUT / "gp-plan-approved.png"), full_page=True)
    gp.check_axe()
    gp.close()
    versions = client.get(f"/api/v1/patients/{demo.gp_patient}/plan/versions").json()
    assert next(v for v in versions if v["id"] == demo.proposed_plan)["state"] == "active"

    # the hospital clinician: the patient with an active episode
    hospital = Visit(browser, demo, "hospital")
    _summary_checks(hospital, "hospital", demo.hospital_patient)
    hospital.close()

    # the operator: the landing page and the API documentation, offline
    operator = Visit(browser, demo, "operator")
    landing = operator.open("/", "landing")
    operator.check_text()
    operator.check_axe()
    assert landing.locator('a[href="/docs"]').count() == 1
    docs = operator.open("/docs", "docs")
    docs.wait_for_selector(".swagger-ui .info", timeout=20_000)
    assert "DHO Interop" in docs.inner_text(".swagger-ui .info")
    redoc = operator.open("/redoc", "redoc")
    redoc.wait_for_selector("h1", timeout=20_000)
    operator.close()
