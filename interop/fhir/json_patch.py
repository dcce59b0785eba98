"""JSON Patch (RFC 6902) applied to a resource's JSON, with RFC 6901 pointers.

Every failure (malformed operation, missing path, failed ``test``) is a :class:`FhirError`
422/400 naming the operation; the input is never changed (the patch works on a copy), so a
failed patch writes nothing.
"""

from __future__ import annotations

import copy
from typing import Any

from interop.fhir.outcome import FhirError, Issue

OPS = frozenset({"add", "remove", "replace", "move", "copy", "test"})


def _fail(n: int, text: str, status: int = 422) -> FhirError:
    return FhirError(
        status, [Issue("error", "processing", f"JSON Patch operation {n}: {text}", (f"/{n}",))]
    )


def _tokens(pointer: Any, n: int) -> list[str]:
    if not isinstance(pointer, str) or (pointer and not pointer.startswith("/")):
        raise _fail(n, f"path {pointer!r} is not a JSON pointer", 400)
    if pointer == "":
        return []
    return [t.replace("~1", "/").replace("~0", "~") for t in pointer[1:].split("/")]


def _index(container: list[Any], token: str, n: int, *, for_add: bool) -> int:
    if for_add and token == "-":
        return len(container)
    if not token.isdigit() or (len(token) > 1 and token.startswith("0")):
        raise _fail(n, f"{token!r} is not an array index")
    i = int(token)
    if i > len(container) or (i == len(container) and not for_add):
        raise _fail(n, f"array index {i} is out of range")
    return i


def _parent(doc: Any, tokens: list[str], n: int) -> Any:
    node = doc
    for t in tokens[:-1]:
        if isinstance(node, dict):
            if t not in node:
                raise _fail(n, f"path element {t!r} does not exist")
            node = node[t]
        elif isinstance(node, list):
            node = node[_index(node, t, n, for_add=False)]
        else:
            raise _fail(n, f"path element {t!r} is inside a primitive value")
    return node


def _get(doc: Any, tokens: list[str], n: int) -> Any:
    if not tokens:
        return doc
    parent = _parent(doc, tokens, n)
    last = tokens[-1]
    if isinstance(parent, dict):
        if last not in parent:
            raise _fail(n, f"path element {last!r} does not exist")
        return parent[last]
    if isinstance(parent, list):
        return parent[_index(parent, last, n, for_add=False)]
    raise _fail(n, f"path element {last!r} is inside a primitive value")


def _add(doc: Any, tokens: list[str], value: Any, n: int) -> Any:
    if not tokens:
        return value
    parent = _parent(doc, tokens, n)
    last = tokens[-1]
    if isinstance(parent, dict):
        parent[last] = value
    elif isinstance(parent, list):
        parent.insert(_index(parent, last, n, for_add=True), value)
    else:
        raise _fail(n, f"path element {last!r} is inside a primitive value")
    return doc


def _remove(doc: Any, tokens: list[str], n: int) -> Any:
    if not tokens:
        raise _fail(n, "the whole resource cannot be removed")
    parent = _parent(doc, tokens, n)
    last = tokens[-1]
    if isinstance(parent, dict):
        if last not in parent:
            raise _fail(n, f"path element {last!r} does not exist")
        return parent.pop(last)
    if isinstance(parent, list):
        return parent.pop(_index(parent, last, n, for_add=False))
    raise _fail(n, f"path element {last!r} is inside a primitive value")


def apply_json_patch(resource: dict[str, Any], patch: Any) -> dict[str, Any]:
    """The patched copy of ``resource``."""
    if not isinstance(patch, list):
        raise FhirError(
            400, [Issue("error", "structure", "a JSON Patch document is an array of operations")]
        )
    doc: Any = copy.deepcopy(resource)
    for n, op in enumerate(patch):
        if not isinstance(op, dict) or op.get("op") not in OPS:
            raise _fail(n, f"'op' must be one of {', '.join(sorted(OPS))}", 400)
        kind = op["op"]
        tokens = _tokens(op.get("path"), n)
        if kind in ("add", "replace", "test") and "value" not in op:
            raise _fail(n, f"'{kind}' needs a 'value'", 400)
        if kind == "add":
            doc = _add(doc, tokens, copy.deepcopy(op["value"]), n)
        elif kind == "remove":
            _remove(doc, tokens, n)
        elif kind == "replace":
            _get(doc, tokens, n)  # must exist
            if tokens:
                _remove(doc, tokens, n)
            doc = _add(doc, tokens, copy.deepcopy(op["value"]), n)
        elif kind in ("move", "copy"):
            source = _tokens(op.get("from"), n)
            if kind == "move" and tokens[: len(source)] == source and tokens != source:
                raise _fail(n, "a value cannot be moved into itself")
            value = _get(doc, source, n)
            if kind == "move":
                _remove(doc, source, n)
            else:
                value = copy.deepcopy(value)
            doc = _add(doc, tokens, value, n)
        elif kind == "test" and _get(doc, tokens, n) != op["value"]:
            raise _fail(n, f"test failed: {op.get('path')} is not {op['value']!r}")
    if not isinstance(doc, dict):
        raise FhirError(422, [Issue("error", "processing", "the patch result is not a resource")])
    return doc


def _merge(target: Any, patch: Any) -> Any:
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    out = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            out.pop(key, None)
        else:
            out[key] = _merge(out.get(key), value)
    return out


def apply_merge_patch(resource: dict[str, Any], patch: dict[str, Any]) -> dict[str, Any]:
    """JSON Merge Patch (RFC 7386): members of the patch replace the resource's, ``null``
    removes one, objects merge recursively, arrays are replaced whole."""
    merged = _merge(resource, patch)
    assert isinstance(merged, dict)
    return merged
