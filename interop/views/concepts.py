"""One concept, one row: the LOINC codes that name the same measurement (SpO2 as 2708-6 and
59408-5) are shown under the concept's first LOINC code (``mappings/concepts.yaml``)."""

from __future__ import annotations

from functools import lru_cache

from adapters.base import LOINC
from interop.mapping.tables import load_tables
from interop.text import measurement_name


@lru_cache(maxsize=1)
def _aliases() -> dict[str, str]:
    out: dict[str, str] = {}
    for concept in load_tables().concepts.values():
        for coding in concept.codings:
            if coding.system == LOINC and coding.code != concept.loinc.code:
                out[coding.code] = concept.loinc.code
    return out


def primary_code(code: str) -> str:
    """``59408-5`` → ``2708-6``; a code that is its concept's first LOINC code is itself."""
    return _aliases().get(code, code)


def display(code: str) -> str:
    """The measurement's Norwegian name (message catalogue), or the code when it has none."""
    return measurement_name(code)


def with_aliases(codes: list[str]) -> list[str]:
    """The codes and every LOINC code naming the same concept as one of them."""
    wanted = set(codes) | {primary_code(c) for c in codes}
    return sorted(wanted | {alias for alias, first in _aliases().items() if first in wanted})
