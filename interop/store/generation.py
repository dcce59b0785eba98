"""The care-relations generation (``access_generation``): moved on in the transaction of every
write that can change who may see whom, read before an access policy reuses a cached scope.
Triage moves it too when a plan changes (CarePlan, Goal), and reads it before it reuses the
plans it cached, so that no API process judges a reading by a plan another one replaced."""

from __future__ import annotations

from sqlalchemy import Connection
from sqlalchemy.dialects import postgresql, sqlite

from interop.store.fastread import FastReader
from interop.store.schema import access_generation_table as gen

RELATION_TYPES = frozenset(
    {
        "Patient",
        "Practitioner",
        "PractitionerRole",
        "Organization",
        "EpisodeOfCare",
        "CareTeam",
        "Consent",
        "Device",
    }
)
"""The resource types whose writes can change an actor's patients or Consent refusals."""


GENERATION_SQL = "SELECT COALESCE((SELECT value FROM access_generation WHERE id = 1), 0)"
"""The generation (0 before the first change): the hot read path reads it in the statement
that reads the resource (``ReadBatcher``'s companion), so a scope cached for it is never older
than the relations as of the row."""


def bump(conn: Connection) -> None:
    """Move the generation on (inside the transaction that changes a relation)."""
    dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
    stmt = dialect.insert(gen).values(id=1, value=1)
    conn.execute(stmt.on_conflict_do_update(index_elements=["id"], set_={"value": gen.c.value + 1}))


def in_transaction(conn: Connection) -> int:
    """The generation as the transaction on ``conn`` sees it (0 before the first change)."""
    return int(conn.exec_driver_sql(GENERATION_SQL).scalar_one())


def current(reader: FastReader) -> int:
    """The generation now (0 before the first change), on the hot read path's connection."""
    return int(reader.scalar(GENERATION_SQL))
