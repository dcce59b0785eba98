"""The trend charts of a summary view as a one-page PDF (what a GP's EPJ shows as an
attachment): the very drawing the HTML page shows (:mod:`interop.views.chart`), written as PDF
1.4 vector operators with the standard Helvetica font (WinAnsi covers æ, ø, å).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from interop.fhir.dates import to_micros
from interop.text import local_time, text
from interop.text.pdf import MARGIN, PAGE_H, document, text_op
from interop.views.chart import to_pdf_ops
from interop.views.concepts import display
from interop.views.summary import chart_of

CHART_W, CHART_H = 515.0, 200.0
PER_PAGE = 3


def _title(x: float, y: float, s: str, size: float) -> str:
    return text_op(x, y, s, size)


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
    return document([("\n".join(ops) + "\n").encode("latin-1")])
