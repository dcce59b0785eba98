"""Look-ups of the ``_tag``, ``_profile`` and ``_security`` index rows (the token table,
:data:`interop.fhir.searchparams.META_PARAMS`) for ``$meta`` at type and system level.

Each look-up is a few index seeks, however many resources there are: the distinct marks of a
type are walked one at a time through ``ix_token_lookup`` (a loose index scan), and a few of
the resources carrying one mark are read from the same index."""

from __future__ import annotations

from typing import Any

from sqlalchemy import false, select, tuple_

from interop.fhir.outcome import error
from interop.fhir.searchparams import META_PARAMS
from interop.store.schema import resource_table, token_table

MAX_MARKS = 1000
"""A type's ``$meta`` names at most this many distinct profiles, tags and security labels;
beyond, it is refused (400 too-costly) rather than answered in part."""

Mark = tuple[str, str, str]
"""(parameter, system, code) of one profile (``_profile``, system ""), tag or label."""


def marks(conn: Any, res_type: str) -> list[Mark]:
    """The distinct marks the index holds for a type (of current and deleted resources alike;
    the caller reads which resources carry them)."""
    t = token_table.c
    out: list[Mark] = []
    for param in META_PARAMS:
        after: tuple[str, str] | None = None
        while True:
            stmt = select(t.code, t.system).where(t.res_type == res_type, t.param == param)
            if after is not None:
                stmt = stmt.where(tuple_(t.code, t.system) > tuple_(*after))
            row = conn.execute(stmt.order_by(t.code, t.system).limit(1)).first()
            if row is None:
                break
            after = (row.code, row.system)
            out.append((param, row.system, row.code))
            if len(out) > MAX_MARKS:
                raise error(
                    400,
                    "too-costly",
                    f"{res_type} carries more than {MAX_MARKS} distinct profiles, tags and "
                    "security labels; ask $meta of single resources",
                )
    return out


def some_carrying(conn: Any, res_type: str, mark: Mark, limit: int) -> list[str]:
    """Ids of up to ``limit`` resources of the type whose index holds the mark (the first the
    index gives: one seek, in no particular order)."""
    t = token_table.c
    param, system, code = mark
    stmt = select(t.res_id).where(
        t.res_type == res_type, t.param == param, t.code == code, t.system == system
    )
    return [row.res_id for row in conn.execute(stmt.limit(limit))]


def types_present(conn: Any, types: list[str]) -> list[str]:
    """Those of ``types`` with a current resource (one seek each)."""
    r = resource_table.c
    return [
        rtype
        for rtype in types
        if conn.execute(
            select(r.res_id).where(r.res_type == rtype, r.deleted == false()).limit(1)
        ).first()
        is not None
    ]
