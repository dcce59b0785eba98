"""Adapter lookup by name through the ``dho_interop.adapters`` entry-point group.

A vendor ships a plug-in package that declares, in its own ``pyproject.toml``::

    [project.entry-points."dho_interop.adapters"]
    acme-json = "acme_dho.adapter:AcmeAdapter"

The core never imports a particular adapter; it asks this registry.
"""

from __future__ import annotations

from functools import lru_cache
from importlib.metadata import entry_points

from adapters.base import Adapter

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
    _loaded[name] = adapter
    return adapter
