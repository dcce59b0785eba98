"""Norwegian identifiers: published examples, both control-digit rules, and properties."""

from __future__ import annotations

import json
import random
from datetime import date
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from lxml import etree

import adapters.base as base
from interop.identifiers import (
    DNR_OID,
    FHN_OID,
    FNR_OID,
    HERID_OID,
    HNR_SYSTEM,
    HPR_OID,
    ORGNR_OID,
    ControlDigitRule,
    PersonIdKind,
    birth_date,
    check_identifier,
    classify_person_id,
    gender,
    generate_fhn,
    generate_fnr,
    generate_orgnr,
    parse_person_id,
    person_id_problem,
    person_id_system,
    validate_dnr,
    validate_fhn,
    validate_fnr,
    validate_herid,
    validate_hnr,
    validate_hpr,
    validate_orgnr,
)

BIRTH_DATES = st.dates(min_value=date(1854, 1, 1), max_value=date(2039, 12, 31))
SEEDS = st.integers(min_value=0, max_value=2**32)
KINDS = st.sampled_from([PersonIdKind.FNR, PersonIdKind.DNR, PersonIdKind.HNR])
RULES = st.sampled_from(list(ControlDigitRule))


def _kith_idents(conformance_dir: Path) -> set[tuple[str, str]]:
    """(TypeId V, Id) of every ``Ident`` in the KITH sample messages."""
    found: set[tuple[str, str]] = set()
    parser = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False)
    for path in sorted((conformance_dir / "kith").rglob("*.xml")):
        try:
            tree = etree.parse(str(path), parser)
        except etree.XMLSyntaxError:
            continue  # the deliberately broken acceptance-test case
        for el in tree.iter("{*}Ident"):
            id_el = el.find("{*}Id")
            type_el = el.find("{*}TypeId")
            if id_el is not None and id_el.text and type_el is not None:
                found.add((type_el.get("V", ""), id_el.text))
    return found


# ---- published examples --------------------------------------------------------------------


def test_oids_match_the_no_basis_naming_systems(shared_dir: Path) -> None:
    folder = shared_dir / "standards" / "fhir" / "no-basis" / "ci-build-json"
    expected = {
        "foedselsnummer": FNR_OID,
        "dnummer": DNR_OID,
        "felleshjelpenummer": FHN_OID,
        "helsepersonellnummer": HPR_OID,
    }
    for name, oid in expected.items():
        ns = json.loads((folder / f"NamingSystem-no-basis-{name}.json").read_text("utf-8"))
        preferred = [u["value"] for u in ns["uniqueId"] if u["type"] == "oid" and u["preferred"]]
        assert [f"urn:oid:{v}" for v in preferred] == [oid]
    assert (FNR_OID, DNR_OID) == (base.FNR_OID, base.DNR_OID)
    assert HERID_OID == "urn:oid:2.16.578.1.12.4.1.2"
    assert ORGNR_OID == "urn:oid:2.16.578.1.12.4.1.4.101"


def test_kith_sample_person_numbers_validate(conformance_dir: Path) -> None:
    fnrs = {v for t, v in _kith_idents(conformance_dir) if t == "FNR"}
    assert {"13116900216", "15076500565", "12057900499"} <= fnrs  # Line Danser & co.
    for fnr in fnrs:
        assert validate_fnr(fnr), fnr
        assert check_identifier(FNR_OID, fnr) is None
    assert birth_date("13116900216") == date(1969, 11, 13)
    assert gender("13116900216") == "female"
    assert gender("15076500565") == "male"


def test_kith_sample_org_and_actor_ids(conformance_dir: Path) -> None:
    idents = _kith_idents(conformance_dir)
    orgnrs = {v for t, v in idents if t == "ENH"}
    assert {"971318864", "974793539", "974744570"} <= orgnrs
    for v in ("971318864", "974793539", "974744570"):
        assert validate_orgnr(v)
    # made-up numbers and a spaced-out one in the acceptance tests are rightly refused
    assert "control digit" in (check_identifier(ORGNR_OID, "333555666") or "")
    assert "without spaces" in (check_identifier(ORGNR_OID, "974 793 539") or "")
    for v in {v for t, v in idents if t == "HPR"}:
        assert validate_hpr(v), v
    herids = {v for t, v in idents if t == "HER"}
    assert {v for v in herids if not validate_herid(v)} == {"258.521", "369.767"}
    assert "separators" in (check_identifier(HERID_OID, "258.521") or "")


def test_no_basis_examples(conformance_dir: Path) -> None:
    folder = conformance_dir / "fhir" / "no-basis"
    patient = json.loads((folder / "Patient-EspenEksempel.json").read_text("utf-8"))
    ident = patient["identifier"][0]
    # the published example masks the number ("210377xxxxx"): it must not pass
    assert "11 digits" in (check_identifier(ident["system"], ident["value"]) or "")
    practitioner = json.loads((folder / "Practitioner-Magnar-Komann-Practitioner.json").read_text())
    org = json.loads(
        (folder / "Organization-Direktoratet-for-eHelse-Organization.json").read_text()
    )
    for res in (practitioner, org):
        for ident in res["identifier"]:
            assert check_identifier(ident["system"], ident["value"]) is None


def test_nav_published_examples_of_other_kinds() -> None:
    # examples from NAV's public fnrvalidator README (H-nummer, Test-Norge number)
    assert classify_person_id("13527248013") is PersonIdKind.HNR
    assert validate_hnr("13527248013")
    assert birth_date("13527248013") == date(1972, 12, 13)
    assert not validate_fnr("10915596784")
    assert validate_fnr("10915596784", synthetic=True)
    assert birth_date("10915596784") == date(1955, 11, 10)


# ---- the two control-digit rules -----------------------------------------------------------


def _with_k1_remainder(nine: str, remainder: int) -> str | None:
    w1, w2 = (3, 7, 6, 1, 8, 9, 4, 5, 2), (5, 4, 3, 2, 7, 6, 5, 4, 3, 2)
    k1 = (remainder - sum(int(d) * w for d, w in zip(nine, w1, strict=False))) % 11
    if k1 == 10:
        return None
    ten = nine + str(k1)
    k2 = -sum(int(d) * w for d, w in zip(ten, w2, strict=False)) % 11
    return None if k2 == 10 else ten + str(k2)


def test_2032_rule_accepts_k1_remainders_0_to_3_only() -> None:
    accepted: dict[int, bool] = {}
    for individnummer in range(500, 1000):
        nine = f"150632{individnummer:03d}"  # born 15.06.2032
        for remainder in range(11):
            number = _with_k1_remainder(nine, remainder)
            if number is not None:
                accepted.setdefault(remainder, validate_fnr(number))
                assert validate_fnr(number) == (remainder <= 3), (number, remainder)
    assert accepted == {r: r <= 3 for r in range(11)}


def test_rule_and_gender_reported() -> None:
    old = generate_fnr(date(1980, 5, 17), rng=random.Random(1), gender="male")
    new = generate_fnr(date(2033, 1, 2), rng=random.Random(1), rule=ControlDigitRule.RULE_2032)
    assert parse_person_id(old).rule is ControlDigitRule.RULE_1964
    assert parse_person_id(new).rule is ControlDigitRule.RULE_2032
    assert gender(old) == "male"
    assert gender(new) is None  # 2032 numbers are gender-neutral


def _number(prefix6: str, individnummer: range, remainder: int = 0) -> str:
    """The first number with this date part, an individnummer from the range and k1 remainder."""
    for i in individnummer:
        number = _with_k1_remainder(f"{prefix6}{i:03d}", remainder)
        if number is not None:
            return number
    raise AssertionError("no usable individnummer")


def test_hjelpenummer_do_not_take_the_2032_rule() -> None:
    with pytest.raises(ValueError):
        generate_fnr(
            date(1990, 1, 1),
            rng=random.Random(0),
            kind=PersonIdKind.HNR,
            rule=ControlDigitRule.RULE_2032,
        )
    assert validate_hnr(_number("014190", range(500)))
    h2032 = _number("014190", range(500), remainder=2)
    assert classify_person_id(h2032) is None
    assert "k1" in (check_identifier(HNR_SYSTEM, h2032) or "")


# ---- date part and kinds -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("digits", "series", "year"),
    [
        ("010399", range(500, 750), 1899),
        ("010399", range(0, 500), 1999),  # 000–499 means 1900–1999
        ("010350", range(900, 1000), 1950),  # 900–999 also used for 1940–1999
        ("010330", range(900, 1000), 2030),  # ... and 500–999 for 2000–2039
        ("010305", range(750, 1000), 2005),
        ("010345", range(750, 900), None),  # 750–899 never issued for ..40–..99
        ("010350", range(500, 750), None),  # neither 1850 nor 2050
    ],
)
def test_century_from_individnummer(digits: str, series: range, year: int | None) -> None:
    number = _number(digits, series)
    assert validate_fnr(number) is (year is not None)
    if year is None:
        assert "individnummer" in (person_id_problem(number) or "")
    else:
        assert birth_date(number) == date(year, 3, 1)


@pytest.mark.parametrize(
    ("prefix6", "series", "valid"),
    [
        ("290200", range(500, 1000), True),  # 2000 was a leap year
        ("290200", range(0, 500), False),  # 1900 was not
        ("310499", range(0, 500), False),
        ("001299", range(0, 500), False),
        ("011399", range(0, 500), False),
        ("320199", range(0, 500), False),
    ],
)
def test_calendar_dates(prefix6: str, series: range, valid: bool) -> None:
    number = _number(prefix6, series)
    assert validate_fnr(number) is valid
    if not valid:
        assert "date part" in (person_id_problem(number) or "")


def test_kinds_and_systems() -> None:
    rng = random.Random(7)
    born = date(1975, 4, 30)
    dnr = generate_fnr(born, rng=rng, kind=PersonIdKind.DNR)
    hnr = generate_fnr(born, rng=rng, kind=PersonIdKind.HNR)
    fhn = generate_fhn(rng)
    syn = generate_fnr(born, rng=rng, synthetic=True)
    assert dnr[0] in "4567" and validate_dnr(dnr) and person_id_system(dnr) == DNR_OID
    assert int(hnr[2:4]) == 44 and person_id_system(hnr) == HNR_SYSTEM
    assert fhn[0] in "89" and validate_fhn(fhn) and person_id_system(fhn) == FHN_OID
    assert int(syn[2:4]) == 84 and person_id_system(syn) == FNR_OID
    assert person_id_system(syn, synthetic=False) is None
    assert birth_date(dnr) == birth_date(hnr) == birth_date(syn) == born
    assert birth_date(fhn) is None
    assert person_id_system("12345678901") is None


def test_check_identifier_names_the_problem() -> None:
    rng = random.Random(3)
    fnr = generate_fnr(date(1960, 8, 8), rng=rng)
    hnr = generate_fnr(date(1960, 8, 8), rng=rng, kind=PersonIdKind.HNR)
    syn = generate_fnr(date(1960, 8, 8), rng=rng, synthetic=True)
    assert check_identifier(FNR_OID, fnr) is None
    assert check_identifier("http://hl7.no/fhir/NamingSystem/FNR", fnr) is None
    assert "D-nummer" in (check_identifier(DNR_OID, fnr) or "")
    assert "H-nummer" in (check_identifier(FNR_OID, hnr) or "")
    assert check_identifier(HNR_SYSTEM, hnr) is None
    assert check_identifier(FNR_OID, syn) is None
    assert "Tenor" in (check_identifier(FNR_OID, syn, allow_synthetic=False) or "")
    broken = fnr[:10] + str((int(fnr[10]) + 1) % 10)
    assert "k2" in (check_identifier(FNR_OID, broken) or "")
    assert check_identifier("urn:example:unknown", "anything") is None
    assert check_identifier(HPR_OID, "12a") is not None
    assert check_identifier(HPR_OID, "0") is not None
    assert check_identifier(HERID_OID, "0123") is not None
    assert check_identifier(ORGNR_OID, generate_orgnr(rng)) is None


# ---- properties ----------------------------------------------------------------------------


@settings(max_examples=300, deadline=None)
@given(born=BIRTH_DATES, seed=SEEDS, kind=KINDS, synthetic=st.booleans(), rule=RULES)
def test_generated_person_numbers_validate_and_round_trip(
    born: date, seed: int, kind: PersonIdKind, synthetic: bool, rule: ControlDigitRule
) -> None:
    if kind is PersonIdKind.HNR and (synthetic or rule is ControlDigitRule.RULE_2032):
        return
    number = generate_fnr(born, rng=random.Random(seed), kind=kind, synthetic=synthetic, rule=rule)
    pid = parse_person_id(number, synthetic=True)
    assert (pid.kind, pid.rule, pid.synthetic, pid.birth_date) == (kind, rule, synthetic, born)
    assert check_identifier(pid.system, number) is None


@settings(max_examples=200, deadline=None)
@given(born=BIRTH_DATES, seed=SEEDS, gender_=st.sampled_from(["female", "male"]))
def test_gender_round_trips(born: date, seed: int, gender_: str) -> None:
    number = generate_fnr(born, rng=random.Random(seed), gender=gender_)  # type: ignore[arg-type]
    assert gender(number) == gender_


def _person_numbers() -> st.SearchStrategy[str]:
    def build(born: date, seed: int, kind: PersonIdKind, rule: ControlDigitRule) -> str:
        if kind is PersonIdKind.FHN:
            return generate_fhn(random.Random(seed))
        if kind is PersonIdKind.HNR:
            rule = ControlDigitRule.RULE_1964
        return generate_fnr(born, rng=random.Random(seed), kind=kind, rule=rule)

    return st.builds(build, BIRTH_DATES, SEEDS, st.sampled_from(list(PersonIdKind)), RULES)


@settings(max_examples=200, deadline=None)
@given(number=_person_numbers(), pos=st.integers(0, 10), delta=st.integers(1, 9))
def test_every_single_digit_change_is_caught(number: str, pos: int, delta: int) -> None:
    changed = number[:pos] + str((int(number[pos]) + delta) % 10) + number[pos + 1 :]
    assert person_id_problem(changed, synthetic=True) is not None


@settings(max_examples=200, deadline=None)
@given(number=_person_numbers(), pos=st.integers(0, 9))
def test_adjacent_transpositions_are_caught(number: str, pos: int) -> None:
    a, b = number[pos], number[pos + 1]
    swapped = number[:pos] + b + a + number[pos + 2 :]
    # k2's weights differ pairwise, so any swap of two different digits breaks it
    assert (person_id_problem(swapped, synthetic=True) is None) == (a == b)


@settings(max_examples=200, deadline=None)
@given(seed=SEEDS, pos=st.integers(0, 8), delta=st.integers(1, 9))
def test_orgnr_generated_valid_and_single_digit_errors_caught(
    seed: int, pos: int, delta: int
) -> None:
    orgnr = generate_orgnr(random.Random(seed))
    assert validate_orgnr(orgnr)
    changed = orgnr[:pos] + str((int(orgnr[pos]) + delta) % 10) + orgnr[pos + 1 :]
    assert not validate_orgnr(changed)
    if pos < 8 and orgnr[pos] != orgnr[pos + 1]:
        swapped = orgnr[:pos] + orgnr[pos + 1] + orgnr[pos] + orgnr[pos + 2 :]
        assert not validate_orgnr(swapped)


@settings(max_examples=300, deadline=None)
@given(text=st.text(max_size=14))
def test_parsers_never_crash_on_arbitrary_text(text: str) -> None:
    for system in (FNR_OID, DNR_OID, FHN_OID, HNR_SYSTEM, ORGNR_OID, HPR_OID, HERID_OID):
        result = check_identifier(system, text)
        assert result is None or isinstance(result, str)
    classify_person_id(text)
    birth_date(text)


@settings(max_examples=300, deadline=None)
@given(digits=st.text(alphabet="0123456789", min_size=11, max_size=11))
def test_random_digit_strings_are_mostly_invalid_and_consistent(digits: str) -> None:
    kind = classify_person_id(digits, synthetic=True)
    if kind is None:
        assert person_id_system(digits) is None
    else:
        assert check_identifier(person_id_system(digits) or "", digits) is None
