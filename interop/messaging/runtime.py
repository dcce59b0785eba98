"""Process-wide KITH message machinery: the schemas are compiled once per process."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

from plo_messages import KithMessages

_lock = threading.Lock()
_cache: dict[Path, KithMessages] = {}


def kith_for(settings: Any) -> KithMessages | None:
    """The :class:`KithMessages` for ``settings.kith_schema_dir``, or None when it is not set."""
    folder = settings.kith_schema_dir
    if folder is None:
        return None
    key = Path(folder).resolve()
    with _lock:
        kith = _cache.get(key)
        if kith is None:
            kith = _cache[key] = KithMessages(key)
    return kith
