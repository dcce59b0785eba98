"""One trend chart drawing for people, rendered as SVG (the HTML pages) and as PDF (the GP's
attachment): the same shapes, the same text, the same layout.

A chart has a time axis with dates (Norwegian local time), a value axis with the display unit,
the plan's green and yellow bands *as they were at each point in time* (a plan change moves
the band; a time without a plan shows the default ranges triage used), each measurement marked
by the zone it was judged in — by shape as well as colour (circle green, triangle yellow,
square red, hollow circle not judged), so the chart reads printed in black and white — and a
legend. Band edges are lines too (solid green, dashed yellow) for the same reason.
"""

from __future__ import annotations

import html
import math
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any
from zoneinfo import ZoneInfo

from interop.fhir.dates import from_micros, to_micros
from interop.text import number, text, unit, zone_name
from interop.text.pdf import pdf_text

RGB = tuple[float, float, float]
BLACK: RGB = (0.0, 0.0, 0.0)
INK: RGB = (0.15, 0.15, 0.15)
WHITE: RGB = (1.0, 1.0, 1.0)
GRID: RGB = (0.80, 0.80, 0.80)
LINE: RGB = (0.35, 0.35, 0.35)
BAND: dict[str, RGB] = {"green": (0.86, 0.94, 0.87), "yellow": (1.0, 0.94, 0.70)}
EDGE: dict[str, RGB] = {"green": (0.11, 0.37, 0.13), "yellow": (0.55, 0.40, 0.0)}
MARK: dict[str, RGB] = {
    "green": (0.11, 0.45, 0.16),
    "yellow": (0.80, 0.55, 0.0),
    "red": (0.69, 0.0, 0.13),
    "not-assessed": (1.0, 1.0, 1.0),
}
SHAPE = {"green": "circle", "yellow": "triangle", "red": "square", "not-assessed": "ring"}


@dataclass(frozen=True, slots=True)
class Item:
    kind: str
    """rect, line, polyline, marker, text"""
    points: tuple[tuple[float, float], ...]
    fill: RGB | None = None
    stroke: RGB | None = None
    width: float = 1.0
    dash: bool = False
    text: str = ""
    size: float = 10.0
    anchor: str = "start"
    shape: str = ""
    title: str = ""
    cls: str = ""
    """SVG class (``band-green``, ``point-red`` …): what the shape means, for tests and styles."""


@dataclass
class Drawing:
    width: float
    height: float
    label: str
    items: list[Item] = field(default_factory=list)

    def add(self, kind: str, *points: tuple[float, float], **kw: Any) -> None:
        self.items.append(Item(kind, tuple(points), **kw))


@dataclass(frozen=True, slots=True)
class Band:
    """The green and yellow ranges in force from ``start`` to ``end`` (µs)."""

    start: int
    end: int
    green: tuple[float | None, float | None]
    yellow: tuple[float | None, float | None]
    source: str


def _nice_step(span: float, ticks: int = 5) -> float:
    raw = span / max(1, ticks)
    mag = 10 ** math.floor(math.log10(raw)) if raw > 0 else 1
    for m in (1, 2, 2.5, 5, 10):
        if raw <= m * mag:
            return m * mag
    return 10 * mag


def value_range(
    points: list[tuple[int, float, str | None]], bands: list[Band]
) -> tuple[float, float]:
    """The value axis: the measured values and the bands' bounds, padded to whole steps."""
    values = [p[1] for p in points]
    for b in bands:
        values += [v for v in (*b.green, *b.yellow) if v is not None]
    lo, hi = (min(values), max(values)) if values else (0.0, 1.0)
    if hi == lo:
        lo, hi = lo - 1, hi + 1
    step = _nice_step(hi - lo)
    return math.floor(lo / step) * step - step / 2, math.ceil(hi / step) * step + step / 2


def _date_ticks(t0: int, t1: int, zone: ZoneInfo, room: int) -> list[tuple[int, str]]:
    days = max(1, (t1 - t0) // 86_400_000_000)
    step = next((s for s in (1, 2, 7, 14, 30, 61, 91, 182, 365) if days / s <= room), 365)
    first = from_micros(t0).astimezone(zone).replace(hour=0, minute=0, second=0, microsecond=0)
    if step >= 7:
        first -= timedelta(days=first.weekday())  # Mondays
    out = []
    day = first
    while to_micros(day) <= t1:
        us = to_micros(day)
        if us >= t0:
            out.append((us, day.strftime("%d.%m.%y")))
        day = (day + timedelta(days=step)).replace(hour=0)
        day = day.replace(tzinfo=zone)
    return out


def draw(
    title: str,
    code_unit: str | None,
    points: list[tuple[int, float, str | None]],
    bands: list[Band],
    t0: int,
    t1: int,
    zone: str = "Europe/Oslo",
    width: float = 640,
    height: float = 230,
) -> Drawing:
    """The chart of one measurement over [t0, t1] (µs)."""
    tz = ZoneInfo(zone)
    shown = unit(code_unit)
    d = Drawing(width, height, text("chart.label", title=title, unit=shown))
    left, right, top, bottom = 58.0, 12.0, 12.0, 70.0
    pw, ph = width - left - right, height - top - bottom
    lo, hi = value_range(points, bands)

    def x(t: int) -> float:
        return left + (t - t0) / max(1, t1 - t0) * pw

    def y(v: float) -> float:
        return top + (hi - v) / (hi - lo) * ph

    def clamp(v: float | None, default: float) -> float:
        return default if v is None else min(hi, max(lo, v))

    # bands as they were: one rectangle per plan period and zone
    for b in bands:
        x0, x1 = x(max(b.start, t0)), x(min(b.end, t1))
        if x1 <= x0:
            continue
        for zone_code in ("yellow", "green"):
            b_lo, b_hi = b.yellow if zone_code == "yellow" else b.green
            if b_lo is None and b_hi is None:
                continue
            y_top, y_bottom = y(clamp(b_hi, hi)), y(clamp(b_lo, lo))
            d.add(
                "rect", (x0, y_top), (x1, y_bottom), fill=BAND[zone_code], cls=f"band-{zone_code}"
            )
        for zone_code in ("yellow", "green"):
            for bound in b.yellow if zone_code == "yellow" else b.green:
                if bound is not None and lo <= bound <= hi:
                    d.add(
                        "line",
                        (x0, y(bound)),
                        (x1, y(bound)),
                        stroke=EDGE[zone_code],
                        width=1.2,
                        dash=zone_code == "yellow",
                    )
    # value axis: grid, ticks and labels with the unit
    step = _nice_step(hi - lo)
    v = math.ceil(lo / step) * step
    while v <= hi:
        d.add("line", (left, y(v)), (left + pw, y(v)), stroke=GRID, width=0.5)
        d.add(
            "text",
            (left - 6, y(v) + 3.5),
            text=number(round(v, 6)),
            size=10,
            anchor="end",
            fill=INK,
        )
        v += step
    d.add("text", (4, top + 4), text=shown, size=10, fill=INK, anchor="start")
    # time axis: dates in Norwegian local time
    for us, label in _date_ticks(t0, t1, tz, max(2, int(pw // 80))):
        d.add("line", (x(us), top + ph), (x(us), top + ph + 4), stroke=INK, width=1)
        d.add("line", (x(us), top), (x(us), top + ph), stroke=GRID, width=0.5)
        # a date at either end is anchored inside the drawing, never cut at its edge
        room = 3.1 * len(label)  # half the label's width at 10 pt
        anchor = "end" if x(us) + room > width else "start" if x(us) - room < 0 else "middle"
        d.add("text", (x(us), top + ph + 16), text=label, size=10, anchor=anchor, fill=INK)
    d.add("line", (left, top), (left, top + ph), stroke=BLACK, width=1.2, cls="axis")
    d.add("line", (left, top + ph), (left + pw, top + ph), stroke=BLACK, width=1.2, cls="axis")
    # the measurements
    if len(points) > 1:
        d.add("polyline", *((x(t), y(val)) for t, val, _z in points), stroke=LINE, width=1)
    for t, val, z in points:
        zc = z if z in SHAPE else "not-assessed"
        d.add(
            "marker",
            (x(t), y(val)),
            fill=MARK[zc],
            stroke=BLACK if zc != "green" else MARK["green"],
            shape=SHAPE[zc],
            cls=f"point-{zc}",
            title=f"{from_micros(t).astimezone(tz):%d.%m.%Y kl. %H:%M}: "
            f"{number(val)} {shown} ({zone_name(zc)})",
        )
    _legend(d, left, top + ph + 32)
    return d


def _legend(d: Drawing, x: float, y: float) -> None:
    cx = x
    for zc in ("green", "yellow", "red", "not-assessed"):
        d.add(
            "marker",
            (cx + 5, y),
            fill=MARK[zc],
            stroke=BLACK if zc != "green" else MARK[zc],
            shape=SHAPE[zc],
        )
        label = text("chart.point", zone=zone_name(zc))
        d.add("text", (cx + 14, y + 4), text=label, size=10, fill=INK)
        cx += 14 + 6.2 * len(label) + 14
    y += 18
    d.add("rect", (x, y - 6), (x + 18, y + 6), fill=BAND["green"])
    d.add("line", (x, y - 6), (x + 18, y - 6), stroke=EDGE["green"], width=1.2)
    d.add("text", (x + 24, y + 4), text=text("chart.band_green"), size=10, fill=INK)
    x2 = x + 24 + 6.2 * len(text("chart.band_green")) + 20
    d.add("rect", (x2, y - 6), (x2 + 18, y + 6), fill=BAND["yellow"])
    d.add("line", (x2, y - 6), (x2 + 18, y - 6), stroke=EDGE["yellow"], width=1.2, dash=True)
    d.add("text", (x2 + 24, y + 4), text=text("chart.band_yellow"), size=10, fill=INK)
    x3 = x2 + 24 + 6.2 * len(text("chart.band_yellow")) + 20
    d.add("rect", (x3, y - 6), (x3 + 18, y + 6), fill=WHITE)
    d.add("line", (x3, y - 6), (x3 + 18, y - 6), stroke=EDGE["yellow"], width=1.2, dash=True)
    d.add("text", (x3 + 24, y + 4), text=text("chart.band_red"), size=10, fill=INK)


# ---- SVG --------------------------------------------------------------------------------------
def _hex(rgb: RGB | None) -> str:
    if rgb is None:
        return "none"
    return "#" + "".join(f"{round(c * 255):02x}" for c in rgb)


def _svg_marker(it: Item) -> str:
    (cx, cy) = it.points[0]
    fill, stroke = _hex(it.fill), _hex(it.stroke)
    title = f"<title>{html.escape(it.title)}</title>" if it.title else ""
    cls = f' class="{it.cls}"' if it.cls else ""
    if it.shape == "triangle":
        pts = f"{cx:.1f},{cy - 5:.1f} {cx + 5:.1f},{cy + 4:.1f} {cx - 5:.1f},{cy + 4:.1f}"
        return f'<polygon{cls} points="{pts}" fill="{fill}" stroke="{stroke}">{title}</polygon>'
    if it.shape == "square":
        return f'<rect{cls} x="{cx - 4:.1f}" y="{cy - 4:.1f}" width="8" height="8" fill="{fill}" stroke="{stroke}">{title}</rect>'
    return f'<circle{cls} cx="{cx:.1f}" cy="{cy:.1f}" r="3.5" fill="{fill}" stroke="{stroke}">{title}</circle>'


def to_svg(d: Drawing) -> str:
    out = [
        f'<svg class="chart" role="img" aria-label="{html.escape(d.label)}" width="{d.width:.0f}" '
        f'height="{d.height:.0f}" viewBox="0 0 {d.width:.0f} {d.height:.0f}" '
        f'xmlns="http://www.w3.org/2000/svg" font-family="Helvetica, Arial, sans-serif">'
        f"<title>{html.escape(d.label)}</title>"
    ]
    for it in d.items:
        if it.kind == "rect":
            (x0, y0), (x1, y1) = it.points
            cls = f' class="{it.cls}"' if it.cls else ""
            out.append(
                f'<rect{cls} x="{x0:.1f}" y="{y0:.1f}" width="{x1 - x0:.1f}" height="{y1 - y0:.1f}" fill="{_hex(it.fill)}"/>'
            )
        elif it.kind == "line":
            (x0, y0), (x1, y1) = it.points
            dash = ' stroke-dasharray="5 3"' if it.dash else ""
            cls = f' class="{it.cls}"' if it.cls else ""
            out.append(
                f'<line{cls} x1="{x0:.1f}" y1="{y0:.1f}" x2="{x1:.1f}" y2="{y1:.1f}" stroke="{_hex(it.stroke)}" stroke-width="{it.width:g}"{dash}/>'
            )
        elif it.kind == "polyline":
            pts = " ".join(f"{px:.1f},{py:.1f}" for px, py in it.points)
            out.append(
                f'<polyline fill="none" stroke="{_hex(it.stroke)}" stroke-width="{it.width:g}" points="{pts}"/>'
            )
        elif it.kind == "marker":
            out.append(_svg_marker(it))
        elif it.kind == "text":
            (tx, ty) = it.points[0]
            out.append(
                f'<text x="{tx:.1f}" y="{ty:.1f}" font-size="{it.size:g}" fill="{_hex(it.fill or BLACK)}" text-anchor="{it.anchor}">{html.escape(it.text)}</text>'
            )
    out.append("</svg>")
    return "".join(out)


# ---- PDF --------------------------------------------------------------------------------------
def to_pdf_ops(d: Drawing, ox: float, oy: float) -> list[str]:
    """PDF content operators drawing ``d`` with its top-left corner at (ox, oy) (PDF points,
    y upwards). Every text and shape sets its own colours: nothing inherits a previous fill."""

    def px(x: float) -> float:
        return ox + x

    def py(y: float) -> float:
        return oy - y

    def rg(c: RGB | None, op: str) -> str:
        c = c or BLACK
        return f"{c[0]:.3f} {c[1]:.3f} {c[2]:.3f} {op}"

    ops: list[str] = []
    for it in d.items:
        if it.kind == "rect":
            (x0, y0), (x1, y1) = it.points
            ops.append(
                f"{rg(it.fill, 'rg')} {px(x0):.1f} {py(y1):.1f} {x1 - x0:.1f} {y1 - y0:.1f} re f"
            )
        elif it.kind == "line":
            (x0, y0), (x1, y1) = it.points
            dash = "[5 3] 0 d" if it.dash else "[] 0 d"
            ops.append(
                f"{rg(it.stroke, 'RG')} {it.width:g} w {dash} {px(x0):.1f} {py(y0):.1f} m {px(x1):.1f} {py(y1):.1f} l S"
            )
        elif it.kind == "polyline":
            path = " ".join(
                f"{px(x):.1f} {py(y):.1f} {'m' if i == 0 else 'l'}"
                for i, (x, y) in enumerate(it.points)
            )
            ops.append(f"{rg(it.stroke, 'RG')} {it.width:g} w [] 0 d {path} S")
        elif it.kind == "marker":
            (cx, cy) = it.points[0]
            x, y = px(cx), py(cy)
            paint = f"{rg(it.fill, 'rg')} {rg(it.stroke, 'RG')} 0.8 w [] 0 d"
            if it.shape == "triangle":
                ops.append(
                    f"{paint} {x:.1f} {y + 5:.1f} m {x + 5:.1f} {y - 4:.1f} l {x - 5:.1f} {y - 4:.1f} l h B"
                )
            elif it.shape == "square":
                ops.append(f"{paint} {x - 4:.1f} {y - 4:.1f} 8 8 re B")
            else:
                r, k = 3.5, 3.5 * 0.5523
                ops.append(
                    f"{paint} {x + r:.2f} {y:.2f} m "
                    f"{x + r:.2f} {y + k:.2f} {x + k:.2f} {y + r:.2f} {x:.2f} {y + r:.2f} c "
                    f"{x - k:.2f} {y + r:.2f} {x - r:.2f} {y + k:.2f} {x - r:.2f} {y:.2f} c "
                    f"{x - r:.2f} {y - k:.2f} {x - k:.2f} {y - r:.2f} {x:.2f} {y - r:.2f} c "
                    f"{x + k:.2f} {y - r:.2f} {x + r:.2f} {y - k:.2f} {x + r:.2f} {y:.2f} c B"
                )
        elif it.kind == "text":
            (tx, ty) = it.points[0]
            width = 0.5 * it.size * len(it.text)  # Helvetica: about half an em a character
            x = px(tx) - (
                width if it.anchor == "end" else width / 2 if it.anchor == "middle" else 0
            )
            ops.append(
                f"{rg(it.fill or BLACK, 'rg')} BT /F1 {it.size:g} Tf {x:.1f} {py(ty):.1f} Td ({pdf_text(it.text)}) Tj ET"
            )
    return ops
