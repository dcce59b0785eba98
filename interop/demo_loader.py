"""Load the synthetic demo data set (``interop demo``): directory resources + measurements.

Safe to run again: directory resources have stable ids and are only written when missing;
measurements carry stable source ids, so the ingest pipeline treats repeats as duplicates.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from datetime import UTC, datetime

from adapters.base import AdapterResult, IngestMeta, Measurement
from interop.config import Settings
from interop.demo import generate_demo
from interop.demo_story import HISTORY_ENDS_BEFORE_NOW, approve_plans, startup_cut, tell
from interop.ingest.pipeline import IngestPipeline
from interop.services import build_services
from interop.store.context import WriteContext


def load_demo(
    settings: Settings,
    *,
    patients: int = 50,
    days: int = 90,
    seed: int = 42,
    progress: Callable[[int, int], None] | None = None,
    now: datetime | None = None,
) -> str:
    """Load the data set; ``progress(done, total)`` is called after each patient's
    measurements."""
    services = build_services(settings)
    now = now or datetime.now(UTC)
    # the history stops before today's deteriorating readings, which are then the latest
    data = generate_demo(patients=patients, days=days, end=now - HISTORY_ENDS_BEFORE_NOW, seed=seed)
    written = 0
    with services.store.write(WriteContext.service()) as tx:
        for resource in data.resources:
            rid = resource["id"]
            if tx.get(resource["resourceType"], rid) is None:
                tx.update(resource["resourceType"], rid, resource)
                written += 1
    plans = approve_plans(services, data)  # before the history, which they judge
    pipeline = IngestPipeline(services)
    by_patient: dict[str, list[Measurement]] = defaultdict(list)
    for m in startup_cut(data, now):
        by_patient[m.patient.value].append(m)
    totals: dict[str, int] = defaultdict(int)
    for done, ms in enumerate(by_patient.values(), start=1):
        result = AdapterResult(measurements=ms, items_seen=len(ms))
        report = pipeline.ingest_result(
            "demo", result, IngestMeta(source="demo", filename="synthetic demo data")
        )
        for key in ("created", "duplicate", "updated", "quarantined", "rejected"):
            totals[key] += getattr(report, key)
        if progress is not None:
            progress(done, len(by_patient))
    story = tell(services, data, now)
    return (
        f"demo data: {written} directory resources written "
        f"({len(data.resources)} in the set), measurements: "
        + ", ".join(f"{k} {v}" for k, v in totals.items())
        + f"; plans approved {plans}, earlier deviations closed {story['closed']}, "
        f"red readings today {story['readingsToday']}, "
        f"hospital episodes {story['hospitalEpisodes']}"
    )
