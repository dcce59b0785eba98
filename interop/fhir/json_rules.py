"""FHIR R4 JSON rules the structure models do not enforce (R4 §2.6.2 "JSON representation").

* no ``null`` member, no empty string, no empty array, no empty object: an element is either
  present with a value or left out;
* a ``boolean`` is a JSON ``true``/``false`` and a ``decimal``/``integer`` a JSON number, never a
  string (the pydantic models would coerce ``"true"`` and ``"72.5"``).

:func:`empty_issues` costs one ``orjson`` encoding and one byte scan when the resource is clean
(the usual case); only a suspicious resource is walked to name the element.
:func:`typed_issues` walks the resource along the ``fhir.resources`` models; it runs only where
those models run, since the hand-written Observation validator accepts JSON types exactly.
"""

from __future__ import annotations

import decimal
import re
import typing
from functools import lru_cache
from typing import Any

from fhir.resources.R4B import get_fhir_model_class

from interop.fhir import decimals
from interop.fhir.outcome import Issue

# as orjson writes JSON (no spaces): an empty string value, an empty array or object, a null.
# The same bytes inside a string only cost the walk, which then finds nothing.
_SUSPECT = re.compile(rb'[:\[,]""|\[\]|\{\}|null')

MAX_ISSUES = 20


def empty_issues(resource: dict[str, Any], rtype: str) -> list[Issue]:
    """Issues for ``null`` members, empty strings, arrays and objects, each naming its element."""
    if _SUSPECT.search(decimals.dumps(resource)) is None:
        return []
    issues: list[Issue] = []
    stack: list[tuple[Any, str]] = [(resource, rtype)]
    while stack and len(issues) < MAX_ISSUES:
        node, path = stack.pop()
        if isinstance(node, dict):
            items: list[tuple[str, Any]] = [(f"{path}.{k}", v) for k, v in node.items()]
        else:
            # null inside an array of primitives pairs with its ``_x`` extension: allowed
            items = [(f"{path}[{i}]", v) for i, v in enumerate(node) if v is not None]
        for where, value in reversed(items):
            problem = _empty(value)
            if problem:
                issues.append(
                    Issue(
                        "error",
                        "structure",
                        f"{where}: {problem} is not allowed in FHIR JSON; leave the element out",
                        (where,),
                    )
                )
            elif isinstance(value, dict | list):
                stack.append((value, where))
    return issues


def _empty(value: Any) -> str | None:
    if value is None:
        return "null"
    if value == "":
        return "an empty string"
    if isinstance(value, list) and not value:
        return "an empty array"
    if isinstance(value, dict) and not value:
        return "an empty object"
    return None


# ---- JSON types of primitives, along the models ---------------------------------------------
_BOOLEAN, _NUMBER = "a boolean (true or false)", "a number"
_Kind = str | type | None
"""A primitive's expected JSON type (``_BOOLEAN``/``_NUMBER``), a model class, or ``None``."""


def _unwrap(annotation: Any) -> Any:
    """``Optional[List[Annotated[X, …]]]`` → ``X``."""
    while True:
        origin = typing.get_origin(annotation)
        if origin is None:
            return annotation
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        if origin is typing.Annotated or len(args) == 1:
            annotation = args[0]
        else:
            return None


@lru_cache(maxsize=512)
def _fields(model: type) -> dict[str, _Kind]:
    out: dict[str, _Kind] = {}
    for name, field in model.model_fields.items():  # type: ignore[attr-defined]
        base = _unwrap(field.annotation)
        kind: _Kind = None
        if base is bool:
            kind = _BOOLEAN
        elif base is int or base is decimal.Decimal:
            kind = _NUMBER
        elif isinstance(base, type) and base.__name__.endswith("Type"):
            element = base.__name__[: -len("Type")]
            if element != "Resource":
                try:
                    kind = get_fhir_model_class(element)
                except (KeyError, ValueError):
                    kind = None
            else:
                kind = "resource"
        out[field.alias or name] = kind
    return out


def typed_issues(resource: dict[str, Any], rtype: str) -> list[Issue]:
    """Issues for strings where the model wants a boolean or a number."""
    issues: list[Issue] = []
    try:
        model = get_fhir_model_class(rtype)
    except (KeyError, ValueError):
        return issues
    _walk(resource, model, rtype, issues)
    return issues


def _walk(node: dict[str, Any], model: type, path: str, issues: list[Issue]) -> None:
    fields = _fields(model)
    for key, value in node.items():
        kind = fields.get(key)
        if kind is None:
            continue
        where = f"{path}.{key}"
        values = value if isinstance(value, list) else [value]
        for i, item in enumerate(values):
            at = f"{where}[{i}]" if isinstance(value, list) else where
            if len(issues) >= MAX_ISSUES:
                return
            if kind in (_BOOLEAN, _NUMBER):
                if isinstance(item, str):
                    issues.append(
                        Issue(
                            "error",
                            "value",
                            f"{at}: {item!r} is a string; FHIR JSON writes it as {kind}",
                            (at,),
                        )
                    )
            elif kind == "resource":
                if isinstance(item, dict) and isinstance(item.get("resourceType"), str):
                    try:
                        inner = get_fhir_model_class(item["resourceType"])
                    except (KeyError, ValueError):
                        continue
                    _walk(item, inner, at, issues)
            elif isinstance(kind, type) and isinstance(item, dict):
                _walk(item, kind, at, issues)
