"""Operations endpoints: health, readiness, metrics, correlation ids."""

from __future__ import annotations


def test_health_ready_metrics_and_correlation(client) -> None:  # type: ignore[no-untyped-def]
    assert client.get("/healthz").json() == {"status": "ok"}
    r = client.get("/readyz")
    assert r.status_code == 200, r.text
    assert r.json()["checks"]["database"] == "ok"
    r = client.get("/fhir/metadata", headers={"X-Correlation-ID": "abc-123"})
    assert r.headers["x-correlation-id"] == "abc-123"
    assert client.get("/fhir/metadata").headers["x-correlation-id"]
    m = client.get("/metrics")
    assert m.status_code == 200
    assert "dho_http_request_seconds_bucket" in m.text
    assert 'route="/fhir/metadata"' in m.text
