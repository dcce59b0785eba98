"""The service's missing-measurement Flags written before they carried their kind, known by
their whole text in the forms the service wrote (``mappings/plans/earlier-flags.yaml``)."""

from __future__ import annotations

import re
from functools import lru_cache
from importlib.resources import files
from typing import Any

import yaml

from interop.care.plans import LOINC
from interop.text import measurement_name

_TIME = r"\d\d\.\d\d\.\d{4} kl\. \d\d:\d\d"
_FIELD = re.compile(r"\{(code|measurement|time|rest)\}")


@lru_cache(maxsize=1)
def _forms() -> tuple[str, ...]:
    raw = (files("mappings") / "plans" / "earlier-flags.yaml").read_text(encoding="utf-8")
    forms = yaml.safe_load(raw)["missing-measurement"]
    if not isinstance(forms, list) or not all(isinstance(f, str) for f in forms):
        raise ValueError("earlier-flags.yaml: missing-measurement is a list of texts")
    return tuple(forms)


@lru_cache(maxsize=512)
def _pattern(form: str, code: str | None) -> re.Pattern[str] | None:
    """The form as a pattern of the whole text (None when it names the measurement and the
    Flag has no LOINC coding to name it by)."""
    out: list[str] = []
    at = 0
    for m in _FIELD.finditer(form):
        out.append(re.escape(form[at : m.start()]))
        field = m.group(1)
        if field == "measurement":
            if code is None:
                return None
            out.append(re.escape(measurement_name(code)))
        elif field == "code":
            out.append(re.escape(code) if code is not None else r"[0-9A-Za-z.:-]+")
        elif field == "time":
            out.append(_TIME)
        else:
            out.append(r".*")
        at = m.end()
    out.append(re.escape(form[at:]))
    return re.compile("".join(out), re.DOTALL)


def is_earlier_missing_flag(flag: dict[str, Any]) -> bool:
    """Whether the Flag is a missing-measurement Flag the service wrote before it carried its
    kind: its text is one of the earlier forms (of a measurement it has a LOINC coding of,
    when the form names it)."""
    concept = flag.get("code") or {}
    words = concept.get("text")
    if not isinstance(words, str) or not words:
        return False
    codes: list[str | None] = [
        str(c["code"])
        for c in concept.get("coding", [])
        if c.get("system") == LOINC and isinstance(c.get("code"), str)
    ] or [None]
    for form in _forms():
        for code in codes:
            pattern = _pattern(form, code)
            if pattern is not None and pattern.fullmatch(words):
                return True
    return False
