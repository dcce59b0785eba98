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
