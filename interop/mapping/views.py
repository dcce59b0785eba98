"""Actor view definitions (``mappings/views/<name>.yaml``): which codes, which period and which
aggregates each actor's summary holds. Data a domain expert edits; the summaries
(:mod:`interop.views.summary`) and the access policy's view codes both read it."""

from __future__ import annotations

from functools import lru_cache
from importlib.resources import files

import yaml
from pydantic import BaseModel, ConfigDict


class ViewDefinition(BaseModel):
    model_config = ConfigDict(extra="allow")
    name: str
    role: str
    title: str
    period_days: int
    resolution: str = "day"
    codes: list[str] = []
    codes_by_episode: dict[str, list[str]] = {}
    """Codes per EpisodeOfCare.type (coding code or lower-cased text), e.g. heart failure."""
    aggregates: list[str] = []


@lru_cache(maxsize=16)
def view_definition(name: str) -> ViewDefinition:
    path = files("mappings") / "views" / f"{name}.yaml"
    try:
        text = path.read_text("utf-8")
    except (FileNotFoundError, OSError):
        raise KeyError(name) from None
    return ViewDefinition.model_validate(yaml.safe_load(text))


def available_views() -> list[str]:
    return sorted(
        p.name[:-5] for p in (files("mappings") / "views").iterdir() if p.name.endswith(".yaml")
    )
