"""The message catalogue and Norwegian formatting."""

from datetime import UTC, datetime
from decimal import Decimal

import pytest

from interop.text import local_time, number, plural, quantity, text, unit, zone_name


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
