"""What a newcomer meets after ``make run``: the landing page, API documentation that works
without internet, and an OpenAPI document that says how to authenticate and what the ingest
endpoint takes."""

from __future__ import annotations

import re


def test_landing_page(client) -> None:  # type: ignore[no-untyped-def]
    r = client.get("/", headers={"Authorization": ""})
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    for link in ("/docs", "/redoc", "/metrics", "/fhir/metadata", "/api/v1/worklist"):
        assert link in r.text, link
    assert 'lang="nb"' in r.text and "Tjenesten kjører" in r.text
    assert not re.search(r'(src|href)="https?://', r.text)


def test_the_landing_page_leads_to_the_organisations_worklists(client) -> None:  # type: ignore[no-untyped-def]
    """An organisation that manages patients here is listed with links to its worklist and
    indicators; the page names no patient."""
    org = client.post(
        "/fhir/Organization",
        json={
            "resourceType": "Organization",
            "name": "Oppfølgingssenteret",
            "identifier": [{"system": "urn:oid:2.16.578.1.12.4.1.4.101", "value": "974589095"}],
        },
    ).json()
    fnr = "13031353453"
    r = client.post(
        "/fhir/Patient",
        json={
            "resourceType": "Patient",
            "identifier": [{"system": "urn:oid:2.16.578.1.12.4.1.4.1", "value": fnr}],
            "name": [{"family": "Nordmann", "given": ["Kari"]}],
            "managingOrganization": {"reference": f"Organization/{org['id']}"},
        },
    )
    assert r.status_code == 201, r.text
    page = client.get("/", headers={"Authorization": ""}).text
    assert "Oppfølgingssenteret (974589095)" in page
    assert 'href="/api/v1/worklist?organization=974589095"' in page
    assert 'href="/api/v1/indicators?organization=974589095"' in page
    assert fnr not in page and "Nordmann" not in page


def test_api_docs_need_no_internet(client) -> None:  # type: ignore[no-untyped-def]
    for page in ("/docs", "/redoc"):
        body = client.get(page).text
        assets = re.findall(r'(?:src|href)="([^"]+)"', body) + re.findall(r"url: ?'([^']+)'", body)
        assert assets, page
        for asset in assets:
            assert not asset.startswith(("http://", "https://", "//")), (page, asset)
            if asset.startswith("/static-offline-docs/"):
                got = client.get(asset)
                assert got.status_code == 200 and len(got.content) > 1000, asset
        assert "cdn.jsdelivr" not in body and "fonts.googleapis" not in body


def test_openapi_security_and_ingest(client) -> None:  # type: ignore[no-untyped-def]
    doc = client.get("/openapi.json").json()
    schemes = doc["components"]["securitySchemes"]
    assert {"apiKey", "helseId", "helseIdDpop"} <= set(schemes)
    assert doc["security"]
    ingest = doc["paths"]["/ingest/{adapter}"]["post"]
    names = {p["name"] for p in ingest["parameters"]}
    assert {"adapter", "source", "profile", "patient", "filename"} <= names
    content = ingest["requestBody"]["content"]
    assert {"application/fhir+json", "application/hl7-v2", "text/csv"} <= set(content)
    assert doc["paths"]["/healthz"]["get"]["security"] == []
