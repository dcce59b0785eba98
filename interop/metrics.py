"""The service's Prometheus metrics and the request's correlation id: what every layer may
count or read, importing nothing of the service (the ``/metrics`` route that serves them is in
:mod:`interop.observability`)."""

from __future__ import annotations

import contextvars
from collections.abc import Callable, Mapping

from prometheus_client import Counter, Gauge, Histogram

correlation_id: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "correlation_id", default=None
)

INGEST_ITEMS = Counter(
    "dho_ingest_items_total", "Items ingested, by adapter and outcome", ["adapter", "outcome"]
)
INGEST_SECONDS = Histogram(
    "dho_ingest_seconds",
    "Time to ingest one message or file",
    ["adapter"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
HTTP_SECONDS = Histogram(
    "dho_http_request_seconds",
    "HTTP request latency by route template and status class",
    ["method", "route", "status"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
)
OUTBOX_DEPTH = Gauge(
    "dho_outbox_depth", "Outbox messages not yet delivered, by destination", ["destination"]
)
OUTBOX_OLDEST_SECONDS = Gauge(
    "dho_outbox_oldest_age_seconds", "Age of the oldest undelivered message", ["destination"]
)
DEAD_LETTERS = Gauge("dho_outbox_dead_letters", "Messages in the dead-letter state")
APPREC_TIMEOUTS = Gauge("dho_apprec_timeouts", "Messages sent more than 96 h ago without an AppRec")

MetricsCollector = Callable[[object], None]
collectors: list[MetricsCollector] = []
"""Called with the Services before each scrape (e.g. the outbox fills its gauges)."""

INGEST_OUTCOMES = ("created", "duplicate", "updated", "quarantined", "rejected")


def count_ingest(adapter: str, outcomes: Mapping[str, int], seconds: float | None = None) -> None:
    """Count one message's items by outcome (and the time it took to ingest it)."""
    for outcome in INGEST_OUTCOMES:
        n = outcomes.get(outcome, 0)
        if n:
            INGEST_ITEMS.labels(adapter, outcome).inc(n)
    if seconds is not None:
        INGEST_SECONDS.labels(adapter).observe(seconds)
