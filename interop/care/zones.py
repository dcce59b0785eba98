"""The ranges one measurement code is judged by: green and yellow bands (red beyond them),
from the plan in force or a default, with where they came from. Shared by plans, the
defaults, triage and the summaries, and importing none of them."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal


@dataclass(frozen=True, slots=True)
class ZoneRanges:
    code: str
    unit: str
    green: tuple[Decimal | None, Decimal | None]
    yellow: tuple[Decimal | None, Decimal | None]
    source: str
    """``plan`` (CarePlan/…) or ``default``."""
    actions: dict[str, str]
    max_gap_hours: int | None = None
    """How long the plan lets this code go unmeasured (its schedule), if it says."""
    label: str = ""
    """For a default: its clinical source, shown wherever it is used."""
    group: str | None = None
    """For a default: the patient group whose default it is (e.g. ``copd``), if any."""
