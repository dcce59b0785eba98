"""The trend chart of a summary view as a one-page PDF (what a GP's EPJ shows as an attachment).

A small, dependency-free PDF 1.4 writer: vector lines, filled zone bands and text in the
standard Helvetica font (WinAnsi encoding covers æ, ø, å). One panel per measurement code:
the green and yellow bands of the plan, the measured values as a line, yellow and red values
marked, the period on the x axis and the value range on the y axis.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

from interop.fhir.dates import to_micros
from interop.views.summary import value_axis

PAGE_W, PAGE_H = 595.0, 842.0  # A4 portrait, points
MARGIN = 48.0
ZONE_RGB = {"green": (0.90, 0.96, 0.92), "yellow": (1.0, 0.96, 0.81)}
DOT_RGB = {"yellow": (0.72, 0.47, 0.12), "red": (0.78, 0.16, 0.16)}
LINE_RGB = (0.12, 0.31, 0.47)


def _text(s: str) -> str:
    raw = s.encode("cp1252", errors="replace").decode("latin-1")
    return raw.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")


def _fmt(v: float) -> str:
    return f"{v:.2f}".rstrip("0").rstrip(".")


class _Canvas:
    def __init__(self) -> None:
        self.ops: list[str] = []

    def text(self, x: float, y: float, s: str, size: float = 9.0) -> None:
        self.ops.append(f"BT /F1 {size:g} Tf {x:.1f} {y:.1f} Td ({_text(s)}) Tj ET")

    def rect(self, x: float, y: float, w: float, h: float, rgb: tuple[float, float, float]) -> None:
        r, g, b = rgb
        self.ops.append(f"{r:.2f} {g:.2f} {b:.2f} rg {x:.1f} {y:.1f} {w:.1f} {h:.1f} re f")

    def stroke_rect(self, x: float, y: float, w: float, h: float) -> None:
        self.ops.append(f"0.6 G 0.5 w {x:.1f} {y:.1f} {w:.1f} {h:.1f} re S")

    def polyline(self, pts: list[tuple[float, float]], rgb: tuple[float, float, float]) -> None:
        if len(pts) < 2:
            return
        r, g, b = rgb
        path = " ".join(f"{x:.1f} {y:.1f} {'m' if i == 0 else 'l'}" for i, (x, y) in enumerate(pts))
        self.ops.append(f"{r:.2f} {g:.2f} {b:.2f} RG 1.2 w {path} S")

    def bytes(self) -> bytes:
        return ("\n".join(self.ops) + "\n").encode("latin-1")


def _panel(
    c: _Canvas, code: dict[str, Any], t0: int, t1: int, x: float, y: float, w: float, h: float
) -> None:
    pts = code.get("_raw") or []
    rng = code.get("ranges") or {}
    unit = code.get("unit") or ""
    latest = code.get("latest") or {}
    title = (
        f"{code.get('display', code.get('code'))} ({unit})" if unit else str(code.get("display"))
    )
    c.text(x, y + h + 6, title, 10)
    if latest:
        c.text(
            x + w - 190,
            y + h + 6,
            f"siste {_fmt(float(latest.get('value', 0)))} {unit}  snitt {_fmt(float(code.get('mean', 0)))}",
            8,
        )
    if not pts:
        c.stroke_rect(x, y, w, h)
        c.text(x + 8, y + h / 2, "ingen målinger i perioden", 8)
        return
    lo, hi = value_axis(code)

    def sy(v: float) -> float:
        return y + (v - lo) / (hi - lo) * h

    def sx(t: int) -> float:
        return x + (t - t0) / max(1, t1 - t0) * w

    for zone in ("yellow", "green"):
        band = rng.get(zone)
        if band:
            b_lo = float(band[0]) if band[0] is not None else lo
            b_hi = float(band[1]) if band[1] is not None else hi
            b_lo, b_hi = max(b_lo, lo), min(b_hi, hi)
            if b_hi > b_lo:
                c.rect(x, sy(b_lo), w, sy(b_hi) - sy(b_lo), ZONE_RGB[zone])
    c.stroke_rect(x, y, w, h)
    c.polyline([(sx(int(t)), sy(float(v))) for t, v, _z in pts], LINE_RGB)
    for t, v, z in pts:
        if z in DOT_RGB:
            c.rect(sx(int(t)) - 2, sy(float(v)) - 2, 4, 4, DOT_RGB[z])
    c.text(x - 34, y - 3, _fmt(lo), 7)
    c.text(x - 34, y + h - 6, _fmt(hi), 7)


def render_pdf(
    summary: dict[str, Any], patient_label: str, zone_name: str = "Europe/Oslo"
) -> bytes:
    """A one-page PDF with the summary's trend charts (uses each code's ``_raw`` points)."""
    zone = ZoneInfo(zone_name)
    start = datetime.fromisoformat(summary["period"]["start"])
    end = datetime.fromisoformat(summary["period"]["end"])
    t0, t1 = to_micros(start), to_micros(end)
    c = _Canvas()
    c.text(MARGIN, PAGE_H - MARGIN, f"{summary.get('title', 'Trend')} – {patient_label}", 13)
    c.text(
        MARGIN,
        PAGE_H - MARGIN - 16,
        f"Periode {start.astimezone(zone):%d.%m.%Y} – {end.astimezone(zone):%d.%m.%Y}. "
        f"Grønt/gult felt: egenbehandlingsplanens soner. Markerte punkter: gule og røde målinger.",
        8,
    )
    codes = [code for code in summary.get("codes", []) if code.get("_raw")][:5]
    top = PAGE_H - MARGIN - 48
    panel_h = min(120.0, (top - MARGIN - 30) / max(1, len(codes)) - 34)
    for i, code in enumerate(codes):
        y = top - (i + 1) * (panel_h + 34)
        _panel(c, code, t0, t1, MARGIN + 30, y, PAGE_W - 2 * MARGIN - 30, panel_h)
    c.text(MARGIN + 30, MARGIN - 14, f"{start.astimezone(zone):%d.%m}", 7)
    c.text(PAGE_W - MARGIN - 24, MARGIN - 14, f"{end.astimezone(zone):%d.%m}", 7)
    made = datetime.now(UTC).strftime("D:%Y%m%d%H%M%SZ")
    return _document(c.bytes(), made)


def _document(content: bytes, created: str) -> bytes:
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        (
            f"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 {PAGE_W:g} {PAGE_H:g}] "
            "/Resources << /Font << /F1 4 0 R >> >> /Contents 5 0 R >>"
        ).encode(),
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica /Encoding /WinAnsiEncoding >>",
        b"<< /Length " + str(len(content)).encode() + b" >>\nstream\n" + content + b"endstream",
        f"<< /Producer (DHO Interop) /CreationDate ({created}) >>".encode(),
    ]
    out = bytearray(b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n")
    offsets = []
    for n, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += f"{n} 0 obj\n".encode() + body + b"\nendobj\n"
    xref = len(out)
    out += f"xref\n0 {len(objects) + 1}\n0000000000 65535 f \n".encode()
    for off in offsets:
        out += f"{off:010d} 00000 n \n".encode()
    out += (
        f"trailer\n<< /Size {len(objects) + 1} /Root 1 0 R /Info {len(objects)} 0 R >>\n"
        f"startxref\n{xref}\n%%EOF\n"
    ).encode()
    return bytes(out)
