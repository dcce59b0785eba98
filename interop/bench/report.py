"""The benchmark report: rows printed as they come and written as Markdown at the end."""

from __future__ import annotations

import platform
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path


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
        if self.notes:
            lines += ["", "## Notes", ""] + [f"- {n}" for n in self.notes]
        return "\n".join(lines) + "\n"

    def write(self, path: Path) -> None:
        path.write_text(self.markdown(), encoding="utf-8")
