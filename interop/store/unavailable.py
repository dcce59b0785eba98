"""The database cannot be used now: a request is answered 503 with the reason, never a 500."""

from __future__ import annotations

from typing import Any

from sqlalchemy.exc import DBAPIError, OperationalError

SQLITE_UNUSABLE = (
    "SQLITE_BUSY",
    "SQLITE_CANTOPEN",
    "SQLITE_CORRUPT",
    "SQLITE_FULL",
    "SQLITE_IOERR",
    "SQLITE_NOTADB",
    "SQLITE_READONLY",
)
"""SQLite result codes (``sqlite3.Error.sqlite_errorname``, extended codes begin with these)
that say the database file cannot be used now: locked beyond the wait, gone, replaced,
damaged, read-only or its disk full. Any other SQLite error (a malformed statement, a missing
table) is the service's own fault and stays a 500."""


class StoreUnavailable(Exception):  # noqa: N818 - a state, as the HTTP status says it
    """The database cannot be used now (503). The text says why, for the OperationOutcome
    and the log."""


def unavailable_reason(exc: BaseException) -> str | None:
    """Why the database cannot be used, when ``exc`` says so; None for any other error.

    :class:`StoreUnavailable`; a SQLite error whose code is one of :data:`SQLITE_UNUSABLE`;
    PostgreSQL's *operational* errors (the server gone, restarting or refusing connections)."""
    if isinstance(exc, StoreUnavailable):
        return str(exc)
    orig: Any = exc.orig if isinstance(exc, DBAPIError) else exc
    name = getattr(orig, "sqlite_errorname", None)
    if name is not None:
        if str(name).startswith(SQLITE_UNUSABLE):
            return f"the SQLite database cannot be used ({name}: {orig})"
        return None
    if isinstance(exc, OperationalError) or type(orig).__name__ == "OperationalError":
        return f"the database cannot be reached ({type(orig).__name__}: {orig})"
    return None
