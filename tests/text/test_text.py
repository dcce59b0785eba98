"""The message catalogue and Norwegian formatting."""

from datetime import UTC, datetime
from decimal import Decimal

import pytest

from interop.text import elapsed, local_time, number, plural, quantity, text, unit, zone_name


def test_zone_names_are_norwegian() -> None:
    assert [zone_name(z) for z in ("green", "yellow", "red")] == ["grønn", "gul", "rød"]
    with pytest.raises(KeyError):
        zone_name("purple")


def test_numbers_use_a_decimal_comma() -> None:
    assert number(93.875, 1) == "93,9"
    assert number(7.0) == "7"
    assert number(Decimal("0.010")) == "0,010"
    assert number(-1.5) == "-1,5"


def test_units_and_quantities_are_display_units() -> None:
    assert unit("mm[Hg]") == "mmHg"
    assert unit("Cel") == "°C"
    assert quantity(37.26, "Cel", 1) == "37,3 °C"
    assert quantity(93, "%") == "93 %"
    assert unit("unknown-code") == "unknown-code"


def test_plurals() -> None:
    assert plural(1, "measurement") == "1 måling"
    assert plural(3, "measurement") == "3 målinger"
    assert plural(0, "measurement") == "0 målinger"


def test_local_time_is_norwegian_and_refuses_naive_times() -> None:
    summer = datetime(2026, 7, 1, 12, 0, tzinfo=UTC)
    winter = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)
    assert local_time(summer) == "01.07.2026 kl. 14:00"
    assert local_time(winter) == "06.12.2026 kl. 13:00"
    with pytest.raises(ValueError):
        local_time(datetime(2026, 12, 6, 12, 0))


def test_a_missing_key_is_an_error() -> None:
    with pytest.raises(KeyError):
        text("no.such.key")
    assert text("zones.not-assessed") == "ikke vurdert"


def test_elapsed_never_reads_more_or_less_than_it_is() -> None:
    assert elapsed(33.6) == "33 timer"
    assert elapsed(1.2) == "1 time"
    assert elapsed(24.5, beyond=24) == "mer enn 24 timer"  # not "24 timer" beside the limit
    assert elapsed(25.0, beyond=24) == "25 timer"
    assert elapsed(72.0) == "3 døgn"
    assert elapsed(104.9) == "4,3 døgn"  # cut to a tenth, never rounded up
    assert elapsed(72.5, beyond=72) == "mer enn 3 døgn"
