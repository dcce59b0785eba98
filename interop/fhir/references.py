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


def wrong_target_issues(resource: dict[str, Any]) -> list[Issue]:
    """A reference to a resource type the element may not point to (422 naming the element)."""
    targets = reference_targets()
    issues: list[Issue] = []
    for ref in references(resource):
        if ref.target_type is None:
            continue
        allowed = targets.get(ref.element)
        if allowed is not None and ref.target_type not in allowed:
            issues.append(
                Issue(
                    "error",
                    "value",
                    f"{ref.expression}: {ref.reference!r} refers to type {ref.target_type}, but "
                    f"{ref.element} may only refer to {', '.join(sorted(allowed))}",
                    (ref.expression,),
                )
            )
    return issues


def unresolved_urn_issues(resource: dict[str, Any], where: str) -> list[Issue]:
    """``urn:uuid:``/``urn:oid:`` references left after a Bundle's entries were resolved
    (``where`` says why: a batch resolves none, a transaction only its own entries)."""
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
