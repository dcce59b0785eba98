"""Norwegian identifiers: validation and (for tests and the demo) generation.

Pure functions, no I/O. Covers the person numbers used in Norwegian health care and the
organisation/actor identifiers of the address book:

* **fødselsnummer** (FNR, national identity number) and **D-nummer** (DNR, for people not
  registered as residents: day of birth + 40);
* **H-nummer** (HNR, *hjelpenummer*: a local help number for a patient whose FNR is unknown:
  month of birth + 40, every other FNR rule kept — KITH/HIS 1001:2010 "Identifikatorer for
  personer");
* **felles hjelpenummer** (FHN, the national help number run by Norsk helsenett: 11 digits,
  first digit 8 or 9, the other nine carry no meaning, two FNR-style control digits —
  NamingSystem ``no-basis-felleshjelpenummer``, nhn.no "Hva er felles hjelpenummer");
* **organisasjonsnummer** (Enhetsregisteret, 9 digits, mod-11), **HPR-nummer**
  (Helsepersonellregisteret), **HER-id** (Adresseregisteret).

Control digits of person numbers (Skatteetaten, "Nytt fødselsnummer fra 2032",
https://skatteetaten.github.io/folkeregisteret-api-dokumentasjon/nytt-fodselsnummer-fra-2032/ and
https://www.skatteetaten.no/deling/opplysninger/folkeregisteropplysninger/pid/):

* k1 weights ``3 7 6 1 8 9 4 5 2`` over digits 1–9, k2 weights ``5 4 3 2 7 6 5 4 3 2`` over
  digits 1–10; with the control digit itself weighted 1, the weighted sum mod 11 is the
  *remainder*.
* 1964 rule (all numbers issued so far): both remainders must be 0 (a computed control digit of
  10 makes the individnummer unusable).
* 2032 rule (numbers issued from 1 January 2032, gender-neutral): the k1 remainder may be 0, 1,
  2 or 3; k2 unchanged (remainder 0). Systems must accept both rules side by side. From 2032 the
  individnummer no longer tells gender, and the birth date should be read from Folkeregisteret.

Synthetic test numbers (opt-in): Skatteetaten's Test-Norge/Tenor population adds 80 to the month
(``synthetic=True`` here). NAV's Dolly test population adds 40 to the month, which is exactly the
KITH H-nummer rule; the two cannot be told apart from the digits, so in this health-sector product
a month + 40 number is always an H-nummer (system ``HNR``), never a fødselsnummer.

HPR-nummer: no check digit is published by Helsedirektoratet (it is a register key), so only the
format is checked. HER-id: a positive integer key in Adresseregisteret, format check only.
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from enum import StrEnum
from typing import Literal

from adapters.base import DNR_OID, FNR_OID

__all__ = [
    "DNR_OID",
    "DUF_OID",
    "FHN_OID",
    "FNR_OID",
    "HERID_OID",
    "HNR_SYSTEM",
    "HNR_TYPE_SYSTEM",
    "HPR_OID",
    "ORGNR_OID",
    "RESH_OID",
    "ControlDigitRule",
    "InvalidIdentifier",
    "PersonId",
    "PersonIdKind",
    "birth_date",
    "check_identifier",
    "classify_person_id",
    "gender",
    "generate_fhn",
    "generate_fnr",
    "generate_herid",
    "generate_hpr",
    "generate_orgnr",
    "herid_problem",
    "hpr_problem",
    "orgnr_problem",
    "parse_person_id",
    "person_id_problem",
    "person_id_system",
    "validate_dnr",
    "validate_fhn",
    "validate_fnr",
    "validate_herid",
    "validate_hnr",
    "validate_hpr",
    "validate_orgnr",
]

# ---- identifier systems (HL7 Norway no-basis NamingSystems / profiles) ----------------------
FHN_OID = "urn:oid:2.16.578.1.12.4.1.4.3"
"""Felles hjelpenummer (national help number, Norsk helsenett)."""
HPR_OID = "urn:oid:2.16.578.1.12.4.1.4.4"
"""HPR-nummer (Helsepersonellregisteret)."""
DUF_OID = "urn:oid:2.16.578.1.12.4.1.4.5"
"""DUF-nummer (immigration authorities' case number; not validated here)."""
ORGNR_OID = "urn:oid:2.16.578.1.12.4.1.4.101"
"""Organisasjonsnummer (Enhetsregisteret, ENH)."""
RESH_OID = "urn:oid:2.16.578.1.12.4.1.4.102"
"""RESH-id (Register for enheter i spesialisthelsetjenesten; not validated here)."""
HERID_OID = "urn:oid:2.16.578.1.12.4.1.2"
"""HER-id (Adresseregisteret, the health network's address register)."""
HNR_SYSTEM = "HNR"
"""Local H-nummer: no-basis Patient slice ``HNR`` fixes ``Identifier.system`` to the literal
``HNR`` (there is no OID); ``type.coding`` uses :data:`HNR_TYPE_SYSTEM` code ``HNR`` and
``assigner`` is mandatory (a local number is only unique per assigner)."""
HNR_TYPE_SYSTEM = "urn:oid:2.16.578.1.12.4.1.1.8327"
"""Volven code system for personal identifier types (used in ``Identifier.type``)."""


class PersonIdKind(StrEnum):
    """What kind of 11-digit Norwegian person number a string is."""

    FNR = "FNR"
    """Fødselsnummer (national identity number)."""
    DNR = "DNR"
    """D-nummer (day of birth + 40)."""
    HNR = "HNR"
    """H-nummer (local hjelpenummer: month of birth + 40)."""
    FHN = "FHN"
    """Felles hjelpenummer (first digit 8 or 9, no birth date)."""


class ControlDigitRule(StrEnum):
    """Which control-digit rule a person number satisfies (the strictest one)."""

    RULE_1964 = "1964"
    """k1 and k2 remainders both 0 — every number issued before 2032."""
    RULE_2032 = "2032"
    """k1 remainder 1, 2 or 3 (k2 remainder 0) — only valid for numbers issued from 2032."""


PERSON_ID_SYSTEMS: dict[PersonIdKind, str] = {
    PersonIdKind.FNR: FNR_OID,
    PersonIdKind.DNR: DNR_OID,
    PersonIdKind.HNR: HNR_SYSTEM,
    PersonIdKind.FHN: FHN_OID,
}
"""``Identifier.system`` for each kind of person number."""

# The 2032 rule is Skatteetaten's, for the numbers it issues (FNR, DNR). H-nummer and felles
# hjelpenummer are issued by health-sector systems that have published no such change.
RULES_BY_KIND: dict[PersonIdKind, frozenset[ControlDigitRule]] = {
    PersonIdKind.FNR: frozenset(ControlDigitRule),
    PersonIdKind.DNR: frozenset(ControlDigitRule),
    PersonIdKind.HNR: frozenset({ControlDigitRule.RULE_1964}),
    PersonIdKind.FHN: frozenset({ControlDigitRule.RULE_1964}),
}

K1_WEIGHTS = (3, 7, 6, 1, 8, 9, 4, 5, 2)
K2_WEIGHTS = (5, 4, 3, 2, 7, 6, 5, 4, 3, 2)
K1_REMAINDERS_2032 = frozenset({0, 1, 2, 3})
ORGNR_WEIGHTS = (3, 2, 7, 6, 5, 4, 3, 2)

D_NUMBER_DAY_OFFSET = 40
H_NUMBER_MONTH_OFFSET = 40
SYNTHETIC_MONTH_OFFSET = 80
"""Skatteetaten Test-Norge/Tenor synthetic population: month + 80."""

# Individnummer series per birth century (Folkeregisteret; ehelse.no "Identifikatorer for
# personer"): (first individnummer, last individnummer, first year, last year).
INDIVIDNUMMER_SERIES: tuple[tuple[int, int, int, int], ...] = (
    (500, 749, 1854, 1899),
    (0, 499, 1900, 1999),
    (900, 999, 1940, 1999),
    (500, 999, 2000, 2039),
)

Gender = Literal["female", "male"]

_DIGITS = re.compile(r"[0-9]+")


class InvalidIdentifier(ValueError):
    """The value is not a valid identifier of the expected kind; the message says why."""


@dataclass(frozen=True, slots=True)
class PersonId:
    """A parsed, valid Norwegian person number."""

    value: str
    kind: PersonIdKind
    rule: ControlDigitRule
    birth_date: date | None
    """None for felles hjelpenummer (no date in the number)."""
    synthetic: bool = False
    """A Test-Norge/Tenor synthetic number (month + 80)."""

    @property
    def system(self) -> str:
        return PERSON_ID_SYSTEMS[self.kind]


# ---- mod-11 arithmetic -------------------------------------------------------------------------


def _weighted(digits: str, weights: tuple[int, ...]) -> int:
    return sum(int(d) * w for d, w in zip(digits, weights, strict=False))


def _control_digit(digits: str, weights: tuple[int, ...], remainder: int = 0) -> int | None:
    """The digit c with ``(weighted(digits) + c) % 11 == remainder``; None when it would be 10."""
    c = (remainder - _weighted(digits, weights)) % 11
    return None if c == 10 else c


def _remainders(s: str) -> tuple[int, int]:
    r1 = (_weighted(s[:9], K1_WEIGHTS) + int(s[9])) % 11
    r2 = (_weighted(s[:10], K2_WEIGHTS) + int(s[10])) % 11
    return r1, r2


# ---- birth date --------------------------------------------------------------------------------


def _century_years(individnummer: int, yy: int) -> list[int]:
    """Full birth years the individnummer series allow for two-digit year ``yy``."""
    return [
        century + yy
        for first, last, y0, y1 in INDIVIDNUMMER_SERIES
        if first <= individnummer <= last
        for century in (y0 - y0 % 100,)
        if y0 <= century + yy <= y1
    ]


def _make_date(year: int, month: int, day: int) -> date | None:
    try:
        return date(year, month, day)
    except ValueError:
        return None


def _birth_date(
    day: int, month: int, yy: int, individnummer: int, rule: ControlDigitRule
) -> date | str:
    """The birth date, or a message saying why the date part is invalid."""
    if not 1 <= month <= 12:
        return f"month {month:02d} is not a month"
    if not 1 <= day <= 31:
        return f"day {day:02d} is not a day of a month"
    years = _century_years(individnummer, yy)
    for year in years:
        found = _make_date(year, month, day)
        if found is not None:
            return found
    if rule is ControlDigitRule.RULE_2032:
        # From 2032 the individnummer no longer encodes the century; Folkeregisteret is the
        # source of the birth date. Accept any existing date, preferring the newest century.
        for year in (2000 + yy, 1900 + yy):
            found = _make_date(year, month, day)
            if found is not None:
                return found
        return f"{day:02d}.{month:02d}.{yy:02d} is not a calendar date"
    if not years:
        return f"individnummer {individnummer:03d} is not issued for birth year ..{yy:02d}"
    return f"{day:02d}.{month:02d}.{years[0]} is not a calendar date"


# ---- person numbers ----------------------------------------------------------------------------


def person_id_problem(s: str, *, synthetic: bool = False) -> str | None:
    """Why ``s`` is not a valid person number (any kind), or None when it is."""
    try:
        parse_person_id(s, synthetic=synthetic)
    except InvalidIdentifier as exc:
        return str(exc)
    return None


def parse_person_id(s: str, *, synthetic: bool = False) -> PersonId:
    """Parse an 11-digit fødselsnummer, D-nummer, H-nummer or felles hjelpenummer.

    ``synthetic=True`` also accepts Test-Norge/Tenor synthetic numbers (month + 80).
    Raises :class:`InvalidIdentifier` naming the first problem found.
    """
    if not isinstance(s, str) or len(s) != 11 or not _DIGITS.fullmatch(s):
        shown = s if isinstance(s, str) else type(s).__name__
        raise InvalidIdentifier(f"{shown!r} is not 11 digits")
    r1, r2 = _remainders(s)
    if r2 != 0:
        raise InvalidIdentifier("second control digit (k2) does not match (mod 11)")
    if r1 == 0:
        rule = ControlDigitRule.RULE_1964
    elif r1 in K1_REMAINDERS_2032:
        rule = ControlDigitRule.RULE_2032
    else:
        raise InvalidIdentifier("first control digit (k1) does not match (mod 11)")

    if s[0] in "89":
        kind = PersonIdKind.FHN
        _require_rule(kind, rule)
        return PersonId(s, kind, rule, None)

    day, month, yy, individnummer = int(s[0:2]), int(s[2:4]), int(s[4:6]), int(s[6:9])
    kind = PersonIdKind.FNR
    if day > D_NUMBER_DAY_OFFSET:
        kind = PersonIdKind.DNR
        day -= D_NUMBER_DAY_OFFSET
    is_synthetic = False
    if month > SYNTHETIC_MONTH_OFFSET:
        if not synthetic:
            raise InvalidIdentifier(
                f"month {month} marks a synthetic Test-Norge/Tenor test number (month + 80), "
                "not accepted here"
            )
        is_synthetic = True
        month -= SYNTHETIC_MONTH_OFFSET
    elif month > H_NUMBER_MONTH_OFFSET:
        if kind is PersonIdKind.DNR:
            raise InvalidIdentifier(
                "day + 40 (D-nummer) together with month + 40 (H-nummer) is not a valid number"
            )
        kind = PersonIdKind.HNR
        month -= H_NUMBER_MONTH_OFFSET
    _require_rule(kind, rule)
    born = _birth_date(day, month, yy, individnummer, rule)
    if isinstance(born, str):
        raise InvalidIdentifier(f"date part: {born}")
    return PersonId(s, kind, rule, born, is_synthetic)


def _require_rule(kind: PersonIdKind, rule: ControlDigitRule) -> None:
    if rule not in RULES_BY_KIND[kind]:
        raise InvalidIdentifier("first control digit (k1) does not match (mod 11)")


def _is_kind(s: str, kind: PersonIdKind, synthetic: bool) -> bool:
    try:
        return parse_person_id(s, synthetic=synthetic).kind is kind
    except InvalidIdentifier:
        return False


def validate_fnr(s: str, *, synthetic: bool = False) -> bool:
    """True for a valid fødselsnummer (1964 or 2032 control digits, real birth date).

    ``synthetic=True`` also accepts Test-Norge/Tenor synthetic numbers (month + 80).
    """
    return _is_kind(s, PersonIdKind.FNR, synthetic)


def validate_dnr(s: str, *, synthetic: bool = False) -> bool:
    """True for a valid D-nummer (day of birth + 40)."""
    return _is_kind(s, PersonIdKind.DNR, synthetic)


def validate_hnr(s: str) -> bool:
    """True for a valid H-nummer (month of birth + 40, 1964 control digits)."""
    return _is_kind(s, PersonIdKind.HNR, False)


def validate_fhn(s: str) -> bool:
    """True for a valid felles hjelpenummer (first digit 8 or 9, 1964 control digits)."""
    return _is_kind(s, PersonIdKind.FHN, False)


def classify_person_id(s: str, *, synthetic: bool = False) -> PersonIdKind | None:
    """The kind of a valid person number, or None when ``s`` is not one."""
    try:
        return parse_person_id(s, synthetic=synthetic).kind
    except InvalidIdentifier:
        return None


def person_id_system(s: str, *, synthetic: bool = True) -> str | None:
    """``Identifier.system`` for a valid person number (FNR/DNR/FHN OID, or ``HNR``), else None.

    Synthetic Test-Norge numbers are accepted by default here: they cannot belong to a real
    person, and the demo and test data sets use them.
    """
    kind = classify_person_id(s, synthetic=synthetic)
    return None if kind is None else PERSON_ID_SYSTEMS[kind]


def birth_date(s: str) -> date | None:
    """Birth date in a valid FNR/DNR/H-nummer (synthetic numbers too); None otherwise.

    For numbers issued under the 2032 rule the century is a best guess (the individnummer no
    longer encodes it); Folkeregisteret is authoritative.
    """
    try:
        return parse_person_id(s, synthetic=True).birth_date
    except InvalidIdentifier:
        return None


def gender(s: str) -> Gender | None:
    """Gender encoded in a 1964-rule FNR/DNR/H-nummer (odd 9th digit: male); None otherwise.

    Numbers issued under the 2032 rule are gender-neutral: read gender from Folkeregisteret.
    """
    try:
        pid = parse_person_id(s, synthetic=True)
    except InvalidIdentifier:
        return None
    if pid.kind is PersonIdKind.FHN or pid.rule is not ControlDigitRule.RULE_1964:
        return None
    return "male" if int(s[8]) % 2 else "female"


def _series_for(year: int) -> list[tuple[int, int]]:
    return [(first, last) for first, last, y0, y1 in INDIVIDNUMMER_SERIES if y0 <= year <= y1]


def generate_fnr(
    born: date,
    *,
    rng: random.Random,
    synthetic: bool = False,
    gender: Gender | None = None,
    kind: PersonIdKind = PersonIdKind.FNR,
    rule: ControlDigitRule = ControlDigitRule.RULE_1964,
) -> str:
    """A valid person number for ``born`` (for tests and demo data only).

    ``kind`` FNR, DNR (day + 40) or HNR (month + 40); ``synthetic=True`` adds 80 to the month
    (Test-Norge/Tenor synthetic range — use it for anything that leaves a test). ``gender`` sets
    the parity of the 9th digit. ``rule`` picks the control-digit rule (2032: k1 is drawn from the
    values whose remainder is 0–3).
    """
    if kind is PersonIdKind.FHN:
        return generate_fhn(rng)
    if rule not in RULES_BY_KIND[kind]:
        raise ValueError(f"{kind} numbers are not issued under the {rule} rule")
    if synthetic and kind is PersonIdKind.HNR:
        raise ValueError("an H-nummer cannot also be a synthetic (month + 80) number")
    series = _series_for(born.year)
    if not series:
        raise ValueError(f"no individnummer series covers birth year {born.year}")
    day = born.day + (D_NUMBER_DAY_OFFSET if kind is PersonIdKind.DNR else 0)
    month = born.month + (
        H_NUMBER_MONTH_OFFSET
        if kind is PersonIdKind.HNR
        else SYNTHETIC_MONTH_OFFSET
        if synthetic
        else 0
    )
    prefix = f"{day:02d}{month:02d}{born.year % 100:02d}"
    while True:
        first, last = rng.choice(series)
        individnummer = rng.randint(first, last)
        if gender is not None and individnummer % 2 != (1 if gender == "male" else 0):
            continue
        nine = f"{prefix}{individnummer:03d}"
        if rule is ControlDigitRule.RULE_1964:
            k1 = _control_digit(nine, K1_WEIGHTS)
        else:
            k1 = _control_digit(nine, K1_WEIGHTS, rng.choice((1, 2, 3)))
        if k1 is None:
            continue
        k2 = _control_digit(f"{nine}{k1}", K2_WEIGHTS)
        if k2 is None:
            continue
        return f"{nine}{k1}{k2}"


def generate_fhn(rng: random.Random) -> str:
    """A valid felles hjelpenummer: first digit 8 or 9, eight random digits, two control digits."""
    while True:
        nine = rng.choice("89") + "".join(rng.choice("0123456789") for _ in range(8))
        k1 = _control_digit(nine, K1_WEIGHTS)
        if k1 is None:
            continue
        k2 = _control_digit(f"{nine}{k1}", K2_WEIGHTS)
        if k2 is not None:
            return f"{nine}{k1}{k2}"


# ---- organisation and actor identifiers --------------------------------------------------------


def orgnr_problem(s: str) -> str | None:
    """Why ``s`` is not a valid organisasjonsnummer, or None when it is."""
    if not isinstance(s, str) or len(s) != 9 or not _DIGITS.fullmatch(s):
        return f"{s!r} is not 9 digits (write it without spaces)"
    check = _control_digit(s[:8], ORGNR_WEIGHTS)
    if check is None or int(s[8]) != check:
        return "control digit does not match (mod 11)"
    return None


def validate_orgnr(s: str) -> bool:
    """True for a valid organisasjonsnummer (9 digits, mod-11 weights 3 2 7 6 5 4 3 2)."""
    return orgnr_problem(s) is None


def generate_orgnr(rng: random.Random) -> str:
    """A valid organisasjonsnummer (first digit 8 or 9 like issued numbers), for tests/demo."""
    while True:
        eight = rng.choice("89") + "".join(rng.choice("0123456789") for _ in range(7))
        check = _control_digit(eight, ORGNR_WEIGHTS)
        if check is not None:
            return f"{eight}{check}"


HPR_MAX_DIGITS = 9
HERID_MAX_DIGITS = 9


def hpr_problem(s: str) -> str | None:
    """Why ``s`` is not a well-formed HPR-nummer (1–9 digits, not zero), or None.

    HPR numbers have no published check digit; leading zeros (as some systems pad to 9) are
    tolerated.
    """
    if not isinstance(s, str) or not _DIGITS.fullmatch(s):
        return f"{s!r} is not a number (digits only)"
    if len(s) > HPR_MAX_DIGITS:
        return f"{s!r} has more than {HPR_MAX_DIGITS} digits"
    if int(s) == 0:
        return "0 is not an HPR-nummer"
    return None


def validate_hpr(s: str) -> bool:
    """True for a well-formed HPR-nummer (format only: there is no check digit)."""
    return hpr_problem(s) is None


def herid_problem(s: str) -> str | None:
    """Why ``s`` is not a well-formed HER-id (a positive integer, no separators), or None."""
    if not isinstance(s, str) or not _DIGITS.fullmatch(s):
        return f"{s!r} is not a positive integer (digits only, no separators)"
    if s[0] == "0":
        return f"{s!r} has a leading zero"
    if len(s) > HERID_MAX_DIGITS:
        return f"{s!r} has more than {HERID_MAX_DIGITS} digits"
    return None


def validate_herid(s: str) -> bool:
    """True for a well-formed HER-id (format only: there is no check digit)."""
    return herid_problem(s) is None


def generate_hpr(rng: random.Random) -> str:
    """A well-formed 7-digit HPR-nummer (the size of numbers issued today), for tests/demo."""
    return str(rng.randint(1_000_000, 9_999_999))


def generate_herid(rng: random.Random) -> str:
    """A well-formed HER-id (5–6 digits like most communication parties), for tests/demo."""
    return str(rng.randint(10_000, 999_999))


# ---- by identifier system ----------------------------------------------------------------------


def _person_check(
    expected: PersonIdKind,
) -> Callable[[str, bool], str | None]:
    label = {
        PersonIdKind.FNR: "fødselsnummer",
        PersonIdKind.DNR: "D-nummer",
        PersonIdKind.HNR: "H-nummer",
        PersonIdKind.FHN: "felles hjelpenummer",
    }

    def check(value: str, allow_synthetic: bool) -> str | None:
        try:
            pid = parse_person_id(value, synthetic=allow_synthetic)
        except InvalidIdentifier as exc:
            return f"not a valid {label[expected]}: {exc}"
        if pid.kind is not expected:
            return (
                f"not a {label[expected]}: the digits make it a {label[pid.kind]} "
                f"(use system {PERSON_ID_SYSTEMS[pid.kind]})"
            )
        return None

    return check


def _plain(problem: Callable[[str], str | None], label: str) -> Callable[[str, bool], str | None]:
    def check(value: str, allow_synthetic: bool) -> str | None:
        found = problem(value)
        return None if found is None else f"not a valid {label}: {found}"

    return check


_CHECKS: dict[str, Callable[[str, bool], str | None]] = {
    FNR_OID: _person_check(PersonIdKind.FNR),
    DNR_OID: _person_check(PersonIdKind.DNR),
    FHN_OID: _person_check(PersonIdKind.FHN),
    HNR_SYSTEM: _person_check(PersonIdKind.HNR),
    ORGNR_OID: _plain(orgnr_problem, "organisasjonsnummer"),
    HPR_OID: _plain(hpr_problem, "HPR-nummer"),
    HERID_OID: _plain(herid_problem, "HER-id"),
}

# Non-preferred URIs listed in the no-basis NamingSystems mean the same identifiers.
SYSTEM_ALIASES: dict[str, str] = {
    "http://hl7.no/fhir/NamingSystem/FNR": FNR_OID,
    "http://hl7.no/fhir/NamingSystem/DNR": DNR_OID,
    "http://hl7.no/fhir/NamingSystem/FHNR": FHN_OID,
    "http://hl7.no/fhir/NamingSystem/HPR": HPR_OID,
}


def check_identifier(system: str, value: str, *, allow_synthetic: bool = True) -> str | None:
    """Check ``value`` against the rules of identifier ``system``.

    Returns a message naming the problem, or None when the value is valid or the system is not
    one this module knows. Synthetic Test-Norge numbers (month + 80) are accepted unless
    ``allow_synthetic=False``: they cannot belong to a real person, and demo/test data use them.
    """
    check = _CHECKS.get(SYSTEM_ALIASES.get(system, system))
    return None if check is None else check(value, allow_synthetic)
