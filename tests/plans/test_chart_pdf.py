"""The GP's trend chart attachment is a well-formed one-page PDF with the codes' panels."""

from __future__ import annotations

import re

from interop.views.chart_pdf import render_pdf
from tests.text.test_pdf import pdf_streams


def _summary() -> dict[str, object]:
    t0 = 1_793_000_000_000_000
    return {
        "title": "Fastlegens oversikt",
        "period": {"start": "2026-11-01T00:00:00+00:00", "end": "2026-11-29T00:00:00+00:00"},
        "codes": [
            {
                "code": "2708-6",
                "display": "SpO2",
                "unit": "%",
                "mean": 92.4,
                "latest": {"value": 88, "zone": "red"},
                "ranges": {"source": "plan", "green": [92, None], "yellow": [88, None]},
                "bands": [
                    {
                        "start": "2026-11-01T00:00:00+00:00",
                        "end": "2026-11-15T00:00:00+00:00",
                        "green": [92, None],
                        "yellow": [88, None],
                        "source": "CarePlan/1",
                    },
                    {
                        "start": "2026-11-15T00:00:00+00:00",
                        "end": "2026-11-29T00:00:00+00:00",
                        "green": [94, None],
                        "yellow": [90, None],
                        "source": "CarePlan/2",
                    },
                ],
                "_raw": [(t0 + i * 86_400_000_000, 90 + i % 5, "yellow") for i in range(20)],
            },
            {"code": "8867-4", "display": "Puls", "unit": "/min", "_raw": []},
        ],
    }


def test_pdf_structure_and_text() -> None:
    pdf = render_pdf(_summary(), "Line Danser (Ærø)")
    [stream] = pdf_streams(pdf)
    assert b"(Oksygenmetning \\(SpO2\\))" in pdf and "Ærø".encode("cp1252") in pdf  # WinAnsi
    assert b"(%) Tj" in pdf  # the value axis says its unit
    assert b"re f" in pdf and b" l " in pdf  # zone bands and the value line
    assert b"(04.11.26) Tj" in pdf or b"(02.11.26) Tj" in pdf  # a dated time axis
    # every text sets its own (dark) colour: none inherits a band's or a point's fill
    for m in re.finditer(rb"([\d.]+) ([\d.]+) ([\d.]+) rg BT", stream):
        assert max(float(c) for c in m.groups()) <= 0.2, m.group(0)
    assert stream.count(b"BT") == len(re.findall(rb"rg BT", stream))
    # the axes are black lines, not faint ones
    assert re.search(rb"0\.000 0\.000 0\.000 RG 1\.2 w", stream)
    # the plan changed mid-period: two green bands, at different heights
    assert stream.count(b"0.860 0.940 0.870 rg") >= 3  # two periods + the legend
