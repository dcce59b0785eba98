"""What the R4B models say about a resource type's elements: whether an element repeats, its
type, and which elements are choices (``value[x]``). Used where the product turns a FHIRPath
into element names (search parameter expressions, FHIRPath Patch)."""

from __future__ import annotations

import typing
from functools import lru_cache
from typing import Any

from fhir.resources.R4B import get_fhir_model_class


def _model_name(annotation: Any) -> str | None:
    for arg in typing.get_args(annotation) or (annotation,):
        name = getattr(arg, "__name__", "")
        if name.endswith("Type") and name[:-4]:
            return name[:-4]
        inner = _model_name(arg) if typing.get_args(arg) else None
        if inner:
            return inner
    return None


@lru_cache(maxsize=256)
def _model(type_name: str) -> Any:
    try:
        return get_fhir_model_class(type_name)
    except (KeyError, ValueError, AttributeError):
        return None


@lru_cache(maxsize=4096)
def element(type_name: str, name: str) -> tuple[bool, str | None] | None:
    """(repeats, element type name) of ``type_name.name``, or None when there is no such
    element (or no such type)."""
    model = _model(type_name)
    info = model.model_fields.get(name) if model is not None else None
    if info is None:
        return None
    return "List[" in repr(info.annotation), _model_name(info.annotation)


@lru_cache(maxsize=4096)
def is_choice(type_name: str, name: str) -> bool:
    """Whether ``type_name.name`` is a choice element (``name[x]``)."""
    model = _model(type_name)
    if model is None:
        return False
    return any(
        isinstance(f.json_schema_extra, dict) and f.json_schema_extra.get("one_of_many") == name
        for f in model.model_fields.values()
    )


def is_model(type_name: str) -> bool:
    return _model(type_name) is not None
