"""Default ranges for home monitoring (``mappings/default-thresholds.yaml``), used for a code
the plan in force does not cover (or when there is no plan).

The file is validated when loaded; each default carries a label naming its clinical source,
which every use shows (*standardgrenser*). Patient groups (e.g. KOLS) override single codes
for patients whose EpisodeOfCare type places them in the group.
"""

from __future__ import annotations

from decimal import Decimal
from functools import lru_cache
from importlib.resources import files
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, model_validator

from interop.care.zones import ZoneRanges
from interop.store.patient_resources import of_patients


class _Range(BaseModel):
    model_config = ConfigDict(extra="forbid")
    low: Decimal | None = None
    high: Decimal | None = None


class _Default(BaseModel):
    model_config = ConfigDict(extra="forbid")
    unit: str
    green: _Range
    yellow: _Range
    label: str = Field(min_length=1)
    """The clinical source, shown wherever the default is used."""

    @model_validator(mode="after")
    def _yellow_holds_green(self) -> _Default:
        g, y = self.green, self.yellow
        if (y.low is not None and (g.low is None or g.low < y.low)) or (
            y.high is not None and (g.high is None or g.high > y.high)
        ):
            raise ValueError("the yellow range must contain the green range")
        return self


class _Group(BaseModel):
    model_config = ConfigDict(extra="forbid")
    episode_types: list[str] = Field(default_factory=list)
    prefixes: list[str] = Field(default_factory=list)
    defaults: dict[str, _Default]


class _File(BaseModel):
    model_config = ConfigDict(extra="forbid")
    version: str
    defaults: dict[str, _Default]
    groups: dict[str, _Group] = Field(default_factory=dict)


def _ranges(code: str, d: _Default, group: str | None) -> ZoneRanges:
    return ZoneRanges(
        code,
        d.unit,
        (d.green.low, d.green.high),
        (d.yellow.low, d.yellow.high),
        "default",
        {},
        label=d.label,
        group=group,
    )


@lru_cache(maxsize=1)
def _load() -> _File:
    text = (files("mappings") / "default-thresholds.yaml").read_text("utf-8")
    return _File.model_validate(yaml.safe_load(text))


@lru_cache(maxsize=64)
def defaults_for(groups: frozenset[str] = frozenset()) -> dict[str, ZoneRanges]:
    """code → default ranges for a patient in ``groups`` (a group's own defaults replace the
    general ones for its codes; groups are applied in name order)."""
    data = _load()
    out = {str(c): _ranges(str(c), d, None) for c, d in data.defaults.items()}
    for name in sorted(groups):
        group = data.groups.get(name)
        if group is not None:
            out.update({str(c): _ranges(str(c), d, name) for c, d in group.defaults.items()})
    return out


def groups_of_episodes(episodes: list[dict[str, Any]]) -> frozenset[str]:
    """The default-threshold groups a patient's EpisodeOfCare resources place them in (by
    their ``type`` codings' codes and texts; entered-in-error and cancelled ones left out)."""
    words: set[str] = set()
    for ep in episodes:
        if ep.get("status") in ("entered-in-error", "cancelled"):
            continue
        for concept in ep.get("type") or []:
            if concept.get("text"):
                words.add(str(concept["text"]).strip().lower())
            for c in concept.get("coding") or []:
                if c.get("code"):
                    words.add(str(c["code"]).strip().lower())
                if c.get("display"):
                    words.add(str(c["display"]).strip().lower())
    found = set()
    for name, group in _load().groups.items():
        exact = {t.lower() for t in group.episode_types}
        prefixes = tuple(p.lower() for p in group.prefixes)
        if words & exact or any(w.startswith(prefixes) for w in words if prefixes):
            found.add(name)
    return frozenset(found)


def episodes_of(conn: Any, patient_id: str) -> list[dict[str, Any]]:
    """The patient's EpisodeOfCare resources (what places them in a group)."""
    return episodes_of_patients(conn, [patient_id])[patient_id]


def episodes_of_patients(conn: Any, patient_ids: list[str]) -> dict[str, list[dict[str, Any]]]:
    """:func:`episodes_of` each patient, in one statement per 500 patients."""
    return of_patients(conn, "EpisodeOfCare", patient_ids)


def defaults_for_patient(conn: Any, patient_id: str) -> dict[str, ZoneRanges]:
    """code → the default ranges that judge this patient's readings (their groups')."""
    return defaults_for(groups_of_episodes(episodes_of(conn, patient_id)))
