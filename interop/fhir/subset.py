"""``_summary`` and ``_elements``: a resource cut down to some of its elements, tagged SUBSETTED
(R4 §3.1.1.5.8–9), so that no client mistakes it for the whole resource (or writes it back).

Which elements are "summary" and which are mandatory comes from the R4 definitions in
``fhir.resources``; the cut is made on the top-level elements. Numbers keep the text they were
stored with (:mod:`interop.fhir.decimals`).
"""

from __future__ import annotations

from functools import lru_cache

import orjson
from fhir.resources.R4B import get_fhir_model_class

from interop.fhir import decimals

SUBSETTED = {
    "system": "http://terminology.hl7.org/CodeSystem/v3-ObservationValue",
    "code": "SUBSETTED",
    "display": "subsetted",
}
_ALWAYS = frozenset({"resourceType", "id", "meta"})


@lru_cache(maxsize=64)
def _elements(rtype: str) -> tuple[frozenset[str], frozenset[str]]:
    """(summary elements, mandatory elements) of a resource type, by JSON name."""
    summary: set[str] = set()
    mandatory: set[str] = set()
    for name, field in get_fhir_model_class(rtype).model_fields.items():
        extra = field.json_schema_extra if isinstance(field.json_schema_extra, dict) else {}
        element = field.alias or name
        if extra.get("summary_element_property"):
            summary.add(element)
        if extra.get("element_required") or field.is_required():
            mandatory.add(element)
    return frozenset(summary), frozenset(mandatory)


class Subset:
    """What a request asked to keep of each resource (``None`` from :func:`requested`: all)."""

    def __init__(self, summary: str | None, elements: frozenset[str] | None) -> None:
        self.summary = summary
        self.elements = elements

    def keeps(self, rtype: str, element: str) -> bool:
        base = element[1:] if element.startswith("_") else element
        if base in _ALWAYS:
            return True
        summary, mandatory = _elements(rtype)
        if base in mandatory:
            return True
        if self.elements is not None:
            return base in self.elements
        if self.summary == "true":
            return base in summary
        if self.summary == "text":
            return base == "text"
        return base != "text"  # data

    def apply(self, content: bytes) -> bytes:
        resource = decimals.keep_precision(content, orjson.loads(content))
        rtype = resource.get("resourceType")
        if not isinstance(rtype, str):
            return content
        try:
            out = {k: v for k, v in resource.items() if self.keeps(rtype, k)}
        except (KeyError, ValueError):  # a type the definitions do not know: leave it whole
            return content
        meta = dict(out.get("meta") or {})
        meta["tag"] = [*(meta.get("tag") or []), SUBSETTED]
        out["meta"] = meta
        return decimals.dumps(out)


def requested(params: list[tuple[str, str]]) -> Subset | None:
    """The subset ``_summary`` (true/text/data) or ``_elements`` asks for, or ``None``."""
    summary: str | None = None
    elements: set[str] | None = None
    for key, value in params:
        if key == "_summary" and value in ("true", "text", "data"):
            summary = value
        elif key == "_elements":
            # ``name`` or ``Type.name``: top-level elements
            names = {e.strip().rpartition(".")[2] for e in value.split(",")}
            elements = (elements or set()) | {n for n in names if n}
    if summary is None and not elements:
        return None
    return Subset(summary, frozenset(elements) if elements else None)
