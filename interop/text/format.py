"""Numbers, units, plurals and times as a Norwegian reader expects them (decimal comma,
display units, ``dd.mm.yyyy kl. HH:MM`` in Norwegian local time)."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from zoneinfo import ZoneInfo

from interop.text.catalogue import catalogue

OSLO = "Europe/Oslo"


def number(value: float | int | Decimal, decimals: int | None = None) -> str:
    """``93.875`` → ``93,9`` (with ``decimals=1``); integers stay integers; minus is kept."""
    if decimals is None:
        text = format(value, "f") if isinstance(value, Decimal) else repr(value)
        if isinstance(value, float) and value.is_integer():
            text = str(int(value))
    else:
        text = f"{float(value):.{decimals}f}"
    return text.replace(".", ",")


def unit(code: str | None) -> str:
    """A UCUM code as it is written for a person (``mm[Hg]`` → ``mmHg``, ``Cel`` → ``°C``)."""
    if not code:
        return ""
    return catalogue().get(f"units.{code}") or code


def quantity(value: float | int | Decimal, code: str | None, decimals: int | None = None) -> str:
    """``quantity(7.25, "mmol/L", 1)`` → ``7,3 mmol/L`` (a space before the unit, ``%`` too)."""
    return f"{number(value, decimals)} {unit(code)}".rstrip()


def plural(count: int, noun: str) -> str:
    """``plural(1, "measurement")`` → ``1 måling``; ``plural(3, …)`` → ``3 målinger``."""
    forms = catalogue().lookup(f"plurals.{noun}")
    word = forms["one"] if count == 1 else forms["other"]
    return f"{count} {word}"


HOURS_SHOWN_BELOW = 72
"""A time shorter than this many hours is told in whole hours (``33 timer``), a longer one
in days with a decimal (``4,3 døgn``)."""


def elapsed(hours: float, beyond: float | None = None) -> str:
    """How long a time is, never more than it is: ``elapsed(33.6)`` → ``33 timer``,
    ``elapsed(104.9)`` → ``4,3 døgn`` (an hour or a tenth of a day cut off, not rounded up);
    when it is ``beyond`` a limit (in hours) that the cut-off figure would not exceed, the
    limit: ``elapsed(48.5, beyond=48)`` → ``mer enn 48 timer``, never ``48 timer`` beside
    "høyst 48 timer"."""
    if hours < HOURS_SHOWN_BELOW:
        value: float = float(int(hours))
        limit = beyond
        noun = "hour"
    else:
        value = int(hours / 24 * 10) / 10
        limit = None if beyond is None else beyond / 24
        noun = "day"
    if beyond is not None and limit is not None and hours > beyond and value <= limit:
        return catalogue().text("durations.more_than", value=_counted(limit, noun))
    return _counted(value, noun)


def _counted(value: float, noun: str) -> str:
    """``1 time``, ``33 timer``, ``1,5 døgn`` (a tenth at most)."""
    shown = int(value) if float(value).is_integer() else round(value, 1)
    if isinstance(shown, int):
        return plural(shown, noun)
    forms = catalogue().lookup(f"plurals.{noun}")
    return f"{number(shown)} {forms['other']}"


def zone_name(zone: str) -> str:
    """``red`` → ``rød``; an unknown zone code is an error, not shown raw."""
    return catalogue().text(f"zones.{zone}")


def local_time(when: datetime, zone: str = OSLO, *, with_time: bool = True) -> str:
    """An aware datetime in Norwegian local time: ``06.12.2026 kl. 14:05``."""
    if when.tzinfo is None:
        raise ValueError("a time without a time zone cannot be shown as Norwegian local time")
    local = when.astimezone(ZoneInfo(zone))
    return local.strftime("%d.%m.%Y kl. %H:%M" if with_time else "%d.%m.%Y")


def measurement_name(code: str) -> str:
    """A LOINC code's measurement name (``2708-6`` → ``Oksygenmetning (SpO2)``); a code the
    catalogue does not name is shown as the code."""
    return catalogue().get(f"measurements.{code}") or code
