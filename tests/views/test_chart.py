"""The trend chart's drawing: dates at the ends of the time axis stay inside the drawing (the
last day was cut to «07.12.2» at the right edge), and the legend names all three zones."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

from interop.fhir.dates import to_micros
from interop.views.chart import Band, draw, to_svg

OSLO = ZoneInfo("Europe/Oslo")


def _us(day: int) -> int:
    return to_micros(datetime(2026, 11, day, tzinfo=OSLO))


def test_every_label_fits_and_the_legend_names_the_three_zones() -> None:
    # a period that starts and ends at local midnight: a date tick at each end of the axis
    t0, t1 = _us(2), _us(30)
    points = [(_us(d) + 8 * 3_600_000_000, 90.0 + d % 4, "yellow") for d in range(2, 30)]
    bands = [Band(t0, t1, (92.0, None), (88.0, None), "CarePlan/1")]
    d = draw("Oksygenmetning (SpO2)", "%", points, bands, t0, t1)
    texts = [it for it in d.items if it.kind == "text"]
    dates = [it for it in texts if it.text.count(".") == 2]
    assert dates[0].text == "02.11.26" and dates[-1].text == "30.11.26"
    for it in texts:
        (x, _y) = it.points[0]
        w = 6.2 * len(it.text)  # about 0.62 em a character at 10 pt, as the legend reckons
        x0 = x - w if it.anchor == "end" else x - w / 2 if it.anchor == "middle" else x
        assert x0 >= 0 and x0 + w <= d.width, (it.text, it.anchor, x0, x0 + w, d.width)
    legend = {it.text for it in texts}
    assert {"grønn sone (planen)", "gul sone (planen)", "rød sone (utenfor gul)"} <= legend
    svg = to_svg(d)
    assert 'text-anchor="end">30.11.26<' in svg
