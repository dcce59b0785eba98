"""The message catalogue (*teksttabell*): people-facing text by key, from a YAML file."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml

_DEFAULT = Path(__file__).resolve().parents[2] / "mappings" / "text" / "nb.yaml"


class Catalogue:
    """Keys are dotted paths into the file (``zones.red``); a missing key is an error, never
    an English fallback shown to a clinician."""

    def __init__(self, data: dict[str, Any], source: str = "") -> None:
        self._data = data
        self.source = source
        self.locale = str(data.get("locale", "nb-NO"))

    @classmethod
    def load(cls, path: Path) -> Catalogue:
        with path.open(encoding="utf-8") as f:
            data = yaml.safe_load(f) or {}
        if not isinstance(data, dict):
            raise ValueError(f"{path}: the catalogue must be a mapping")
        return cls(data, str(path))

    def lookup(self, key: str) -> Any:
        node: Any = self._data
        for part in key.split("."):
            if not isinstance(node, dict) or part not in node:
                raise KeyError(f"no text for {key!r} in {self.source or 'the catalogue'}")
            node = node[part]
        return node

    def get(self, key: str, default: str | None = None) -> str | None:
        try:
            value = self.lookup(key)
        except KeyError:
            return default
        return value if isinstance(value, str) else default

    def text(self, key: str, **params: Any) -> str:
        value = self.lookup(key)
        if not isinstance(value, str):
            raise KeyError(f"{key!r} is not a sentence in {self.source or 'the catalogue'}")
        return value.format(**params) if params else value


@lru_cache(maxsize=4)
def catalogue(path: str | None = None) -> Catalogue:
    return Catalogue.load(Path(path) if path else _DEFAULT)


def text(key: str, **params: Any) -> str:
    """The sentence for ``key`` in the default (bokmål) catalogue, with ``params`` filled in."""
    return catalogue().text(key, **params)
