"""Person numbers from the national test environments (``mappings/identifiers/``), accepted
only where the configured environment is a test environment (``INTEROP_ENVIRONMENT=test``).

A family is a fødselsnummer/D-nummer with an offset on the month (Test-Norge/Tenor + 80, Norsk
helsenett's reserved test persons + 65); the control digits and the date must still be right.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from importlib.resources import files

import yaml

from interop.identifiers import (
    D_NUMBER_DAY_OFFSET,
    K1_REMAINDERS_2032,
    ControlDigitRule,
    _birth_date,
    _remainders,
    person_id_problem,
)


@dataclass(frozen=True, slots=True)
class SyntheticFamily:
    name: str
    month_offset: int
    source: str


@cache
def synthetic_families() -> tuple[SyntheticFamily, ...]:
    text = (files("mappings") / "identifiers" / "test-environments.yaml").read_text("utf-8")
    data = yaml.safe_load(text)
    return tuple(
        SyntheticFamily(str(f["name"]), int(f["month_offset"]), str(f.get("source", "")))
        for f in data["families"]
    )


def synthetic_family_of(s: str) -> SyntheticFamily | None:
    """The test-environment family ``s`` belongs to (valid digits and date), or None."""
    if len(s) != 11 or not s.isdigit():
        return None
    r1, r2 = _remainders(s)
    if r2 != 0 or r1 not in K1_REMAINDERS_2032:
        return None
    rule = ControlDigitRule.RULE_1964 if r1 == 0 else ControlDigitRule.RULE_2032
    day, month, yy, individnummer = int(s[0:2]), int(s[2:4]), int(s[4:6]), int(s[6:9])
    if day > D_NUMBER_DAY_OFFSET:
        day -= D_NUMBER_DAY_OFFSET
    for family in synthetic_families():
        if family.month_offset < month <= family.month_offset + 12:
            born = _birth_date(day, month - family.month_offset, yy, individnummer, rule)
            if not isinstance(born, str):
                return family
    return None


def patient_id_problem(s: str, *, test_environment: bool) -> str | None:
    """Why ``s`` cannot identify a patient here, or None. Test-environment numbers pass only
    in a test environment; in production they are named as such."""
    family = synthetic_family_of(s)
    if family is not None:
        if test_environment:
            return None
        return f"{s} er et testnummer ({family.name}); tas bare imot i testmiljø"
    return person_id_problem(s)
