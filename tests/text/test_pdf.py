"""The hand-written PDF: a structure a reader opens (every xref offset at its object, every
stream as long as it says), Norwegian letters in WinAnsi, long text wrapped onto more pages."""

from __future__ import annotations

import re

from interop.text.pdf import text_document


def pdf_streams(pdf: bytes) -> list[bytes]:
    """The content streams of a PDF whose structure is checked on the way."""
    assert pdf.startswith(b"%PDF-1.4") and pdf.rstrip().endswith(b"%%EOF")
    xref_at = int(re.search(rb"startxref\n(\d+)", pdf).group(1))  # type: ignore[union-attr]
    assert pdf[xref_at:].startswith(b"xref")
    offsets = [int(m) for m in re.findall(rb"(\d{10}) 00000 n", pdf)]
    for n, off in enumerate(offsets, start=1):
        assert pdf[off:].startswith(f"{n} 0 obj".encode()), n
    streams = []
    for m in re.finditer(rb"/Length (\d+) >>\nstream\n", pdf):
        body = pdf[m.end() :]
        length = int(m.group(1))
        assert body[length:].startswith(b"endstream")
        streams.append(body[:length])
    count = int(re.search(rb"/Type /Pages /Kids \[[^\]]*\] /Count (\d+)", pdf).group(1))  # type: ignore[union-attr]
    assert count == len(streams)
    return streams


def test_text_document_wraps_onto_pages_in_winansi() -> None:
    lines = ["Forslag til egenbehandlingsplan for Åse Ærø", "", "Puls: grønn ≥ 60 /min (x)"]
    lines += [f"Linje {n}: " + "ord " * 60 for n in range(80)]
    pdf = text_document(lines)
    streams = pdf_streams(pdf)
    assert len(streams) > 2, "80 long lines do not fit on one page"
    first = streams[0]
    assert "Åse Ærø".encode("cp1252") in first and "grønn".encode("cp1252") in first
    assert b"\\(x\\)" in first and b">= 60" in first  # escaped, and no "?" for a missing glyph
    assert b"Linje 79:" in streams[-1]
    # every line starts inside the page
    for s in streams:
        for m in re.finditer(rb"Tf ([\d.]+) ([\d.]+) Td", s):
            x, y = float(m.group(1)), float(m.group(2))
            assert 0 < x < 595 and 0 < y < 842
