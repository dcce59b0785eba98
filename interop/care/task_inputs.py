"""A Task's inputs by name (``input.type.text``): the service's Tasks carry what they are
about (the measurement, the zone, the times of the deviation) as named inputs."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any


def input_named(task: dict[str, Any], names: str | Iterable[str], key: str) -> str | None:
    """The first input's ``key`` value (``valueCode``, ``valueDateTime``) among the inputs
    named ``names`` (one name or several) that has one; None when none has."""
    wanted = {names} if isinstance(names, str) else set(names)
    for i in task.get("input", []):
        if (i.get("type") or {}).get("text") in wanted and i.get(key):
            return str(i[key])
    return None


def without_inputs(inputs: list[dict[str, Any]], names: Iterable[str]) -> list[dict[str, Any]]:
    """The inputs but those named ``names``."""
    gone = set(names)
    return [i for i in inputs if (i.get("type") or {}).get("text") not in gone]


def with_input(
    inputs: list[dict[str, Any]], name: str, key: str, value: str
) -> list[dict[str, Any]]:
    """The inputs with ``name`` set to ``value`` (under ``key``), replacing any."""
    return [*without_inputs(inputs, (name,)), {"type": {"text": name}, key: value}]
