"""Search parameter definitions (``fhir_profiles/search-parameters.yaml``) and index extraction.

On every write the store turns a resource into index rows with :func:`extract`; searches
look parameters up with :func:`definitions`.
"""

from __future__ import annotations

import hashlib
import unicodedata
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from functools import lru_cache
from importlib.resources import files
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, model_validator

from interop.fhir.dates import fhir_range

ParamType = Literal["token", "reference", "date", "string", "quantity", "number", "composite"]


class _ParamModel(BaseModel):
    model_config = ConfigDict(extra="forbid")
    type: Literal["token", "reference", "date", "string", "composite"]
    path: str | None = None
    """Required, except on a composite of the whole resource and a parameter ``any_of``."""
    target: str | None = None
    compartment: bool = False
    index: Literal["generic", "observation", "computed"] = "generic"
    """Where the values are indexed: the generic tables (extracted from ``path``), the
    observation index, or ``computed``: written beside the resource by the service (an
    Observation's zone, by triage) and never extracted from the resource itself."""
    documentation: str | None = None
    """What the parameter finds, for the CapabilityStatement (where it is not FHIR's own)."""
    of: list[str] | None = None
    """A composite's components: other parameters of the type, in the order of the
    composite's ``$``-separated values."""
    any_of: list[str] | None = None
    """The parameter matches what any of these parameters of the type matches (R4's
    ``combo-…``: the Observation's own value or a component's); it has no rows of its own."""

    @model_validator(mode="after")
    def _shape(self) -> _ParamModel:
        if self.any_of is not None:
            if self.path is not None or self.of is not None:
                raise ValueError("a parameter any_of has no path and no components")
        elif self.type == "composite":
            if not self.of or len(self.of) < 2:
                raise ValueError("a composite names its components (of: [a, b])")
        elif self.path is None:
            raise ValueError("path is required")
        return self


class _FileModel(BaseModel):
    model_config = ConfigDict(extra="forbid")
    version: str
    resources: dict[str, dict[str, _ParamModel]]


@dataclass(frozen=True, slots=True)
class SearchParam:
    name: str
    type: ParamType
    paths: tuple[tuple[str, ...], ...]
    target: str | None
    compartment: bool
    index: str
    documentation: str | None = None
    components: tuple[tuple[str, tuple[tuple[str, ...], ...]], ...] = ()
    """A composite's parts: (component parameter, paths relative to the composite's root)."""
    uri: bool = False
    """An R4 ``uri`` parameter, indexed as a token without a system: a value ``url|version``
    is a versioned canonical, not a system and a code (``store.search.uri_condition``)."""
    any_of: tuple[str, ...] = ()
    """Served as the union of these parameters of the type (index ``evaluated``)."""


@dataclass(slots=True)
class IndexEntries:
    tokens: list[tuple[str, str, str]] = field(default_factory=list)
    """(param, system, code)"""
    references: list[tuple[str, str]] = field(default_factory=list)
    """(param, target)"""
    dates: list[tuple[str, int, int]] = field(default_factory=list)
    strings: list[tuple[str, str]] = field(default_factory=list)
    quantities: list[tuple[str, str, str, float, float]] = field(default_factory=list)
    """(param, system, code, low, high): quantities and numbers (``code`` "" for a number)"""
    patient_id: str | None = None

    def add(self, other: IndexEntries) -> None:
        """Take ``other``'s rows too (a composite's rows of one element)."""
        self.tokens += other.tokens
        self.references += other.references
        self.dates += other.dates
        self.quantities += other.quantities
        self.strings += other.strings

    def row_count(self) -> int:
        return (
            len(self.tokens)
            + len(self.references)
            + len(self.dates)
            + len(self.strings)
            + len(self.quantities)
        )


@lru_cache(maxsize=1)
def _load() -> dict[str, dict[str, SearchParam]]:
    text = (files("fhir_profiles") / "search-parameters.yaml").read_text(encoding="utf-8")
    model = _FileModel.model_validate(yaml.safe_load(text))
    out: dict[str, dict[str, SearchParam]] = {}
    for rtype, params in model.resources.items():
        found = {
            name: SearchParam(
                name=name,
                type=p.type,
                paths=_yaml_paths(p.path),
                target=p.target,
                compartment=p.compartment,
                index="evaluated" if p.any_of or (p.of and not p.path) else p.index,
                documentation=p.documentation,
                any_of=tuple(p.any_of or ()),
            )
            for name, p in params.items()
        }
        for name, p in params.items():
            unknown = [n for n in (p.any_of or []) + (p.of or []) if n not in found]
            if unknown:
                raise ValueError(f"search-parameters.yaml: {rtype}.{name}: unknown {unknown}")
            if p.of:
                found[name] = replace(found[name], components=_components(rtype, name, found, p.of))
        out[rtype] = found
    return out


def _yaml_paths(path: str | None) -> tuple[tuple[str, ...], ...]:
    if path is None:
        return ()
    return tuple(tuple(part.strip().split(".")) for part in path.split("|"))


def _components(
    rtype: str, name: str, found: dict[str, SearchParam], of: list[str]
) -> tuple[tuple[str, tuple[tuple[str, ...], ...]], ...]:
    """A composite's components with their paths below its root (the composite's ``path``;
    a composite without one is of the whole resource: its components keep their own)."""
    roots = found[name].paths
    comps = []
    for cname in of:
        below: list[tuple[str, ...]] = []
        for path in found[cname].paths:
            under = [r for r in roots if path[: len(r)] == r and len(path) > len(r)]
            if roots and not under:
                raise ValueError(
                    f"search-parameters.yaml: {rtype}.{name}: {cname} is not under its path"
                )
            below.append(path[len(max(under, key=len)) :] if under else path)
        comps.append((cname, tuple(below)))
    return tuple(comps)


META_PARAMS = {
    name: SearchParam(
        name, "token", (("meta", element),), None, False, "generic", uri=name == "_profile"
    )
    for name, element in (("_tag", "tag"), ("_profile", "profile"), ("_security", "security"))
}
"""R4's parameters of every resource on its ``meta`` (``_profile`` is a uri, indexed as a
token without a system): indexed like any token parameter, so that searches by them and
``$meta`` read the index, not the resources."""
NO_META_TYPES = frozenset({"AuditEvent"})
"""Types whose resources the server writes lean, without a meta (``store.audit_rows``)."""


@lru_cache(maxsize=256)
def definitions(resource_type: str) -> dict[str, SearchParam]:
    """The search parameters of a type: the product's own (``search-parameters.yaml``) for
    the types it lists, else the official R4 ones (:mod:`interop.fhir.r4_definitions`); with
    :data:`META_PARAMS`."""
    found = _definitions(resource_type)
    if resource_type in NO_META_TYPES:
        return found
    return {**found, **META_PARAMS}


def _definitions(resource_type: str) -> dict[str, SearchParam]:
    own = _load().get(resource_type)
    if own is not None:
        return own
    from interop.fhir.r4_definitions import r4_params

    return {
        name: SearchParam(
            name=name,
            type=p.type,  # type: ignore[arg-type]
            paths=p.paths,
            target=p.target,
            compartment=p.compartment,
            index="generic",
            components=p.components,
            uri=p.uri,
        )
        for name, p in r4_params(resource_type).items()
    }


def param_targets(resource_type: str, name: str) -> tuple[str, ...]:
    """The types a reference parameter may point to: its one ``target``, else those R4 names
    for it (empty when R4 does not define it: any)."""
    param = definitions(resource_type)[name]
    if param.target is not None:
        return (param.target,)
    from interop.fhir.r4_definitions import reference_targets

    return reference_targets(resource_type, name)


@lru_cache(maxsize=1)
def supported_types() -> list[str]:
    from interop.fhir.r4_definitions import r4_types

    return sorted(set(_load()) | set(r4_types()))


@lru_cache(maxsize=256)
def has_quantities(resource_type: str) -> bool:
    """Whether the type has a quantity or number parameter (or composite component) the
    generic index holds."""
    return any(
        p.type in ("quantity", "number") and p.index == "generic"
        for p in definitions(resource_type).values()
    ) or any(
        ctype in ("quantity", "number")
        for _n, _r, comps in composite_plan(resource_type)
        for _k, ctype, _p, _t in comps
    )


def fold(text: str) -> str:
    """Case- and accent-insensitive form for string search (``Ærlig`` → ``aerlig``)."""
    text = text.replace("æ", "ae").replace("Æ", "ae").replace("ø", "o").replace("Ø", "o")
    text = text.replace("å", "a").replace("Å", "a")
    norm = unicodedata.normalize("NFKD", text)
    return "".join(c for c in norm if not unicodedata.combining(c)).casefold().strip()


def _walk(node: Any, path: tuple[str, ...]) -> Iterator[Any]:
    if not path:
        if isinstance(node, list):
            yield from node
        else:
            yield node
        return
    if isinstance(node, list):
        for item in node:
            yield from _walk(item, path)
        return
    if not isinstance(node, dict):
        return
    head, rest = path[0], path[1:]
    if head[-1] == "]" and not head.endswith("[x]"):
        # ``telecom[system=phone]``: the items of the element with that value
        name, _, cond = head[:-1].partition("[")
        key, _, want = cond.partition("=")
        items = node.get(name)
        for item in items if isinstance(items, list) else [items]:
            if isinstance(item, dict) and str(item.get(key)) == want:
                yield from _walk(item, rest)
        return
    if head.endswith("[x]"):
        prefix = head[:-3]
        for key, value in node.items():
            if key.startswith(prefix) and key[len(prefix) : len(prefix) + 1].isupper():
                yield from _walk(value, rest)
        return
    if head in node:
        yield from _walk(node[head], rest)


def values(resource: dict[str, Any], param: SearchParam) -> Iterator[Any]:
    for path in param.paths:
        yield from _walk(resource, path)


def tokens_of(value: Any) -> Iterator[tuple[str, str]]:
    if isinstance(value, bool):
        yield "", "true" if value else "false"
    elif isinstance(value, str | int):
        yield "", str(value)
    elif isinstance(value, dict):
        if "coding" in value:
            for c in value["coding"]:
                if isinstance(c, dict) and c.get("code"):
                    yield c.get("system", ""), str(c["code"])
        elif "code" in value:
            yield value.get("system", ""), str(value["code"])
        elif "value" in value:  # Identifier, ContactPoint
            yield value.get("system", ""), str(value["value"])


def reference_target(ref: str, base_url: str | None = None) -> str:
    """Normalise a reference to ``Type/id`` where it points into this server."""
    if base_url and ref.startswith(base_url.rstrip("/") + "/"):
        ref = ref[len(base_url.rstrip("/")) + 1 :]
    if ref.startswith("/"):
        ref = ref[1:]
    parts = ref.split("/")
    if len(parts) >= 4 and parts[-2] == "_history":
        ref = "/".join(parts[:-2])
    return ref


def strings_of(value: Any) -> Iterator[str]:
    """The strings a string parameter searches, as written (:func:`fold` them for the default
    case- and accent-insensitive match)."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for key in ("text", "family", "given", "prefix", "line", "city", "postalCode"):
            v = value.get(key)
            if isinstance(v, str):
                yield v
            elif isinstance(v, list):
                yield from (x for x in v if isinstance(x, str))


INDEX_WIDTH = 255
"""Width of the index columns that hold a token's system and code and a reference's target."""
INDEX_KEPT = INDEX_WIDTH - 65
"""How many of a longer value's first characters its indexed form keeps (a canonical
``url|version`` that long still matches a search by ``url`` when ``url`` is shorter)."""
CANONICAL_MAX = INDEX_WIDTH
"""Kept for revision 0024, which indexed a canonical in its first 255 characters (revision
0025 replaced those rows by :func:`index_value`'s)."""


def index_value(value: str) -> str:
    """The form in which a token's system or code, or a reference's target, is indexed and
    searched: the value itself when shorter than the column (:data:`INDEX_WIDTH`); a longer
    one as its first characters, ``~`` and the SHA-256 of the whole value, exactly
    :data:`INDEX_WIDTH` characters long. Two values share a form only when they are equal
    (a shorter value is never that long), so a value is matched in full: two canonicals
    with the same first 255 characters are two values."""
    if len(value) < INDEX_WIDTH:
        return value
    digest = hashlib.sha256(value.encode()).hexdigest()
    return value[:INDEX_KEPT] + "~" + digest


EXACT = ":exact"
"""Suffix of the string-index rows that keep the text as written, for ``:exact`` (case- and
accent-sensitive) searches; the plain rows hold the folded text."""


OPEN_QUANTITY = 1e300
"""The bound of a Range without a ``low`` or ``high`` (``store.schema.OPEN_QUANTITY``)."""
CURRENCY = "urn:iso:std:iso:4217"


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or value is None:
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def _unit(q: dict[str, Any]) -> tuple[str, str]:
    if "currency" in q:  # Money
        return CURRENCY, str(q["currency"])
    return str(q.get("system") or ""), str(q.get("code") or q.get("unit") or "")


def quantities_of(value: Any) -> Iterator[tuple[str, str, float, float]]:
    """(system, code, low, high) of a Quantity (Age, Duration, Money …), a Range, or a
    number (system and code "")."""
    n = _number(value) if not isinstance(value, dict) else None
    if n is not None:
        yield "", "", n, n
        return
    if not isinstance(value, dict):
        return
    if "low" in value or "high" in value:  # Range
        low, high = value.get("low"), value.get("high")
        lo = _number(low.get("value")) if isinstance(low, dict) else None
        hi = _number(high.get("value")) if isinstance(high, dict) else None
        if lo is None and hi is None:
            return
        bound = low if isinstance(low, dict) and lo is not None else high
        system, code = _unit(bound if isinstance(bound, dict) else {})
        yield (
            system,
            code,
            lo if lo is not None else -OPEN_QUANTITY,
            hi if hi is not None else OPEN_QUANTITY,
        )
        return
    v = _number(value.get("value"))
    if v is not None:
        system, code = _unit(value)
        yield system, code, v, v


def dates_of(value: Any, zone: str) -> Iterator[tuple[int, int]]:
    try:
        if isinstance(value, str):
            yield fhir_range(value, zone)
        elif isinstance(value, dict) and ("start" in value or "end" in value):
            start = fhir_range(value["start"], zone)[0] if "start" in value else -(2**62)
            end = fhir_range(value["end"], zone)[1] if "end" in value else 2**62
            yield start, end
    except ValueError:
        return


_Plan = tuple[tuple[str, ParamType, tuple[tuple[str, ...], ...], str | None, bool, str, bool], ...]

PATIENT_PREFIX = "Patient/"


@lru_cache(maxsize=128)
def _plan(resource_type: str) -> _Plan:
    """The generic-table parameters of a type, with what :func:`extract` needs of each
    (computed once: the write path runs this for every resource).

    A reference parameter served by the observation index (``index: observation``) is in the
    plan too, flagged: its Patient references are left to that index (``patient_id``), the
    others are indexed here."""
    return tuple(
        (
            name,
            p.type,
            p.paths,
            p.target,
            p.compartment,
            p.target + "/" if p.target else "",
            p.index == "observation",
        )
        for name, p in definitions(resource_type).items()
        if (p.index == "generic" and p.type != "composite")
        or (p.type == "reference" and p.index == "observation")
    )


@lru_cache(maxsize=128)
def _compartment_paths(
    resource_type: str,
) -> tuple[tuple[tuple[tuple[str, ...], ...], str], ...]:
    """The paths of a type's Patient-compartment references (with the prefix a reference must
    have to count), in plan order."""
    return tuple(
        (paths, PATIENT_PREFIX)
        for _n, _t, paths, _tg, compartment, _prefix, _e in _plan(resource_type)
        if compartment
    )


def patient_compartment(resource: dict[str, Any]) -> str | None:
    """The Patient id whose compartment the resource is in (as :func:`extract` finds it, without
    building every index row): the access policy asks this for every resource it returns."""
    rtype = resource.get("resourceType")
    if rtype == "Patient":
        rid = resource.get("id")
        return rid if isinstance(rid, str) else None
    if not isinstance(rtype, str):
        return None
    for paths, prefix in _compartment_paths(rtype):
        for v in _values_of(resource, paths):
            ref = v.get("reference") if isinstance(v, dict) else None
            if isinstance(ref, str):
                target = reference_target(ref)
                if "/" in target and (not prefix or target.startswith(prefix)):
                    return target.split("/", 1)[1]
    return None


def owner_patients(resource: dict[str, Any]) -> tuple[str, ...]:
    """Every patient the element that puts the resource in a Patient compartment names (the
    element :func:`patient_compartment` finds first): one for almost every resource, each
    member for a Group. Whoever sees the resource sees them all, so the access policy asks
    that the actor may see each."""
    first = patient_compartment(resource)
    if first is None or resource.get("resourceType") == "Patient":
        return () if first is None else (first,)
    for paths, prefix in _compartment_paths(resource["resourceType"]):
        found: dict[str, None] = {}
        for v in _values_of(resource, paths):
            ref = v.get("reference") if isinstance(v, dict) else None
            if isinstance(ref, str):
                target = reference_target(ref)
                if "/" in target and (not prefix or target.startswith(prefix)):
                    found[target.split("/", 1)[1]] = None
        if found:
            return tuple(found)
    return (first,)


def _values_of(resource: dict[str, Any], paths: tuple[tuple[str, ...], ...]) -> list[Any]:
    """:func:`values` as a list, with the common one-element path (``subject``) done inline."""
    out: list[Any] = []
    for path in paths:
        if len(path) == 1 and not path[0].endswith("]"):
            if path[0] in resource:
                v = resource[path[0]]
                if isinstance(v, list):
                    out.extend(v)
                else:
                    out.append(v)
        elif len(path) == 2 and not path[0].endswith("]") and not path[1].endswith("]"):
            # ``component.valueCodeableConcept``: most resources lack the first element
            first = resource.get(path[0])
            if first is None:
                continue
            for item in first if isinstance(first, list) else (first,):
                if isinstance(item, dict) and path[1] in item:
                    v = item[path[1]]
                    if isinstance(v, list):
                        out.extend(v)
                    else:
                        out.append(v)
        else:
            out.extend(_walk(resource, path))
    return out


def composite_key(name: str, component: int) -> str:
    """The start of the ``param`` of a composite's index rows for one component: the rows of
    one element (one ``useContext``, one ``characteristic``) end in the same ordinal
    (``context-type-quantity$0#2`` in the token table, ``context-type-quantity$1#2`` in the
    quantity table), so a search joins the components of the same element, never of two."""
    return f"{name}${component}#"


_CompositePlan = tuple[
    tuple[
        str,
        tuple[tuple[str, ...], ...],
        tuple[tuple[str, str, tuple[tuple[str, ...], ...], str], ...],
    ],
    ...,
]


@lru_cache(maxsize=256)
def composite_plan(resource_type: str) -> _CompositePlan:
    """(name, root paths, [(row key, component type, paths below the root, reference
    prefix)]) of the composites the generic index holds for a type."""
    defs = _definitions(resource_type)
    out = []
    for name, p in defs.items():
        if p.type != "composite" or p.index != "generic":
            continue
        comps = []
        for i, (cname, below) in enumerate(p.components):
            cp = defs[cname]
            prefix = cp.target + "/" if cp.target else ""
            comps.append((composite_key(name, i), cp.type, below, prefix))
        out.append((name, p.paths, tuple(comps)))
    return tuple(out)


def _component_rows(
    entries: IndexEntries, key: str, ptype: str, found: list[Any], prefix: str, zone: str
) -> None:
    if ptype == "token":
        for v in found:
            for system, code in tokens_of(v):
                entries.tokens.append((key, index_value(system or ""), index_value(code)))
    elif ptype == "reference":
        for v in found:
            ref = v.get("reference") if isinstance(v, dict) else None
            if isinstance(ref, str):
                target = reference_target(ref)
                if not prefix or target.startswith(prefix):
                    entries.references.append((key, index_value(target)))
    elif ptype == "date":
        for v in found:
            for start, end in dates_of(v, zone):
                entries.dates.append((key, start, end))
    elif ptype == "quantity" or ptype == "number":
        for v in found:
            for system, code, low, high in quantities_of(v):
                entries.quantities.append((key, system[:255], code[:64], low, high))
    elif ptype == "string":
        for v in found:
            for raw in strings_of(v):
                folded = fold(raw)
                if folded:
                    entries.strings.append((key, folded[:255]))


def _composites(entries: IndexEntries, resource: dict[str, Any], rtype: str, zone: str) -> None:
    """The rows of the type's composites: per element under the composite's root, each
    component's values under the composite's key and the element's ordinal; an element that
    lacks a component gets none (no search of the composite can match it)."""
    for _name, roots, comps in composite_plan(rtype):
        ordinal = 0
        for root in roots:
            for node in _values_of(resource, (root,)) if root else (resource,):
                if not isinstance(node, dict):
                    continue
                # every component's values first, the last (the value, the rarest: an
                # Observation component has a quantity, not a concept) first: an element
                # that lacks one gets no row built
                found: list[list[Any]] = [[] for _c in comps]
                for i in range(len(comps) - 1, -1, -1):
                    found[i] = _values_of(node, comps[i][2])
                    if not found[i]:
                        break
                if not all(found):
                    continue
                part = IndexEntries()
                for (key, ctype, _below, prefix), values in zip(comps, found, strict=True):
                    before = part.row_count()
                    _component_rows(part, f"{key}{ordinal}", ctype, values, prefix, zone)
                    if part.row_count() == before:
                        break
                else:
                    entries.add(part)
                    ordinal += 1


def extract(resource: dict[str, Any], zone: str = "Europe/Oslo") -> IndexEntries:
    """Index rows of the generic tables for one resource (validated JSON)."""
    rtype = resource["resourceType"]
    entries = IndexEntries()
    if rtype == "Patient":
        entries.patient_id = resource.get("id")
    tokens = entries.tokens
    for name, ptype, paths, target, compartment, prefix, patient_elsewhere in _plan(rtype):
        if ptype == "token":
            for v in _values_of(resource, paths):
                for system, code in tokens_of(v):
                    tokens.append((name, index_value(system or ""), index_value(code)))
        elif ptype == "reference":
            for v in _values_of(resource, paths):
                if not isinstance(v, dict):
                    if isinstance(v, str) and v:  # a canonical (``url|version``) or uri
                        entries.references.append((name, index_value(v)))
                    continue
                ref = v.get("reference")
                if isinstance(ref, str):
                    target_ref = reference_target(ref)
                    if target and not target_ref.startswith(prefix):
                        continue
                    if not (patient_elsewhere and target_ref.startswith(PATIENT_PREFIX)):
                        entries.references.append((name, index_value(target_ref)))
                    if (
                        compartment
                        and entries.patient_id is None
                        and target_ref.startswith(PATIENT_PREFIX)
                    ):
                        entries.patient_id = target_ref.split("/", 1)[1]
                ident = v.get("identifier")
                if isinstance(ident, dict) and ident.get("value"):
                    tokens.append(
                        (
                            name + ":identifier",
                            index_value(ident.get("system", "")),
                            index_value(str(ident["value"])),
                        )
                    )
        elif ptype == "date":
            for v in _values_of(resource, paths):
                for start, end in dates_of(v, zone):
                    entries.dates.append((name, start, end))
        elif ptype == "quantity" or ptype == "number":
            for v in _values_of(resource, paths):
                for system, code, low, high in quantities_of(v):
                    entries.quantities.append((name, system[:255], code[:64], low, high))
        elif ptype == "string":
            for v in _values_of(resource, paths):
                for raw in strings_of(v):
                    s = fold(raw)
                    if s:
                        entries.strings.append((name, s[:255]))
                        entries.strings.append((name + EXACT, raw[:255]))
    if composite_plan(rtype):
        _composites(entries, resource, rtype, zone)
    return entries
