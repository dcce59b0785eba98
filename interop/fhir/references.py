"""References in a resource: where they are, what they point to, and what each element may point
to (fhir_profiles/reference-targets.yaml, from the R4 definitions).

Stateless checks live here (the target type for the element; a ``urn:`` reference left
unresolved). Whether a referenced Patient exists is the store's to answer
(:mod:`interop.store.reference_integrity`).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import orjson

from interop.fhir import decimals
from interop.fhir.outcome import Issue

# Type/id or Type/id/_history/v, relative or at the end of an absolute URL
_LITERAL = re.compile(
    r"^(?:(?P<base>https?://\S+?)/)?(?P<type>[A-Z][A-Za-z]+)/(?P<id>[A-Za-z0-9\-.]{1,64})"
    r"(?:/_history/[A-Za-z0-9\-.]{1,64})?$"
)


@dataclass(frozen=True, slots=True)
class Ref:
    element: str
    """Element path without indexes (``CarePlan.activity.detail.performer``)."""
    expression: str
    """Where it is, with indexes (``CarePlan.activity[0].detail.performer[1]``)."""
    reference: str
    target_type: str | None = None
    target_id: str | None = None
    base: str | None = None
    """The server part of an absolute reference (``None`` when relative)."""


_REFERENCE_BYTES = re.compile(rb'"reference":"((?:[^"\\]|\\.)*)"')
"""A ``reference`` element as orjson writes it (no spaces): the JSON string's raw contents."""


def reference_strings(resource: dict[str, Any]) -> list[str]:
    """Every ``reference`` string in the resource (contained resources included): one encoding
    and one scan, for the write path; :func:`references` walks to say where each one is."""
    out: list[str] = []
    for m in _REFERENCE_BYTES.finditer(decimals.dumps(resource)):
        raw = m.group(1)
        out.append(orjson.loads(b'"' + raw + b'"') if b"\\" in raw else raw.decode())
    return out


def parse_literal(reference: str) -> tuple[str, str, str | None] | None:
    """(type, id, base or None) of a literal reference ``[base/]Type/id[/_history/v]``."""
    m = _LITERAL.match(reference)
    return (m["type"], m["id"], m["base"]) if m is not None else None


@lru_cache(maxsize=1)
def reference_targets() -> dict[str, frozenset[str]]:
    """element path → resource types it may reference."""
    from importlib.resources import files

    import yaml

    text = (files("fhir_profiles") / "reference-targets.yaml").read_text("utf-8")
    data = yaml.safe_load(text)
    return {element: frozenset(types) for element, types in data["targets"].items()}


def references(resource: dict[str, Any]) -> Iterator[Ref]:
    """Every ``reference`` of ``resource`` outside its contained resources."""
    rtype = resource.get("resourceType", "")
    stack: list[tuple[Any, str, str]] = [(resource, rtype, rtype)]
    while stack:
        node, element, expr = stack.pop()
        if isinstance(node, dict):
            ref = node.get("reference")
            if isinstance(ref, str) and node is not resource:
                m = _LITERAL.match(ref)
                if m is not None:
                    yield Ref(element, expr, ref, m["type"], m["id"], m["base"])
                else:
                    yield Ref(element, expr, ref)
            for key, value in node.items():
                if key == "contained" and node is resource:
                    continue
                if isinstance(value, dict | list):
                    stack.append((value, f"{element}.{key}", f"{expr}.{key}"))
        elif isinstance(node, list):
            for i, item in enumerate(node):
                if isinstance(item, dict | list):
                    stack.append((item, element, f"{expr}[{i}]"))


@lru_cache(maxsize=64)
def _targets_of(rtype: str) -> tuple[tuple[tuple[str, ...], str, frozenset[str]], ...]:
    """(path below the resource, element, allowed types) of a type's Reference elements."""
    prefix = rtype + "."
    return tuple(
        (tuple(element[len(prefix) :].split(".")), element, allowed)
        for element, allowed in reference_targets().items()
        if element.startswith(prefix)
    )


def _at(node: Any, path: tuple[str, ...], expr: str) -> Iterator[tuple[str, Any]]:
    """The values at ``path`` below ``node`` (lists flattened), with their expressions."""
    if not path:
        yield expr, node
        return
    if not isinstance(node, dict):
        return
    value = node.get(path[0])
    if value is None:
        return
    where = f"{expr}.{path[0]}"
    if isinstance(value, list):
        for i, item in enumerate(value):
            yield from _at(item, path[1:], f"{where}[{i}]")
    else:
        yield from _at(value, path[1:], where)


def wrong_target_issues(resource: dict[str, Any]) -> list[Issue]:
    """A reference to a resource type the element may not point to (422 naming the element)."""
    rtype = resource.get("resourceType", "")
    issues: list[Issue] = []
    for path, element, allowed in _targets_of(rtype):
        if path[0] not in resource:
            continue
        for expr, value in _at(resource, path, rtype):
            ref = value.get("reference") if isinstance(value, dict) else None
            parsed = parse_literal(ref) if isinstance(ref, str) else None
            if parsed is not None and parsed[0] not in allowed:
                issues.append(
                    Issue(
                        "error",
                        "value",
                        f"{expr}: {ref!r} refers to type {parsed[0]}, but "
                        f"{element} may only refer to {', '.join(sorted(allowed))}",
                        (expr,),
                    )
                )
    return issues


_CONDITIONAL = re.compile(r"^[A-Z][A-Za-z]+\?")
"""A conditional reference: ``Patient?identifier=…`` (a search, not a resource)."""


def conditional_reference_issues(resource: dict[str, Any], strings: list[str]) -> list[Issue]:
    """Conditional references (``Patient?identifier=…``) among the resource's reference
    ``strings`` (:func:`reference_strings`): this server resolves none, so a write that
    carries one is refused (stored, the search string would stand where the patient should
    be, and the resource would be in no patient's record)."""
    if not any(_CONDITIONAL.match(r) for r in strings):
        return []
    return [
        Issue(
            "error",
            "not-supported",
            f"{ref.expression}: {ref.reference!r} is a conditional reference; this server does "
            "not resolve them: name the resource (Type/id)",
            (ref.expression,),
        )
        for ref in references(resource)
        if _CONDITIONAL.match(ref.reference)
    ] or [
        Issue(
            "error",
            "not-supported",
            f"{resource.get('resourceType', '')}.contained: a conditional reference is not "
            "resolved by this server: name the resource (Type/id)",
        )
    ]


def unresolved_urn_issues(resource: dict[str, Any], where: str) -> list[Issue]:
    """``urn:uuid:``/``urn:oid:`` references left after a Bundle's entries were resolved
    (``where`` says why: a batch resolves none, a transaction only its own entries)."""
    if not any(r.startswith("urn:") for r in reference_strings(resource)):
        return []
    return [
        Issue(
            "error",
            "not-found",
            f"{ref.expression}: {ref.reference!r} {where}",
            (ref.expression,),
        )
        for ref in references(resource)
        if ref.reference.startswith("urn:")
    ]
