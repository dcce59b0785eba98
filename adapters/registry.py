"""Adapter lookup by name through the ``dho_interop.adapters`` entry-point group.

A vendor ships a plug-in package that declares, in its own ``pyproject.toml``::

    [project.entry-points."dho_interop.adapters"]
    acme-json = "acme_dho.adapter:AcmeAdapter"

The core never imports a particular adapter; it asks this registry.
"""

from __future__ import annotations

import logging
from functools import lru_cache
from importlib.metadata import entry_points

from adapters.base import (
    DIAG_PARSE_ERROR,
    UNEXPECTED_SHAPE,
    Adapter,
    AdapterError,
    AdapterResult,
    IngestMeta,
)

log = logging.getLogger("adapters")

GROUP = "dho_interop.adapters"


class UnknownAdapter(LookupError):
    pass


@lru_cache(maxsize=1)
def _entry_points() -> dict[str, object]:
    return {ep.name: ep for ep in entry_points(group=GROUP)}


_loaded: dict[str, Adapter] = {}


def available() -> list[str]:
    return sorted(_entry_points())


def get_adapter(name: str) -> Adapter:
    if name in _loaded:
        return _loaded[name]
    ep = _entry_points().get(name)
    if ep is None:
        raise UnknownAdapter(f"no adapter named {name!r}; available: {', '.join(available())}")
    factory = ep.load()  # type: ignore[attr-defined]
    adapter = factory()
    if not isinstance(adapter, Adapter):
        raise UnknownAdapter(f"entry point {name!r} does not provide an Adapter")
    _loaded[name] = guarded = Guarded(adapter)
    return guarded


class Guarded:
    """An adapter whose failure on input of an unexpected shape is reported as what it is,
    input that cannot be read (:class:`AdapterError`, a 4xx and a diagnostic), never as a
    fault of the service. The failure is logged, as it may also show an adapter's bug."""

    def __init__(self, adapter: Adapter) -> None:
        self.adapter = adapter
        self.name = adapter.name
        self.content_types = adapter.content_types

    def parse(self, data: bytes, meta: IngestMeta) -> AdapterResult:
        try:
            return self.adapter.parse(data, meta)
        except AdapterError:
            raise
        except (*UNEXPECTED_SHAPE, RecursionError) as exc:
            log.warning("adapter %s could not read its input", self.name, exc_info=True)
            raise AdapterError(
                f"{self.name} cannot read this input ({type(exc).__name__}: {exc})",
                DIAG_PARSE_ERROR,
            ) from None
