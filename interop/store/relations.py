"""Queries over the index tables for who is related to whom (the access policy's scope, the
inbound sender check, the plan's approving GP): resources by a token, the resources that
reference a set of targets, and what a set of resources references. Each is one statement,
whatever the number of ids."""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import Connection, select

from interop.store.schema import reference_table, token_table


def with_tokens(
    conn: Connection, rtype: str, param: str, codes: Iterable[tuple[str, str]]
) -> set[str]:
    """Ids of ``rtype`` resources with any of the ``(system, code)`` tokens under ``param``."""
    out: set[str] = set()
    for system, code in codes:
        out |= {
            r[0]
            for r in conn.execute(
                select(token_table.c.res_id).where(
                    token_table.c.res_type == rtype,
                    token_table.c.param == param,
                    token_table.c.system == system,
                    token_table.c.code == code,
                )
            )
        }
    return out


def referrers(conn: Connection, rtype: str, param: str, targets: Iterable[str]) -> set[str]:
    """Ids of ``rtype`` resources whose ``param`` references any of ``targets`` (``Type/id``)."""
    wanted = sorted(set(targets))
    if not wanted:
        return set()
    return {
        r[0]
        for r in conn.execute(
            select(reference_table.c.res_id).where(
                reference_table.c.res_type == rtype,
                reference_table.c.param == param,
                reference_table.c.target.in_(wanted),
            )
        )
    }


def targets(conn: Connection, rtype: str, param: str, ids: Iterable[str]) -> set[str]:
    """What the ``param`` references of the given ``rtype`` resources point at (``Type/id``)."""
    wanted = sorted(set(ids))
    if not wanted:
        return set()
    return {
        r[0]
        for r in conn.execute(
            select(reference_table.c.target).where(
                reference_table.c.res_type == rtype,
                reference_table.c.param == param,
                reference_table.c.res_id.in_(wanted),
            )
        )
    }
