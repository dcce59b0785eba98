"""The trend charts of a summary view as a one-page PDF (what a GP's EPJ shows as an
attachment): the very drawing the HTML page shows (:mod:`interop.views.chart`), written as PDF
1.4 vector operators with the standard Helvetica font (WinAnsi covers æ, ø, å).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from interop.fhir.dates import to_micros
from interop.text import local_time, text
from interop.views.chart import pdf_text, to_pdf_ops
from interop.views.concepts import display
from interop.views.summary import chart_of

PAGE_W, PAGE_H = 595.0, 842.0  # A4 portrait, points
MARGIN = 40.0
CHART_W, CHART_H = 515.0, 200.0
PER_PAGE = 3


def _title(x: float, y: float, s: str, size: float) -> str:
    return f"0 0 0 rg BT /F1 {size:g} Tf {x:.1f} {y:.1f} Td ({pdf_text(s)}) Tj ET"


def render_pdf(
    summary: dict[str, Any], patient_label: str, zone_name: str = "Europe/Oslo"
) -> bytes:
    """A one-page PDF with the summary's first charts (each code's ``_raw`` points)."""
    start = datetime.fromisoformat(summary["period"]["start"])
    end = datetime.fromisoformat(summary["period"]["end"])
    t0, t1 = to_micros(start), to_micros(end)
    ops = [
        _title(MARGIN, PAGE_H - MARGIN, f"{summary.get('title', '')} – {patient_label}", 12),
        _title(
            MARGIN,
            PAGE_H - MARGIN - 16,
            text(
                "summary.period",
                start=local_time(start, zone_name, with_time=False),
                end=local_time(end, zone_name, with_time=False),
            ),
            9,
        ),
    ]
    codes = [code for code in summary.get("codes", []) if code.get("_raw")][:PER_PAGE]
    top = PAGE_H - MARGIN - 40
    for i, code in enumerate(codes):
        y = top - i * (CHART_H + 40)
        ops.append(_title(MARGIN, y, display(code["code"]), 10))
        drawing = chart_of(code, t0, t1, zone_name)
        scale = CHART_W / drawing.width
        ops += ["q", f"{scale:.4f} 0 0 {scale:.4f} {MARGIN:.1f} {y - 8:.1f} cm"]
        ops += [*to_pdf_ops(drawing, 0.0, 0.0), "Q"]
    made = datetime.now(UTC).strftime("D:%Y%m%d%H%M%SZ")
    return _document(("\n".join(ops) + "\n").encode("latin-1"), made)


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
