"""Writing PDF 1.4 by hand for what the service sends people (the GP's trend charts, the
proposed egenbehandlingsplan): the standard Helvetica font with WinAnsi encoding (æ, ø, å,
–, ≥ is written as >=), A4 pages, no external fonts or libraries."""

from __future__ import annotations

import textwrap
from datetime import UTC, datetime

PAGE_W, PAGE_H = 595.0, 842.0  # A4 portrait, points
MARGIN = 40.0
_CP1252_MISSING = {"≥": ">=", "≤": "<=", "−": "-"}


def pdf_text(s: str) -> str:
    """``s`` as a PDF string literal's content in WinAnsi (cp1252), with ``\\ ( )`` escaped."""
    for char, spelled in _CP1252_MISSING.items():
        s = s.replace(char, spelled)
    raw = s.encode("cp1252", errors="replace").decode("latin-1")
    return raw.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")


def text_op(x: float, y: float, s: str, size: float) -> str:
    """One line of black text at (x, y)."""
    return f"0 0 0 rg BT /F1 {size:g} Tf {x:.1f} {y:.1f} Td ({pdf_text(s)}) Tj ET"


def document(pages: list[bytes], created: datetime | None = None) -> bytes:
    """A PDF of A4 pages, each given as its content stream (PDF operators, Latin-1)."""
    made = (created or datetime.now(UTC)).strftime("D:%Y%m%d%H%M%SZ")
    n_pages = len(pages)
    page_ids = [3 + 2 * i for i in range(n_pages)]
    font_id = 3 + 2 * n_pages
    info_id = font_id + 1
    objects: list[bytes] = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        (
            "<< /Type /Pages /Kids ["
            + " ".join(f"{p} 0 R" for p in page_ids)
            + f"] /Count {n_pages} >>"
        ).encode(),
    ]
    for pid, content in zip(page_ids, pages, strict=True):
        objects.append(
            (
                f"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 {PAGE_W:g} {PAGE_H:g}] "
                f"/Resources << /Font << /F1 {font_id} 0 R >> >> /Contents {pid + 1} 0 R >>"
            ).encode()
        )
        objects.append(
            b"<< /Length " + str(len(content)).encode() + b" >>\nstream\n" + content + b"endstream"
        )
    objects.append(
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica /Encoding /WinAnsiEncoding >>"
    )
    objects.append(f"<< /Producer (DHO Interop) /CreationDate ({made}) >>".encode())
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
        f"trailer\n<< /Size {len(objects) + 1} /Root 1 0 R /Info {info_id} 0 R >>\n"
        f"startxref\n{xref}\n%%EOF\n"
    ).encode()
    return bytes(out)


def text_document(lines: list[str], size: float = 10.0) -> bytes:
    """Plain text as a PDF: the first line as a heading, the rest wrapped to the page width
    (Helvetica is about half an em a character), on as many pages as it takes."""
    leading = size * 1.4
    width_chars = int((PAGE_W - 2 * MARGIN) / (0.5 * size))
    laid: list[tuple[str, float]] = []
    for n, line in enumerate(lines):
        font = size * 1.3 if n == 0 else size
        wrapped = textwrap.wrap(line, width=width_chars, subsequent_indent="  ") or [""]
        laid += [(w, font) for w in wrapped]
    pages: list[bytes] = []
    ops: list[str] = []
    y = PAGE_H - MARGIN
    for line, font in laid:
        if y < MARGIN:
            pages.append(("\n".join(ops) + "\n").encode("latin-1"))
            ops, y = [], PAGE_H - MARGIN
        if line:
            ops.append(text_op(MARGIN, y, line, font))
        y -= leading
    pages.append(("\n".join(ops) + "\n").encode("latin-1"))
    return document(pages)
