"""FHIR date/dateTime/instant values as ranges of UTC epoch microseconds.

A value covers the whole period its precision implies (``2024-03`` is all of March 2024);
zone-less values are read in the configured local zone, as FHIR prescribes for dates.
Ranges are inclusive at both ends (``end`` = last microsecond of the period).
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta, tzinfo
from zoneinfo import ZoneInfo

_FHIR_DATETIME = re.compile(
    r"^(?P<y>\d{4})(?:-(?P<mo>\d{2})(?:-(?P<d>\d{2})"
    r"(?:T(?P<h>\d{2}):(?P<mi>\d{2})(?::(?P<s>\d{2})(?:\.(?P<f>\d+))?)?"
    r"(?P<tz>Z|[+-]\d{2}:\d{2})?)?)?)?$"
)

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_zones: dict[str, ZoneInfo] = {}


def _zone(name: str) -> ZoneInfo:
    z = _zones.get(name)
    if z is None:
        z = _zones[name] = ZoneInfo(name)
    return z


def to_micros(value: datetime) -> int:
    delta = value - _EPOCH
    return (delta.days * 86400 + delta.seconds) * 1_000_000 + delta.microseconds


def from_micros(value: int) -> datetime:
    return _EPOCH + timedelta(microseconds=value)


def _add_months(d: datetime, months: int) -> datetime:
    y, m = divmod(d.month - 1 + months, 12)
    return d.replace(year=d.year + y, month=m + 1)


def fhir_range(text: str, zone_name: str = "Europe/Oslo") -> tuple[int, int]:
    """Parse a FHIR date/dateTime/instant; raise ValueError when it is not one."""
    # fast path for the common full instant with seconds and an offset (what we store)
    if len(text) in (25, 20) and text[10] == "T" and text[19] in "+-Z":
        try:
            start = datetime.fromisoformat(text[:-1] + "+00:00" if text[19] == "Z" else text)
        except ValueError:
            pass
        else:
            if start.tzinfo is not None:
                us = to_micros(start)
                return us, us + 999_999
    m = _FHIR_DATETIME.match(text)
    if not m:
        raise ValueError(f"not a FHIR date/dateTime: {text!r}")
    tz: tzinfo
    if m["tz"]:
        tz = UTC if m["tz"] == "Z" else datetime.strptime(m["tz"], "%z").tzinfo or UTC
    else:
        tz = _zone(zone_name)
    year = int(m["y"])
    try:
        if m["mo"] is None:
            start = datetime(year, 1, 1, tzinfo=tz)
            end = start.replace(year=year + 1)
        elif m["d"] is None:
            start = datetime(year, int(m["mo"]), 1, tzinfo=tz)
            end = _add_months(start, 1)
        elif m["h"] is None:
            start = datetime(year, int(m["mo"]), int(m["d"]), tzinfo=tz)
            end = start + timedelta(days=1)
        else:
            frac = m["f"] or ""
            micro = int(frac[:6].ljust(6, "0")) if frac else 0
            start = datetime(
                year,
                int(m["mo"]),
                int(m["d"]),
                int(m["h"]),
                int(m["mi"]),
                int(m["s"] or 0),
                micro,
                tzinfo=tz,
            )
            if frac:
                end = start + timedelta(microseconds=1)
            elif m["s"] is not None:
                end = start + timedelta(seconds=1)
            else:
                end = start + timedelta(minutes=1)
    except ValueError as exc:
        raise ValueError(f"not a valid date: {text!r} ({exc})") from exc
    return to_micros(start), to_micros(end) - 1


def fhir_instant(text: str, zone_name: str = "Europe/Oslo") -> int:
    """The start of the value's range: the instant used for sorting and series."""
    return fhir_range(text, zone_name)[0]


def format_instant(value: datetime) -> str:
    """FHIR instant/dateTime text with offset, seconds precision unless sub-second is set."""
    if value.tzinfo is None:
        raise ValueError("naive datetime")
    if value.microsecond:
        return value.isoformat(timespec="milliseconds")
    return value.isoformat(timespec="seconds")


def now_utc() -> datetime:
    return datetime.now(UTC)
