"""FHIR decimals keep the text they were sent in (R4 §2.1.28.0.1: precision SHALL be preserved).

A JSON body is parsed with orjson, which makes every decimal a binary float: ``0.010`` would be
served as ``0.01`` and ``66.899999999999991`` as ``66.89999999999999``. When the body holds a
number whose float does not write back as the same text (one cheap scan of the bytes decides),
it is parsed once more and each such number becomes a :class:`FhirDecimal`: a float, so every
comparison, index and triage rule works on it unchanged, that remembers its text. The store
writes it back with :func:`dumps`, so the stored and served bytes carry the number as sent.
"""

from __future__ import annotations

import json
import re
from typing import Any

import orjson

# a number (after ``:``, ``[`` or ``,``, before ``,``, ``]`` or ``}``) whose float may write back
# differently: a fraction ending in 0 (``36.50``), an exponent (``1e2``), or 16 or more digits
# (beyond what a float keeps). Times such as ``10:00:00.000`` are inside strings and do not
# match; anything else that does only costs the exact parse, which then finds nothing to keep.
_SUSPECT = re.compile(
    rb"[:\[,]\s*-?(?:\d+\.\d+0|\d+(?:\.\d+)?[eE][-+]?\d+|(?:\d\.?){16,})(?=\s*[,\]}])"
)


class FhirDecimal(float):
    """A decimal read from JSON whose text a float would not reproduce; ``text`` is that text."""

    __slots__ = ("text",)
    text: bytes

    def __new__(cls, text: str) -> FhirDecimal:
        obj = super().__new__(cls, text)
        obj.text = text.encode("ascii")
        return obj

    def __reduce__(self) -> tuple[Any, ...]:
        return (FhirDecimal, (self.text.decode("ascii"),))


def _decimal(text: str) -> float:
    value = float(text)
    if orjson.dumps(value) == text.encode("ascii"):
        return value
    return FhirDecimal(text)


def _no_constant(text: str) -> Any:
    raise ValueError(f"{text} is not JSON")


def keep_precision(raw: bytes | str, doc: Any) -> Any:
    """``doc`` (orjson's parse of ``raw``), or a parse of ``raw`` whose decimals keep their text
    where a float would change it."""
    data = raw.encode() if isinstance(raw, str) else raw
    if _SUSPECT.search(data) is None:
        return doc
    return json.loads(data, parse_float=_decimal, parse_constant=_no_constant)


def _default(obj: Any) -> Any:
    if isinstance(obj, FhirDecimal):
        return orjson.Fragment(obj.text)
    raise TypeError(f"{type(obj).__name__} is not JSON serialisable")


def dumps(obj: Any, option: int | None = None) -> bytes:
    """orjson.dumps that writes :class:`FhirDecimal` numbers as the text they were sent in."""
    if option is None:
        return orjson.dumps(obj, default=_default)
    return orjson.dumps(obj, default=_default, option=option)
