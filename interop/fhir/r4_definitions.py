"""The official FHIR R4 search parameters and Patient compartment, as data
(``fhir_profiles/r4/``, made from the specification by ``scripts/r4_definitions.py``).

Every R4 resource type the R4B models know is served; a type the product has no entry for in
``fhir_profiles/search-parameters.yaml`` gets the official parameters, indexed by the generic
tables, so a new type needs no code. This module turns each parameter's FHIRPath expression
into element paths (the forms the R4 definitions use: element names, ``ofType()``/``as``,
``where(resolve() is T)``, ``where(system='phone')``); a parameter whose expression uses
anything else is left out (searching it is refused as unsupported, never guessed).

A reference parameter named in the Patient CompartmentDefinition puts the resource in that
Patient's compartment (access control, ``Patient/$everything``): only a reference to a
``Patient/`` counts, and the compartment definition's order decides which one when several do.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from functools import lru_cache
from importlib.resources import files
from typing import Any

from interop.fhir.elements import element, is_choice, is_model

NOT_STORED = frozenset({"Parameters", "OperationOutcome"})
"""R4 types that are never stored (they only travel in requests and answers)."""
INDEXED_TYPES = {
    "token": "token",
    "uri": "token",
    "reference": "reference",
    "date": "date",
    "string": "string",
    "quantity": "quantity",
    "number": "number",
}
"""R4 parameter type → the generic index that holds it (``uri`` is matched exactly, as a
token without a system)."""


@dataclass(frozen=True, slots=True)
class R4Param:
    name: str
    type: str
    paths: tuple[tuple[str, ...], ...]
    target: str | None
    compartment: bool
    components: tuple[tuple[str, tuple[tuple[str, ...], ...]], ...] = ()
    """For a composite: (component parameter name, paths relative to the composite's root)."""
    uri: bool = False
    """An R4 ``uri`` parameter (indexed as a token without a system)."""


def _data(name: str) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(
        (files("fhir_profiles") / "r4" / name).read_text(encoding="utf-8")
    )
    return loaded


def _split(text: str, sep: str) -> list[str]:
    """``text`` split on ``sep`` outside brackets and quotes."""
    parts, depth, quote, start = [], 0, False, 0
    for i, ch in enumerate(text):
        if ch == "'":
            quote = not quote
        elif not quote and ch in "([":
            depth += 1
        elif not quote and ch in ")]":
            depth -= 1
        elif not quote and depth == 0 and text.startswith(sep, i):
            parts.append(text[start:i].strip())
            start = i + len(sep)
    parts.append(text[start:].strip())
    return [p for p in parts if p]


_OF_TYPE = re.compile(r"^(?:ofType|as)\((\w+)\)$")
_WHERE_IS = re.compile(r"^where\(resolve\(\) is (\w+)\)$")
_WHERE_EQ = re.compile(r"^where\((\w+)\s*=\s*'([^']*)'\)$")


def _choice_name(name: str, type_name: str) -> str:
    return name + type_name[0].upper() + type_name[1:]


def expression_paths(
    expression: str, root: str, *, relative: bool = False
) -> tuple[tuple[tuple[str, ...], ...], set[str]] | None:
    """(element paths, reference types the expression restricts to) of a FHIRPath search
    expression for resource type ``root``, or None when a part is not a supported form."""
    paths: list[tuple[str, ...]] = []
    targets: set[str] = set()
    for alt in _split(expression, "|"):
        while alt.startswith("(") and alt.endswith(")"):
            alt = alt[1:-1].strip()
        if " as " in alt:
            base, _, type_name = alt.rpartition(" as ")
            alt = f"{base.strip()}.ofType({type_name.strip()})"
        tokens = _split(alt, ".")
        if not relative:
            if not tokens or tokens[0] != root:
                return None
            tokens = tokens[1:]
        steps: list[str] = []
        current: str | None = root
        i = 0
        while i < len(tokens):
            tok = tokens[i]
            nxt = tokens[i + 1] if i + 1 < len(tokens) else ""
            m_type = _OF_TYPE.match(nxt)
            if re.fullmatch(r"[a-zA-Z]\w*", tok):
                if m_type and (current is None or is_choice(current, tok)):
                    steps.append(_choice_name(tok, m_type.group(1)))
                    current = m_type.group(1)
                    i += 2
                    continue
                found = element(current, tok) if current else None
                if found is not None:
                    steps.append(tok)
                    current = found[1]
                elif current is not None and is_choice(current, tok):
                    steps.append(tok + "[x]")
                    current = None
                else:
                    steps.append(tok)
                    current = None
            elif (m := _WHERE_IS.match(tok)) is not None:
                targets.add(m.group(1))
            elif (m := _WHERE_EQ.match(tok)) is not None and steps:
                steps[-1] = f"{steps[-1]}[{m.group(1)}={m.group(2)}]"
            elif tok == "first()":
                pass
            else:
                return None
            i += 1
        if not steps and not relative:
            return None
        paths.append(tuple(steps))
    return tuple(paths), targets


@lru_cache(maxsize=1)
def r4_types() -> tuple[str, ...]:
    """Every R4 resource type the product can store (the R4B models know it)."""
    names = _data("compartment-patient.json")["resources"]
    return tuple(sorted(t for t in names if t not in NOT_STORED and is_model(t)))


@lru_cache(maxsize=1)
def patient_compartment_params() -> dict[str, tuple[str, ...]]:
    return {t: tuple(p) for t, p in _data("compartment-patient.json")["resources"].items()}


@lru_cache(maxsize=1)
def _reference_targets() -> dict[tuple[str, str], tuple[str, ...]]:
    return {
        (rtype, name): tuple(spec.get("target") or ())
        for rtype, params in _data("search-parameters.json")["resources"].items()
        for name, spec in params.items()
        if spec.get("type") == "reference"
    }


def reference_targets(rtype: str, name: str) -> tuple[str, ...]:
    """The types R4 says the reference parameter may point to (empty when R4 does not
    define it)."""
    return _reference_targets().get((rtype, name), ())


@lru_cache(maxsize=256)
def r4_params(rtype: str) -> dict[str, R4Param]:
    """The official search parameters of ``rtype`` whose expressions the generic index can
    follow (compartment parameters first, in the compartment definition's order)."""
    raw: dict[str, Any] = _data("search-parameters.json")["resources"].get(rtype, {})
    compartment = patient_compartment_params().get(rtype, ())
    out: dict[str, R4Param] = {}
    order = [n for n in compartment if n in raw] + [n for n in raw if n not in compartment]
    for name in order:
        spec = raw[name]
        ptype = spec["type"]
        if ptype == "composite":
            continue  # below, once their components are known
        if ptype not in INDEXED_TYPES or "expression" not in spec:
            continue
        parsed = expression_paths(spec["expression"], rtype)
        if parsed is None:
            continue
        paths, restricted = parsed
        targets = spec.get("target") or []
        target = None
        if len(restricted) == 1:
            target = next(iter(restricted))
        elif len(targets) == 1:
            target = targets[0]
        is_compartment = (
            name in compartment
            and ptype == "reference"
            and ("Patient" in targets or "Patient" in restricted)
        )
        out[name] = R4Param(
            name, INDEXED_TYPES[ptype], paths, target, is_compartment, uri=ptype == "uri"
        )
    for name in order:
        spec = raw[name]
        if spec["type"] == "composite":
            composite = _composite(name, spec, rtype, out)
            if composite is not None:
                out[name] = composite
    return out


def _composite(
    name: str, spec: dict[str, Any], rtype: str, params: dict[str, R4Param]
) -> R4Param | None:
    """A composite whose root and components the generic index can follow, or None.

    Each component is read through its own parameter's definition (the paths below the
    composite's root), not through the component's expression: R4 gives some components the
    other one's expression (DocumentReference ``relationship``: ``relatesto`` is written
    ``code``, ``relation`` ``target``), while the parameters themselves are right. A component
    whose parameter is not under the root (MolecularSequence's ``%resource`` components) leaves
    the composite out (refused as unsupported)."""
    roots: list[tuple[str, ...]] = []
    for alt in _split(spec.get("expression", ""), "|"):
        if alt == rtype:
            roots.append(())
            continue
        parsed = expression_paths(alt, rtype)
        if parsed is None:
            return None
        roots.extend(parsed[0])
    if not roots:
        return None
    comps: list[tuple[str, tuple[tuple[str, ...], ...]]] = []
    for comp in spec.get("component", []):
        param = params.get(comp["param"])
        if param is None:
            return None
        below: list[tuple[str, ...]] = []
        for path in param.paths:
            # below the deepest root it is under (``Observation | Observation.component``)
            under = [r for r in roots if path[: len(r)] == r and len(path) > len(r)]
            if not under:
                return None
            rel = path[len(max(under, key=len)) :]
            if rel not in below:
                below.append(rel)
        comps.append((comp["param"], tuple(below)))
    if len(comps) < 2:
        return None
    return R4Param(name, "composite", tuple(roots), None, False, tuple(comps))
