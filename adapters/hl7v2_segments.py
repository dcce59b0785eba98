"""A small, fast HL7 v2 segment/field splitter (no object model; hl7apy stays off the hot path).

Line endings and a UTF-8 BOM are normalised first (``\\r\\n``, ``\\n`` and ``\\r`` all end a
segment); the delimiters come from MSH-1/MSH-2, never assumed; escape sequences are undone
per field component.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

BOM = b"\xef\xbb\xbf"
_NEWLINES = re.compile(r"\r\n|\n|\r")


@dataclass(frozen=True, slots=True)
class Delimiters:
    field: str = "|"
    component: str = "^"
    repetition: str = "~"
    escape: str = "\\"
    subcomponent: str = "&"


class Hl7SyntaxError(ValueError):
    """The bytes are not an HL7 v2 message (no usable MSH segment)."""


def decode(data: bytes) -> str:
    if data.startswith(BOM):
        data = data[len(BOM) :]
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return data.decode("latin-1")


def split_segments(text: str) -> list[str]:
    return [s for s in _NEWLINES.split(text.strip("\x0b\x1c\r\n ")) if s.strip()]


def delimiters(msh: str) -> Delimiters:
    if not msh.startswith("MSH") or len(msh) < 8:
        raise Hl7SyntaxError("the message does not start with an MSH segment")
    fs = msh[3]
    enc = msh[4:].split(fs, 1)[0]
    if len(enc) < 2:
        raise Hl7SyntaxError(f"MSH-2 encoding characters {enc!r} are incomplete")
    return Delimiters(
        field=fs,
        component=enc[0],
        repetition=enc[1],
        escape=enc[2] if len(enc) > 2 else "\\",
        subcomponent=enc[3] if len(enc) > 3 else "&",
    )


def unescape(value: str, d: Delimiters) -> str:
    e = d.escape
    if e not in value:
        return value
    out: list[str] = []
    i = 0
    n = len(value)
    while i < n:
        c = value[i]
        if c == e:
            j = value.find(e, i + 1)
            if j == -1:
                out.append(value[i:])
                break
            seq = value[i + 1 : j]
            if seq == "F":
                out.append(d.field)
            elif seq == "S":
                out.append(d.component)
            elif seq == "T":
                out.append(d.subcomponent)
            elif seq == "R":
                out.append(d.repetition)
            elif seq == "E":
                out.append(e)
            elif seq.startswith("X") and len(seq) > 1:
                try:
                    out.append(bytes.fromhex(seq[1:]).decode("latin-1"))
                except ValueError:
                    out.append(value[i : j + 1])
            elif seq in (".br", ".sp"):
                out.append("\n")
            else:
                out.append(value[i : j + 1])
            i = j + 1
        else:
            out.append(c)
            i += 1
    return "".join(out)


def escape(value: str, d: Delimiters) -> str:
    e = d.escape
    out = value.replace(e, f"{e}E{e}")
    out = out.replace(d.field, f"{e}F{e}").replace(d.component, f"{e}S{e}")
    out = out.replace(d.subcomponent, f"{e}T{e}").replace(d.repetition, f"{e}R{e}")
    return out


class Segment:
    """One segment; ``seg[n]`` is field n as HL7 numbers it (MSH-1 is the field separator)."""

    __slots__ = ("fields", "name", "d", "index")

    def __init__(self, raw: str, d: Delimiters, index: int) -> None:
        self.d = d
        self.index = index
        parts = raw.split(d.field)
        self.name = parts[0]
        if self.name == "MSH":
            self.fields = ["MSH", d.field, *parts[1:]]
        else:
            self.fields = parts

    def __getitem__(self, n: int) -> str:
        return self.fields[n] if n < len(self.fields) else ""

    def repetitions(self, n: int) -> list[str]:
        return [r for r in self[n].split(self.d.repetition) if r]

    def components(self, n: int, rep: str | None = None) -> list[str]:
        raw = self[n] if rep is None else rep
        return [unescape(c, self.d) for c in raw.split(self.d.component)]

    def component(self, n: int, k: int, rep: str | None = None) -> str:
        comps = self.components(n, rep)
        return comps[k - 1] if k - 1 < len(comps) else ""

    def text(self, n: int) -> str:
        return unescape(self[n], self.d)


def parse(data: bytes) -> list[Segment]:
    text = decode(data)
    raw = split_segments(text)
    if not raw:
        raise Hl7SyntaxError("empty message")
    d = delimiters(raw[0])
    return [Segment(s, d, i) for i, s in enumerate(raw)]
