"""FHIRPath Patch (FHIR R4 §2.39): a ``Parameters`` resource of ``operation`` parameters
(add, insert, delete, replace, move) applied to a resource's JSON.

Paths are the FHIRPath subset patches use in practice: element names from the resource type
(``Patient.name.given``), indexes (``name[0]``), ``where(element = 'literal')`` filters and
``first()``/``last()``. Anything else is refused with 400 naming the path, never guessed.
Whether an added element repeats comes from the R4B models. The input is never changed.
"""

from __future__ import annotations

import copy
import re
from typing import Any

from interop.fhir.elements import element
from interop.fhir.outcome import FhirError, Issue

_STEP = re.compile(
    r"""\.?(?:
        (?P<name>[A-Za-z][A-Za-z0-9_]*)(?![A-Za-z0-9_(])
      | \[(?P<index>\d+)\]
      | where\((?P<field>[A-Za-z][A-Za-z0-9_]*)\s*=\s*'(?P<literal>(?:[^'\\]|\\.)*)'\)
      | (?P<func>first|last)\(\)
    )""",
    re.VERBOSE,
)

Location = tuple[Any, Any]
"""(container, key): the value is ``container[key]`` (a dict and a name, or a list and an index)."""


def _fail(n: int, text: str, status: int = 400) -> FhirError:
    return FhirError(
        status,
        [
            Issue(
                "error", "processing", f"FHIRPath Patch operation {n}: {text}", (f"operation[{n}]",)
            )
        ],
    )


def _steps(path: Any, rtype: str, n: int) -> list[tuple[str, Any]]:
    if not isinstance(path, str) or not path:
        raise _fail(n, "the operation has no path")
    text = path.strip()
    if text == rtype:
        return []
    if not text.startswith(rtype + "."):
        raise _fail(n, f"path {path!r} does not start with {rtype}")
    rest = text[len(rtype) :]
    steps: list[tuple[str, Any]] = []
    pos = 0
    while pos < len(rest):
        m = _STEP.match(rest, pos)
        if m is None or m.end() == pos:
            raise _fail(n, f"path {path!r} is not supported (at {rest[pos:]!r})")
        if m.group("name"):
            steps.append(("name", m.group("name")))
        elif m.group("index") is not None:
            steps.append(("index", int(m.group("index"))))
        elif m.group("field"):
            steps.append(("where", (m.group("field"), m.group("literal").replace("\\'", "'"))))
        else:
            steps.append(("func", m.group("func")))
        pos = m.end()
    return steps


def _locate(doc: dict[str, Any], steps: list[tuple[str, Any]]) -> list[Location]:
    """The items a path selects, each as a location (a list value is its items)."""
    current: list[Location] = [({"": doc}, "")]
    for kind, arg in steps:
        nxt: list[Location] = []
        if kind == "name":
            for container, key in current:
                node = container[key]
                if isinstance(node, dict) and arg in node:
                    value = node[arg]
                    if isinstance(value, list):
                        nxt.extend((value, i) for i in range(len(value)))
                    else:
                        nxt.append((node, arg))
        elif kind == "index":
            nxt = current[arg : arg + 1]
        elif kind == "where":
            field, literal = arg
            nxt = [
                (c, k)
                for c, k in current
                if isinstance(c[k], dict) and str(c[k].get(field)) == literal
            ]
        else:
            nxt = current[:1] if arg == "first" else current[-1:]
        current = nxt
    return current


def _one(doc: dict[str, Any], steps: list[tuple[str, Any]], path: str, n: int) -> Location:
    found = _locate(doc, steps)
    if len(found) != 1:
        raise _fail(n, f"path {path!r} selects {len(found)} elements, not one", 422)
    return found[0]


def _list_at(doc: dict[str, Any], steps: list[tuple[str, Any]], path: str, n: int) -> list[Any]:
    """The list a path names (``Patient.name``), for insert and move."""
    if not steps or steps[-1][0] != "name":
        raise _fail(n, f"path {path!r} does not name a repeating element")
    container, key = _one(doc, steps[:-1], path, n) if steps[:-1] else ({"": doc}, "")
    owner = container[key]
    value = owner.get(steps[-1][1]) if isinstance(owner, dict) else None
    if not isinstance(value, list):
        raise _fail(n, f"path {path!r} is not a list in this resource", 422)
    return value


def _field(type_name: str, name: str) -> tuple[bool, str | None] | None:
    return element(type_name, name)


def _type_of(rtype: str, steps: list[tuple[str, Any]]) -> str | None:
    current: str | None = rtype
    for kind, arg in steps:
        if kind != "name" or current is None:
            continue
        found = _field(current, arg)
        current = found[1] if found else None
    return current


def _value(part: dict[str, Any], n: int) -> Any:
    for key, v in part.items():
        if key.startswith("value") and key != "value":
            return copy.deepcopy(v)
    parts = part.get("part")
    if isinstance(parts, list) and parts:
        out: dict[str, Any] = {}
        for p in parts:
            if not isinstance(p, dict) or not isinstance(p.get("name"), str):
                raise _fail(n, "a value part has no name")
            out[p["name"]] = _value(p, n)
        return out
    raise _fail(n, "the operation has no value")


def apply_fhirpath_patch(resource: dict[str, Any], parameters: Any) -> dict[str, Any]:
    """The patched copy of ``resource``."""
    if not isinstance(parameters, dict) or parameters.get("resourceType") != "Parameters":
        raise FhirError(
            400,
            [Issue("error", "structure", "a FHIRPath Patch is a Parameters resource")],
        )
    rtype = str(resource["resourceType"])
    doc = copy.deepcopy(resource)
    ops = [p for p in parameters.get("parameter") or [] if isinstance(p, dict)]
    if not ops or any(p.get("name") != "operation" for p in ops):
        raise FhirError(
            400, [Issue("error", "structure", "every parameter of a FHIRPath Patch is 'operation'")]
        )
    for n, op in enumerate(ops):
        parts: dict[str, dict[str, Any]] = {}
        for p in op.get("part") or []:
            if isinstance(p, dict) and isinstance(p.get("name"), str):
                parts[p["name"]] = p
        kind = (parts.get("type") or {}).get("valueCode")
        path = (parts.get("path") or {}).get("valueString")
        steps = _steps(path, rtype, n)
        assert isinstance(path, str)
        if kind == "add":
            name = (parts.get("name") or {}).get("valueString")
            if not isinstance(name, str) or not name:
                raise _fail(n, "'add' needs a name")
            value = _value(parts.get("value") or {}, n)
            container, key = _one(doc, steps, path, n) if steps else ({"": doc}, "")
            owner = container[key]
            if not isinstance(owner, dict):
                raise _fail(n, f"{path} is a primitive value: nothing can be added to it", 422)
            field = _field(_type_of(rtype, steps) or "", name)
            existing = owner.get(name)
            if isinstance(existing, list):
                existing.append(value)
            elif existing is not None:
                raise _fail(n, f"{path}.{name} already has a value (use replace)", 422)
            elif field is not None and field[0]:
                owner[name] = [value]
            else:
                owner[name] = value
        elif kind == "insert":
            target = _list_at(doc, steps, path, n)
            index = (parts.get("index") or {}).get("valueInteger")
            if not isinstance(index, int) or not 0 <= index <= len(target):
                raise _fail(n, f"index {index!r} is out of range for {path}", 422)
            target.insert(index, _value(parts.get("value") or {}, n))
        elif kind == "delete":
            found = _locate(doc, steps)
            if len(found) > 1:
                raise _fail(n, f"path {path!r} selects {len(found)} elements, not one", 422)
            if found:
                container, key = found[0]
                if isinstance(container, dict) and key == "":
                    raise _fail(n, "the whole resource cannot be deleted")
                del container[key]
                _prune(doc)
        elif kind == "replace":
            container, key = _one(doc, steps, path, n)
            if isinstance(container, dict) and key == "":
                raise _fail(n, "the whole resource cannot be replaced")
            container[key] = _value(parts.get("value") or {}, n)
        elif kind == "move":
            target = _list_at(doc, steps, path, n)
            src = (parts.get("source") or {}).get("valueInteger")
            dst = (parts.get("destination") or {}).get("valueInteger")
            if not (isinstance(src, int) and isinstance(dst, int)) or not (
                0 <= src < len(target) and 0 <= dst < len(target)
            ):
                raise _fail(n, f"source/destination out of range for {path}", 422)
            target.insert(dst, target.pop(src))
        else:
            raise _fail(n, f"operation type {kind!r} is not add, insert, delete, replace or move")
    return doc


def _prune(node: Any) -> None:
    """Drop lists and objects a delete left empty (FHIR JSON has no empty arrays/objects)."""
    if isinstance(node, dict):
        for key in list(node):
            _prune(node[key])
            if node[key] in ([], {}):
                del node[key]
    elif isinstance(node, list):
        for item in node:
            _prune(item)
        node[:] = [i for i in node if i not in ([], {})]
