"""The benchmark report: rows printed as they come and written as Markdown at the end."""

from __future__ import annotations

import platform
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

SIZED_SECTIONS = frozenset({"fhir", "ingest", "views"})
"""Sections measured against the 10k/100k/1M data sets (the others bring their own data)."""


@dataclass
class Row:
    section: str
    backend: str
    size: int
    what: str
    figure: str
    detail: str
    target: str
    ok: bool | None


@dataclass
class Report:
    rows: list[Row] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def row(
        self,
        section: str,
        backend: str,
        size: int,
        what: str,
        figure: str,
        detail: str,
        *,
        target: str = "",
        ok: bool | None = None,
    ) -> None:
        r = Row(section, backend, size, what, figure, detail, target, ok)
        self.rows.append(r)
        mark = "" if ok is None else (" ✔" if ok else " ✘ below target")
        print(
            f"[{section}/{backend}/{size:,}] {what}: {figure} {detail} {target}{mark}", flush=True
        )

    def note(self, text: str) -> None:
        self.notes.append(text)
        print(f"note: {text}", flush=True)

    def markdown(self) -> str:
        lines = [
            "# DHO Interop benchmark report",
            "",
            f"Generated {datetime.now(UTC).isoformat(timespec='seconds')} by `make bench` on "
            f"{platform.node()} ({platform.machine()}, Python {platform.python_version()}, "
            "2 cores). One API worker unless stated.",
            "",
            "| section | backend | stored Observations | measurement | figure | detail | target | met |",
            "|---|---|---:|---|---|---|---|---|",
        ]
        for r in self.rows:
            met = "" if r.ok is None else ("yes" if r.ok else "**no**")
            size = f"{r.size:,}" if r.size else "–"
            lines.append(
                f"| {r.section} | {r.backend} | {size} | {r.what} | {r.figure} | {r.detail} | {r.target} | {met} |"
            )
        lines += self.scaling()
        if self.notes:
            lines += ["", "## Notes", ""] + [f"- {n}" for n in self.notes]
        return "\n".join(lines) + "\n"

    def scaling(self) -> list[str]:
        """The same measurement at each data size side by side: how cost grows with data."""
        sized = [r for r in self.rows if r.size and r.section in SIZED_SECTIONS]
        sizes = sorted({r.size for r in sized})
        if len(sizes) < 2:
            return []
        series: dict[tuple[str, str, str], dict[int, str]] = {}
        for r in sized:
            cell = f"{r.figure}, {r.detail}" if r.detail.startswith("p95") else r.figure
            series.setdefault((r.section, r.backend, r.what), {})[r.size] = cell
        multi = {k: v for k, v in series.items() if len(v) >= 2}
        if not multi:
            return []
        out = [
            "",
            "## Scaling with data size",
            "",
            "The same measurement at each number of stored Observations (from the table above).",
            "",
            "| section | backend | measurement | " + " | ".join(f"{s:,}" for s in sizes) + " |",
            "|---|---|---|" + "---:|" * len(sizes),
        ]
        for (section, backend, what), figures in multi.items():
            cells = " | ".join(figures.get(size, "–") for size in sizes)
            out.append(f"| {section} | {backend} | {what} | {cells} |")
        return out

    def write(self, path: Path) -> None:
        path.write_text(self.markdown(), encoding="utf-8")
