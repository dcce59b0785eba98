"""Time parsing shared by adapters: every instant leaves an adapter timezone-aware.

Zone-less input gets the configured zone (``IngestMeta.default_timezone``, Europe/Oslo by
default) and the caller records that the zone was assumed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache
from zoneinfo import ZoneInfo


@dataclass(frozen=True, slots=True)
class ParsedTime:
    value: datetime
    zone_assumed: bool


@lru_cache(maxsize=32)
def zone(name: str) -> ZoneInfo:
    return ZoneInfo(name)


def localize(naive: datetime, zone_name: str) -> datetime:
    """Attach a zone to a naive local time (DST gaps/folds resolved by zoneinfo's fold=0)."""
    return naive.replace(tzinfo=zone(zone_name))


def assume_zone(value: datetime, zone_name: str) -> ParsedTime:
    if value.tzinfo is not None and value.utcoffset() is not None:
        return ParsedTime(value, False)
    return ParsedTime(localize(value, zone_name), True)


_ISO_Z = re.compile(r"Z$")


def parse_iso(text: str, zone_name: str) -> ParsedTime:
    """ISO 8601 date-time (``Z``, ``+01:00``, or none); a date alone means local midnight."""
    s = text.strip()
    if not s:
        raise ValueError("empty date-time")
    s = _ISO_Z.sub("+00:00", s)
    try:
        value = datetime.fromisoformat(s)
    except ValueError as exc:
        raise ValueError(f"not an ISO 8601 date-time: {text!r}") from exc
    return assume_zone(value, zone_name)


_HL7_TS = re.compile(
    r"^(?P<y>\d{4})(?P<mo>\d{2})?(?P<d>\d{2})?(?P<h>\d{2})?(?P<mi>\d{2})?(?P<s>\d{2})?"
    r"(?:\.(?P<frac>\d{1,6}))?(?P<tz>[+-]\d{4})?$"
)


def parse_hl7_ts(text: str, zone_name: str) -> ParsedTime:
    """HL7 v2 DTM/TS: ``YYYY[MM[DD[HH[MM[SS[.S…]]]]]][+/-ZZZZ]``."""
    m = _HL7_TS.match(text.strip())
    if not m:
        raise ValueError(f"not an HL7 timestamp: {text!r}")
    frac = (m["frac"] or "").ljust(6, "0")
    naive = datetime(
        int(m["y"]),
        int(m["mo"] or 1),
        int(m["d"] or 1),
        int(m["h"] or 0),
        int(m["mi"] or 0),
        int(m["s"] or 0),
        int(frac) if frac else 0,
    )
    tz = m["tz"]
    if tz:
        sign = 1 if tz[0] == "+" else -1
        hours, minutes = int(tz[1:3]), int(tz[3:5])
        from datetime import timedelta, timezone

        offset = timezone(sign * timedelta(hours=hours, minutes=minutes))
        return ParsedTime(naive.replace(tzinfo=offset), False)
    return ParsedTime(localize(naive, zone_name), True)


def from_epoch(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, tz=UTC)
