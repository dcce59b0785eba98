"""Process-level tuning for the long-running service processes (API, worker, MLLP listener).

Python's cyclic garbage collector runs a young-generation pass every 700 net allocations and,
from time to time, a full pass over every tracked object. An ingest batch builds tens of
thousands of short-lived dicts and lists, and the staged rows survive until they are written,
so with the defaults a batch of 1,500 Observations triggered about 170 passes, several of them
full ones over the whole heap (the loaded FHIR models, SQLAlchemy and FastAPI): 15-18 % of the
batch's time. The service's own data holds few reference cycles; what it allocates is freed by
reference counting. :func:`tune_gc` therefore

- moves everything alive after start-up (modules, models, mappings, caches) into the
  collector's permanent generation (``gc.freeze``), so that full passes no longer walk it, and
- raises the young-generation threshold (``INTEROP_GC_GEN0_THRESHOLD``, default 10,000), so
  that the collector still runs, but about fifteen times less often.

Cycles are still collected; ``INTEROP_GC_GEN0_THRESHOLD=0`` keeps Python's own settings.
"""

from __future__ import annotations

import gc
import logging

from interop.config import Settings

log = logging.getLogger(__name__)

_OLDER_GENERATIONS = (10, 10)
"""Python's own thresholds for the two older generations, kept."""


def tune_gc(settings: Settings) -> bool:
    """Tune the garbage collector for a service process once its start-up is done; returns
    whether anything was changed."""
    threshold = settings.gc_gen0_threshold
    if threshold <= 0:
        return False
    gc.collect()
    gc.freeze()
    gc.set_threshold(threshold, *_OLDER_GENERATIONS)
    log.info(
        "garbage collector tuned: %d start-up objects frozen, young-generation threshold %d",
        gc.get_freeze_count(),
        threshold,
    )
    return True
