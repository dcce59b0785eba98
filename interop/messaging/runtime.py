"""Process-wide KITH message machinery: the schemas are compiled once per process."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

from plo_messages import KithMessages
from plo_messages.xmlsafe import DEFAULT_MAX_BYTES

_lock = threading.Lock()
_cache: dict[tuple[Path, int], KithMessages] = {}


def kith_for(settings: Any) -> KithMessages | None:
    """The :class:`KithMessages` for ``settings.kith_schema_dir`` reading messages up to
    ``settings.max_kith_message_size``, or None when the folder is not set."""
    folder = settings.kith_schema_dir
    if folder is None:
        return None
    limit = int(getattr(settings, "max_kith_message_size", DEFAULT_MAX_BYTES))
    key = (Path(folder).resolve(), limit)
    with _lock:
        kith = _cache.get(key)
        if kith is None:
            kith = _cache[key] = KithMessages(key[0], max_bytes=limit)
    return kith
