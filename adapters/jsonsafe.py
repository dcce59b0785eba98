"""Reading JSON from outside: parsed, then measured before anything recurses over it.

A document nested deeper than the limit (the validators and the store recurse; Python's
recursion limit is about 1000) or holding a NUL character (PostgreSQL text cannot store one,
and FHIR strings may not contain it) is refused with a message naming the place.
"""

from __future__ import annotations

from typing import Any

import orjson

MAX_DEPTH = 64
"""Default nesting limit (objects and arrays); FHIR resources and Bundles stay far below."""


class UnsafeJson(ValueError):
    """The body is not JSON, or is JSON that must not be processed."""


def load(data: bytes | str, max_depth: int = MAX_DEPTH) -> Any:
    try:
        doc = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise UnsafeJson(f"not valid JSON: {exc}") from None
    check(doc, max_depth, data if isinstance(data, bytes) else data.encode())
    return doc


def check(doc: Any, max_depth: int = MAX_DEPTH, raw: bytes | None = None) -> None:
    """:class:`UnsafeJson` when ``doc`` (parsed from ``raw``) is too deep or holds a NUL."""
    brackets = raw.count(b"{") + raw.count(b"[") if raw is not None else max_depth + 1
    nul = raw is None or b"\\u0000" in raw
    if brackets <= max_depth and not nul:
        return  # too few brackets to nest that deep, and no NUL escape: nothing to walk
    if brackets > max_depth and depth_exceeds(doc, max_depth):
        raise UnsafeJson(f"the JSON nests objects and arrays deeper than {max_depth} levels")
    if nul:
        where = nul_path(doc)
        if where is not None:
            raise UnsafeJson(f"{where or 'the document'}: a string holds a NUL character (U+0000)")


def depth_exceeds(doc: Any, max_depth: int) -> bool:
    """Whether ``doc`` has containers nested deeper than ``max_depth`` (iterative: a document
    of any depth is measured without recursion)."""
    if not isinstance(doc, dict | list):
        return False
    stack: list[tuple[Any, int]] = [(doc, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > max_depth:
            return True
        children = node.values() if isinstance(node, dict) else node
        for child in children:
            if isinstance(child, dict | list):
                stack.append((child, depth + 1))
    return False


def nul_path(doc: Any) -> str | None:
    """The FHIRPath-like location of the first string (or key) holding a NUL, else None."""
    stack: list[tuple[Any, str]] = [(doc, "")]
    while stack:
        node, path = stack.pop()
        if isinstance(node, str):
            if "\x00" in node:
                return path
        elif isinstance(node, dict):
            for key, value in node.items():
                where = f"{path}.{key}" if path else str(key)
                if "\x00" in key:
                    return where
                stack.append((value, where))
        elif isinstance(node, list):
            stack.extend((v, f"{path}[{i}]") for i, v in enumerate(node))
    return None


def null_member_path(doc: Any) -> str | None:
    """The location of the first object member whose value is ``null``, else None (FHIR JSON
    allows null only inside the arrays of repeating primitives and their ``_`` partners)."""
    stack: list[tuple[Any, str]] = [(doc, "")]
    while stack:
        node, path = stack.pop()
        if isinstance(node, dict):
            for key, value in node.items():
                where = f"{path}.{key}" if path else str(key)
                if value is None:
                    return where
                if isinstance(value, dict | list):
                    stack.append((value, where))
        elif isinstance(node, list):
            stack.extend(
                (v, f"{path}[{i}]") for i, v in enumerate(node) if isinstance(v, dict | list)
            )
    return None
