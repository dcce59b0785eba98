"""The GP's HTML page for a proposed egenbehandlingsplan: the plan in readable Norwegian, a form
to approve it (recorded exactly as the API approval) or to ask for changes (back to draft with
the GP's text), reachable with the Authorization header or by link (``?access_token=``, then
the token travels in the form), and only for the patient's own GP, only while proposed, only
with a signed form token for the version the GP read."""

from __future__ import annotations

import html
import re
import time
from pathlib import Path
from typing import Any

from interop.access.actor import Actor
from interop.api import form_token
from tests.messaging.test_gp_flow import FNR, address_book

OTHER_FNR = "02028099471"
"""A valid fødselsnummer of nobody in the service."""
BODY = {
    "title": "Egenbehandlingsplan hjertesvikt",
    "zones": [
        {
            "code": "2708-6",
            "unit": "%",
            "green": {"low": 92.5, "high": None},
            "yellow": {"low": 88, "high": None},
        },
        {
            "code": "8867-4",
            "unit": "/min",
            "green": {"low": 50, "high": 100},
            "yellow": {"low": 40, "high": 120},
        },
    ],
    "goals": ["Klare å gå tur med hunden hver dag"],
    "content": [
        {
            "zone": "yellow",
            "signs": ["Oksygenmetning under grønn sone", "Mer tungpustet enn vanlig"],
            "patientActions": ["Hvil og mål på nytt etter 30 minutter"],
            "medication": ["Ta ekstra Furix 40 mg som avtalt med fastlegen"],
            "contact": {"name": "Oppfølgingssenteret", "phone": "73555555"},
        },
        {
            "zone": "red",
            "signs": ["Brystsmerter"],
            "serviceActions": ["Sykepleier ringer pasienten innen en time"],
            "contact": {"name": "Legevakt", "phone": "116117"},
        },
    ],
}
HTML = {"Accept": "text/html"}
FORM = {"Content-Type": "application/x-www-form-urlencoded"}
LINK = {"Authorization": ""}
"""A browser that followed a link: no Authorization header (the test client sends the admin's
key unless told otherwise)."""


def _key(client: Any, body: dict[str, Any]) -> str:
    r = client.post("/api/v1/actors", json=body)
    assert r.status_code == 201, r.text
    return str(r.json()["key"])


def _world(client: Any, tmp_path: Path) -> dict[str, Any]:
    ids = address_book(client, tmp_path)
    hpr = client.get(f"/fhir/Practitioner/{ids['practitioner']}").json()["identifier"][0]["value"]
    r = client.post(f"/api/v1/patients/{FNR}/plan/drafts", json=BODY)
    assert r.status_code == 201, r.text
    plan_id = r.json()["carePlan"]["id"]
    assert client.post(f"/api/v1/patients/{FNR}/plan/drafts/{plan_id}/propose").status_code == 200
    return {
        **ids,
        "hpr": hpr,
        "plan": plan_id,
        "page": f"/api/v1/patients/{FNR}/plan/{plan_id}/approval",
        "gp": _key(client, {"role": "gp", "hpr": hpr, "name": "Rita Lin"}),
    }


def _bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def _fields(page: str) -> dict[str, str]:
    """The hidden fields of the page's first form."""
    form = page.split("<form", 1)[1].split("</form>", 1)[0]
    return {
        html.unescape(m.group(1)): html.unescape(m.group(2))
        for m in re.finditer(r'<input type="hidden" name="([^"]+)" value="([^"]*)">', form)
    }


def _state(client: Any, plan_id: str) -> str:
    cp = client.get(f"/fhir/CarePlan/{plan_id}").json()
    return str(next(e["valueCode"] for e in cp["extension"] if e["url"].endswith("plan-state")))


def _verifiers(client: Any, plan_id: str) -> list[dict[str, Any]]:
    bundle = client.get("/fhir/Provenance", params={"target": f"CarePlan/{plan_id}"}).json()
    return [
        {**a["who"], "recorded": e["resource"]["recorded"]}
        for e in bundle.get("entry", [])
        for a in e["resource"]["agent"]
        if a["type"]["coding"][0]["code"] == "verifier"
    ]


def test_the_gp_reads_the_plan_in_norwegian_and_approves_it(
    client: Any, services: Any, tmp_path: Path
) -> None:
    w = _world(client, tmp_path)
    r = client.get(w["page"], headers={**HTML, **_bearer(w["gp"])})
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/html")
    assert r.headers["cache-control"] == "no-store"
    page = html.unescape(r.text)
    assert '<html lang="nb">' in page
    assert "Hva er viktig for deg?" in page and "Klare å gå tur med hunden hver dag" in page
    # thresholds with display names, display units and decimal comma; red spelled out
    assert "Oksygenmetning (SpO2)" in page and "≥ 92,5 %" in page and "under 88 %" in page
    assert "Puls" in page and "50–100 /min" in page and "under 40 eller over 120 /min" in page
    assert "2708-6" not in page and "8867-4" not in page and "92.5" not in page
    # per zone: signs incl. symptoms, what the patient and the service do, medication, contact
    assert "Mer tungpustet enn vanlig" in page and "Hvil og mål på nytt" in page
    assert "Ta ekstra Furix 40 mg" in page and "Oppfølgingssenteret, tlf. 73555555" in page
    assert "Sykepleier ringer pasienten innen en time" in page and "Legevakt, tlf. 116117" in page
    assert "foreslått, venter på fastlegens godkjenning" in page
    fields = _fields(r.text)
    assert set(fields) == {"form_token", "decision"}, "no token in the page when sent as header"

    r = client.post(w["page"], data=fields, headers={**FORM, **_bearer(w["gp"])})
    assert r.status_code == 200, r.text
    assert "Du godkjente planen" in r.text and re.search(
        r"\d\d\.\d\d\.\d{4} kl\. \d\d:\d\d", r.text
    )
    assert _state(client, w["plan"]) == "active"
    # recorded exactly as the API approval: the GP as verifier (Practitioner + HPR), when
    [verifier] = _verifiers(client, w["plan"])
    assert verifier["reference"] == f"Practitioner/{w['practitioner']}"
    assert verifier["identifier"]["value"] == w["hpr"]
    cp = client.get(f"/fhir/CarePlan/{w['plan']}").json()
    assert verifier["recorded"] == cp["period"]["start"]
    assert "<form" not in r.text, "an active plan has nothing to approve"

    # a second approval (a replayed form) is refused, on the page, in Norwegian
    again = client.post(w["page"], data=fields, headers={**FORM, **_bearer(w["gp"])})
    assert again.status_code == 409
    assert "Planen er aktiv (godkjent). Bare en foreslått plan kan godkjennes" in html.unescape(
        again.text
    )
    assert len(_verifiers(client, w["plan"])) == 1
    # revoked: still not approvable
    revoked = client.post(f"/api/v1/patients/{FNR}/plan/{w['plan']}/revoke", json={"reason": "x"})
    assert revoked.status_code == 200
    late = client.post(w["page"], data=fields, headers={**FORM, **_bearer(w["gp"])})
    assert late.status_code == 409 and _state(client, w["plan"]) == "revoked"
    api = client.post(f"/api/v1/patients/{FNR}/plan/{w['plan']}/approve", headers=_bearer(w["gp"]))
    assert api.status_code == 409
    assert len(_verifiers(client, w["plan"])) == 1


def test_opened_by_link_the_gp_asks_for_changes_without_javascript_or_header(
    client: Any, services: Any, tmp_path: Path
) -> None:
    w = _world(client, tmp_path)
    # a link: the token in the URL (only for this page, only GET, only for HTML)
    r = client.get(w["page"], params={"access_token": w["gp"]}, headers={**LINK, **HTML})
    assert r.status_code == 200, r.text
    assert r.headers.get("referrer-policy") == "no-referrer"
    as_json = client.get(w["page"], params={"access_token": w["gp"]}, headers=LINK)
    assert as_json.status_code == 401, "a token in the URL is for a browser's page only"
    fields = _fields(r.text)
    assert fields["access_token"] == w["gp"], "the form carries the token back (RFC 6750 §2.2)"
    # the second form asks for changes, with a text
    fields["decision"] = "changes"
    empty = client.post(w["page"], data={**fields, "text": "  "}, headers={**LINK, **FORM})
    assert empty.status_code == 422 and "Skriv hva som bør endres" in empty.text
    assert _state(client, w["plan"]) == "proposed"
    text = "Grønn SpO2 bør være ≥ 93 %, ikke 92,5."
    r = client.post(w["page"], data={**fields, "text": text}, headers={**LINK, **FORM})
    assert r.status_code == 200, r.text
    assert "sendt tilbake til oppfølgingstjenesten" in r.text
    cp = client.get(f"/fhir/CarePlan/{w['plan']}").json()
    assert _state(client, w["plan"]) == "draft" and cp["status"] == "draft"
    assert cp["note"][-1]["text"] == f"Svar fra fastlege Rita Lin: {text}"
    assert any(e["valueString"] == text for e in cp["extension"] if "gp-answer" in e["url"])
    assert _verifiers(client, w["plan"]) == []
    # without any token the form is refused
    bare = {k: v for k, v in fields.items() if k != "access_token"}
    refused = client.post(w["page"], data={**bare, "text": text}, headers={**LINK, **FORM})
    assert refused.status_code == 401


def test_only_the_patients_own_gp_and_never_revealing(
    client: Any, services: Any, tmp_path: Path
) -> None:
    w = _world(client, tmp_path)
    other_gp = _key(client, {"role": "gp", "hpr": "1234567", "name": "Annen Lege"})
    nurse = _key(client, {"role": "followup", "organization": {"orgnr": "987789328"}})
    # another GP: the same 403 as for a fødselsnummer nobody has — nothing of the patient
    mine = client.get(w["page"], headers={**HTML, **_bearer(other_gp)})
    nobody = client.get(
        f"/api/v1/patients/{OTHER_FNR}/plan/{w['plan']}/approval",
        headers={**HTML, **_bearer(other_gp)},
    )
    assert mine.status_code == nobody.status_code == 403
    assert mine.json() == nobody.json()
    assert "Klare å gå tur" not in mine.text and "Rita" not in mine.text
    # another GP with a form token of their own making is still refused, and nothing changes
    actor = Actor(id="forged", role="gp", hpr="1234567")
    token = form_token.sign(services.settings.admin_key, actor, f"CarePlan/{w['plan']}", 1)
    r = client.post(
        w["page"],
        data={"decision": "approve", "form_token": token},
        headers={**FORM, **_bearer(other_gp)},
    )
    assert r.status_code == 403 and _state(client, w["plan"]) == "proposed"
    # a nurse cannot approve as the GP: not on the page, not with the GP's form, not by API
    gp_fields = _fields(client.get(w["page"], headers={**HTML, **_bearer(w["gp"])}).text)
    assert client.get(w["page"], headers={**HTML, **_bearer(nurse)}).status_code == 403
    r = client.post(w["page"], data=gp_fields, headers={**FORM, **_bearer(nurse)})
    assert r.status_code == 403
    api = client.post(f"/api/v1/patients/{FNR}/plan/{w['plan']}/approve", headers=_bearer(nurse))
    assert api.status_code == 403
    assert _state(client, w["plan"]) == "proposed" and _verifiers(client, w["plan"]) == []
    # a plan of another patient under this patient's number: not found
    r = client.get(
        f"/api/v1/patients/{FNR}/plan/nope/approval", headers={**HTML, **_bearer(w["gp"])}
    )
    assert r.status_code == 404


def test_the_form_token_binds_the_gp_the_plan_the_version_and_the_time(
    client: Any, services: Any, tmp_path: Path
) -> None:
    w = _world(client, tmp_path)
    gp = _bearer(w["gp"])
    fields = _fields(client.get(w["page"], headers={**HTML, **gp}).text)
    tampered = fields["form_token"][:-1] + ("1" if fields["form_token"][-1] == "0" else "0")
    for bad in ("", "garbage", tampered):
        r = client.post(w["page"], data={**fields, "form_token": bad}, headers={**FORM, **gp})
        assert r.status_code == 403, bad
    expired = form_token.sign(
        services.settings.admin_key,
        Actor(id="x", role="gp"),
        f"CarePlan/{w['plan']}",
        1,
        now=time.time() - 3600,
    )
    r = client.post(w["page"], data={**fields, "form_token": expired}, headers={**FORM, **gp})
    assert r.status_code == 403
    # the plan the GP read went back to draft and was proposed again, changed: the old form
    # cannot approve the new content
    fields_changes = {**fields, "decision": "changes", "text": "Puls grønn 55–95"}
    assert client.post(w["page"], data=fields_changes, headers={**FORM, **gp}).status_code == 200
    body = {**BODY, "zones": [BODY["zones"][0]]}
    assert (
        client.put(f"/api/v1/patients/{FNR}/plan/drafts/{w['plan']}", json=body).status_code == 200
    )
    assert client.post(f"/api/v1/patients/{FNR}/plan/drafts/{w['plan']}/propose").status_code == 200
    stale = client.post(w["page"], data=fields, headers={**FORM, **gp})
    assert stale.status_code == 409 and "Les den nye versjonen" in stale.text
    assert _state(client, w["plan"]) == "proposed"
    fresh = _fields(client.get(w["page"], headers={**HTML, **gp}).text)
    assert client.post(w["page"], data=fresh, headers={**FORM, **gp}).status_code == 200
    assert _state(client, w["plan"]) == "active"
    # a token for this plan does not work for another plan
    other = client.post(f"/api/v1/patients/{FNR}/plan/drafts", json=BODY).json()["carePlan"]["id"]
    client.post(f"/api/v1/patients/{FNR}/plan/drafts/{other}/propose")
    r = client.post(
        f"/api/v1/patients/{FNR}/plan/{other}/approval", data=fresh, headers={**FORM, **gp}
    )
    assert r.status_code == 403 and _state(client, other) == "proposed"


def test_the_request_to_the_gp_links_to_the_page(
    client: Any, services: Any, tmp_path: Path, monkeypatch: Any
) -> None:
    from sqlalchemy import select

    from interop.messaging.runtime import kith_for
    from interop.store.schema import outbox_table

    monkeypatch.setattr(services.settings, "base_url", "https://oppfolging.example.no/")
    w = _world(client, tmp_path)
    with services.engine.connect() as conn:
        [row] = [r for r in conn.execute(select(outbox_table)).all() if r.event == "plan.proposed"]
    kith = kith_for(services.settings)
    assert kith is not None
    question = kith.read(bytes(row.payload)).content[0].question  # type: ignore[index]
    assert f"https://oppfolging.example.no{w['page']}" in question
    # the red column in words: no yellow bound on a side is no red on that side
    assert "Oksygenmetning (SpO2): grønn ≥ 92,5 %, gul ≥ 88 %, rød under 88 %." in question
