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


def _ingest_count(client, adapter: str, outcome: str) -> float:  # type: ignore[no-untyped-def]
    """The ``dho_ingest_items_total`` sample for an adapter and outcome, as scraped."""
    prefix = f'dho_ingest_items_total{{adapter="{adapter}",outcome="{outcome}"}} '
    for line in client.get("/metrics").text.splitlines():
        if line.startswith(prefix):
            return float(line[len(prefix) :])
    return 0.0


def test_metrics_count_what_ingest_did(client) -> None:  # type: ignore[no-untyped-def]
    """An operator's dashboard counts the items each adapter created, found again as
    duplicates, or rejected; a message that cannot be read counts as rejected, and an adapter
    name a caller made up is not a label of its own."""
    from tests.api.test_ingest_api import FNR as fnr
    from tests.api.test_ingest_api import _patient
    from tests.conftest import CONFORMANCE

    _patient(client)
    created = _ingest_count(client, "mapped-csv", "created")
    duplicate = _ingest_count(client, "mapped-csv", "duplicate")
    rejected = _ingest_count(client, "hl7v2", "rejected")
    body = (CONFORMANCE / "vendor/accu-chek-csv/ProperDiary.csv").read_bytes()
    for _ in range(2):
        r = client.post(
            "/ingest/mapped-csv",
            params={"profile": "accu-chek-csv", "patient": fnr},
            content=body,
            headers={"Content-Type": "text/csv"},
        )
        assert r.status_code == 200, r.text
    assert _ingest_count(client, "mapped-csv", "created") == created + 6
    assert _ingest_count(client, "mapped-csv", "duplicate") == duplicate + 6
    assert client.post("/ingest/hl7v2", content=b"garbage").status_code == 422
    assert _ingest_count(client, "hl7v2", "rejected") == rejected + 1
    assert client.post("/ingest/made-up-name", content=b"x").status_code == 404
    metrics = client.get("/metrics").text
    assert "made-up-name" not in metrics
    assert 'dho_ingest_seconds_count{adapter="mapped-csv"}' in metrics
