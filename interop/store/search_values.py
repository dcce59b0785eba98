"""The pieces a search condition is made of, shared by the FHIR search, the audit log's
search and the Observation operations: prefixes and modifiers, date ranges, tokens, value
lists, code sets and paging cursors."""

from __future__ import annotations

import base64
from collections.abc import Iterable, Sequence
from typing import Any

import orjson
from sqlalchemy import ColumnElement, Select, and_, false, or_, select, tuple_
from sqlalchemy.sql import operators
from sqlalchemy.sql.elements import BinaryExpression, Grouping
from sqlalchemy.types import Boolean

from interop.fhir.dates import fhir_range, now_utc, to_micros
from interop.fhir.outcome import error
from interop.fhir.searchparams import index_value
from interop.store.schema import code_set_table

PREFIXES = ("eq", "ne", "gt", "lt", "ge", "le", "sa", "eb", "ap")
MODIFIERS: dict[str, frozenset[str]] = {
    "token": frozenset({"not"}),
    "string": frozenset({"exact", "contains"}),
    "reference": frozenset({"identifier"}),
    "date": frozenset({"above", "below"}),
}
"""The modifiers served per parameter type (``:missing`` on every type, a reference's type
modifier ``subject:Patient`` besides); any other is refused as unsupported, never dropped."""
DATE_MODIFIERS = {"above": "gt", "below": "lt"}
"""``date:above=X`` is ``date=gtX`` (the resource's range goes on after X's), ``:below`` is
``lt``: R4 defines ``:above``/``:below`` for references, tokens and uris only; on a date this
server reads them as the comparison they name."""


def encode_cursor(sort_value: Any, res_id: str) -> str:
    return base64.urlsafe_b64encode(orjson.dumps([sort_value, res_id])).decode().rstrip("=")


def decode_cursor(text: str) -> tuple[Any, str]:
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
        value, res_id = orjson.loads(raw)
        if not isinstance(res_id, str):
            raise ValueError
        return value, res_id
    except (ValueError, TypeError, orjson.JSONDecodeError):
        raise error(
            400, "invalid", "the _cursor parameter is not valid (paging link damaged)"
        ) from None


def date_values(key: str, modifier: str | None, values: list[str]) -> list[str]:
    """The values of a date parameter with ``:above``/``:below`` turned into their prefix
    (:data:`DATE_MODIFIERS`); a value carrying a prefix of its own is refused (400)."""
    prefix = DATE_MODIFIERS.get(modifier or "")
    if prefix is None:
        return values
    for v in values:
        if v[:2] in PREFIXES:
            raise error(
                400,
                "invalid",
                f"{key}: {v!r} carries a prefix; :{modifier} takes a plain date",
                expression=[key],
            )
    return [prefix + v for v in values]


def split_prefix(value: str) -> tuple[str, str]:
    if len(value) > 2 and value[:2] in PREFIXES and not value[2].isalpha():
        return value[:2], value[2:]
    return "eq", value


def date_condition(
    start_col: Any, end_col: Any, value: str, zone: str, param: str
) -> ColumnElement[bool]:
    prefix, text = split_prefix(value)
    try:
        lo, hi = fhir_range(text, zone)
    except ValueError:
        raise error(
            400, "invalid", f"{param}: {value!r} is not a FHIR date/dateTime", expression=[param]
        ) from None
    if prefix == "eq":
        return and_(start_col >= lo, end_col <= hi)
    if prefix == "ne":
        return or_(start_col < lo, end_col > hi)
    if prefix == "gt":
        return end_col > hi
    if prefix == "lt":
        return start_col < lo
    if prefix == "ge":
        return end_col >= lo
    if prefix == "le":
        return start_col <= hi
    if prefix == "sa":
        return start_col > hi
    if prefix == "eb":
        return end_col < lo
    # ap: the stored range (a period, open or not, or an instant) overlaps the value's range
    # widened by 10% of its distance to now, at least a day (R4 leaves the margin to servers)
    margin = max(_DAY, abs(micros_now() - lo) // 10)
    return and_(start_col <= hi + margin, end_col >= lo - margin)


_DAY = 86_400_000_000


def token_parts(value: str) -> tuple[str | None, str | None]:
    """``system|code`` → (system, code); ``|code`` → ("", code); ``code`` → (None, code)."""
    if "|" in value:
        system, code = value.split("|", 1)
        return system, (code or None)
    return None, value


MAX_VALUES = 2000
"""Default of ``Settings.search_max_values``."""
_OR_GROUP = 16


def any_of(conds: Sequence[ColumnElement[bool]]) -> ColumnElement[bool]:
    """``c1 OR c2 OR …`` for any number of conditions, as a balanced tree of parenthesised
    groups: SQLite refuses an expression tree deeper than 1000 and parses a flat OR of n
    terms n deep, so a long list of search values would otherwise fail there. (``or_`` of
    ``or_`` is flattened by SQLAlchemy, hence the explicit binary expressions.)"""
    if not conds:
        return false()
    if len(conds) <= _OR_GROUP:
        return or_(*conds)
    groups = [or_(*conds[i : i + _OR_GROUP]) for i in range(0, len(conds), _OR_GROUP)]
    return _balanced_or(groups)


def _balanced_or(groups: Sequence[ColumnElement[bool]]) -> ColumnElement[bool]:
    if len(groups) == 1:
        return groups[0]
    mid = len(groups) // 2
    return BinaryExpression(
        Grouping(_balanced_or(groups[:mid])),
        Grouping(_balanced_or(groups[mid:])),
        operators.or_,
        type_=Boolean(),
    )


def code_sets_holding_any(tokens: Iterable[tuple[str | None, str | None]]) -> Select[Any]:
    """The ids of the code sets holding a coding that matches any of the ``(system, code)``
    tokens (as :func:`code_sets_holding`): one sub-select with IN lists, however many tokens
    there are."""
    cs = code_set_table.c
    pairs: set[tuple[str, str]] = set()
    codes: set[str] = set()
    systems: set[str] = set()
    anything = False
    for raw_system, raw_code in tokens:
        system = None if raw_system is None else index_value(raw_system)
        code = None if raw_code is None else index_value(raw_code)
        if system is not None and code is not None:
            pairs.add((system, code))
        elif code is not None:
            codes.add(code)
        elif system is not None:
            systems.add(system)
        else:
            anything = True
    if anything:
        return select(cs.set_id)
    cond: list[ColumnElement[bool]] = []
    if pairs:
        cond.append(tuple_(cs.system, cs.code).in_(sorted(pairs)))
    if codes:
        cond.append(cs.code.in_(sorted(codes)))
    if systems:
        cond.append(cs.system.in_(sorted(systems)))
    return select(cs.set_id).where(or_(*cond))


def code_sets_holding(system: str | None, code: str | None) -> Select[Any]:
    """The ids of the code sets with a coding ``system|code`` (``None``: any system, or any
    code of the system; ``""``: a coding without a system)."""
    cs = code_set_table.c
    cond: list[ColumnElement[bool]] = []
    if code is not None:
        cond.append(cs.code == index_value(code))
    if system is not None:
        cond.append(cs.system == index_value(system))
    return select(cs.set_id).where(*cond)


INDEXED = frozenset({"token", "reference", "date", "string", "quantity", "number"})
"""Parameter types the generic index holds as themselves; a composite's components are held
in these tables under the composite's key (:func:`interop.store.search_breadth.composite_condition`;
Observation's in its own index: :data:`interop.store.search_breadth.OBSERVATION_EXTRA`)."""


def micros_now() -> int:
    return to_micros(now_utc())
