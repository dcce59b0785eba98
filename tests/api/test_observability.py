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


def test_readyz_reports_workers_and_outbox(client, services) -> None:  # type: ignore[no-untyped-def]
    from interop.routing.heartbeat import beat
    from interop.routing.outbox import enqueue

    before = client.get("/readyz").json()["checks"]
    assert before["workers"]["alive"] == 0 and before["outbox"]["undelivered"] == 0
    with services.engine.begin() as conn:
        enqueue(
            conn,
            event="t",
            kind="t",
            destination="Endpoint/x",
            transport="http",
            address="http://127.0.0.1:9/",
            content_type="application/json",
            payload=b"{}",
        )
    waiting = client.get("/readyz")
    assert waiting.status_code == 200 and "no worker" in waiting.json()["checks"]["warning"]
    beat(services.engine, "worker:test:1")
    beat(services.engine, "worker:test:1")
    after = client.get("/readyz").json()["checks"]
    assert after["workers"]["alive"] == 1 and after["outbox"]["undelivered"] == 1
    assert "warning" not in after
