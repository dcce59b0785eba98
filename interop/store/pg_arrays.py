"""PostgreSQL array literals (``{…}``) for statements that take a column of values as one
parameter (``unnest(%s::text[], %s::int8[], …)``).

psycopg adapts a Python list element by element, looking for the right element dumper on
every call; for a statement of a few dozen short columns that took a sixth of the API
process's time in group-committed creates. The values' types are known here (the columns'),
so each column is written as one string and the server parses it (``array_in``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any


def _text(v: Any) -> str:
    return '"' + str(v).replace("\\", "\\\\").replace('"', '\\"') + '"'


def _number(v: Any) -> str:
    return repr(v) if isinstance(v, float) else str(int(v))


def _bool(v: Any) -> str:
    return "t" if v else "f"


def _bytea(v: Any) -> str:
    # the element's text is \x<hex>; inside a quoted element the backslash is escaped
    return '"\\\\x' + bytes(v).hex() + '"'


_ELEMENT: dict[str, Callable[[Any], str]] = {
    "text": _text,
    "int2": _number,
    "int4": _number,
    "int8": _number,
    "float8": _number,
    "bool": _bool,
    "bytea": _bytea,
}


def array_literal(values: Sequence[Any], pg_type: str) -> str:
    """``values`` (None for NULL) as the literal of a ``pg_type[]``; ``pg_type`` is one of
    text, int2, int4, int8, float8, bool, bytea."""
    element = _ELEMENT[pg_type]
    return "{" + ",".join("NULL" if v is None else element(v) for v in values) + "}"
