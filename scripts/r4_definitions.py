"""Make ``fhir_profiles/r4/search-parameters.json`` and ``compartment-patient.json`` from the
official FHIR R4 (4.0.1) definitions: ``search-parameters.json`` (a Bundle of SearchParameter)
and ``compartmentdefinition-patient.json`` as published with the specification (CC0).

    python scripts/r4_definitions.py <folder with the two official files>

The output keeps, per resource type, each parameter's code, type, FHIRPath expression (only
the part for that type, when one definition serves several), targets and composite
components; and, per resource type, the parameters that put a resource in a Patient's
compartment. Nothing else is changed.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

OUT = Path(__file__).resolve().parent.parent / "fhir_profiles" / "r4"


def _split_union(expression: str) -> list[str]:
    """Top-level ``|`` alternatives of a FHIRPath expression (not inside brackets or quotes)."""
    parts, depth, quote, start = [], 0, False, 0
    for i, ch in enumerate(expression):
        if ch == "'":
            quote = not quote
        elif not quote and ch in "([":
            depth += 1
        elif not quote and ch in ")]":
            depth -= 1
        elif not quote and depth == 0 and ch == "|":
            parts.append(expression[start:i].strip())
            start = i + 1
    parts.append(expression[start:].strip())
    return [p for p in parts if p]


def _for_type(expression: str, rtype: str) -> str:
    mine = [
        p
        for p in _split_union(expression)
        if p.lstrip("(").startswith(rtype + ".")
        or p.lstrip("(").startswith(rtype + " ")
        or p.lstrip("(") == rtype
    ]
    return " | ".join(mine)


def main(folder: Path) -> None:
    bundle = json.loads((folder / "search-parameters.json").read_text("utf-8"))
    by_url = {e["resource"]["url"]: e["resource"] for e in bundle["entry"]}
    out: dict[str, dict[str, dict[str, object]]] = {}
    for sp in by_url.values():
        if not sp["url"].startswith("http://hl7.org/fhir/SearchParameter/"):
            continue
        for base in sp["base"]:
            if base in ("Resource", "DomainResource"):
                continue
            entry: dict[str, object] = {"type": sp["type"]}
            expression = sp.get("expression")
            if expression:
                entry["expression"] = _for_type(expression, base) or expression
            if sp.get("target"):
                entry["target"] = sorted(sp["target"])
            if sp.get("component"):
                entry["component"] = [
                    {
                        "param": by_url[c["definition"]]["code"],
                        "expression": c["expression"],
                    }
                    for c in sp["component"]
                    if c["definition"] in by_url
                ]
            out.setdefault(base, {})[sp["code"]] = entry
    doc = {
        "source": "HL7 FHIR R4 4.0.1 search-parameters.json (CC0), reduced by "
        "scripts/r4_definitions.py",
        "resources": {t: dict(sorted(p.items())) for t, p in sorted(out.items())},
    }
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "search-parameters.json").write_text(
        json.dumps(doc, indent=0, ensure_ascii=False, sort_keys=False) + "\n", "utf-8"
    )
    comp = json.loads((folder / "compartmentdefinition-patient.json").read_text("utf-8"))
    compartment = {
        "source": f"{comp['url']} (FHIR R4 4.0.1, CC0)",
        "resources": {r["code"]: r.get("param", []) for r in comp["resource"]},
    }
    (OUT / "compartment-patient.json").write_text(
        json.dumps(compartment, indent=1, ensure_ascii=False) + "\n", "utf-8"
    )


if __name__ == "__main__":
    main(Path(sys.argv[1]))
