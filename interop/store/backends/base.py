"""The bulk-writer interface (see :mod:`interop.store.backends`)."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from sqlalchemy import Connection, Table

OnConflict = Literal["error", "ignore", "report"]
"""What an insert does with a row whose unique key is taken: raise (an
:class:`~sqlalchemy.exc.IntegrityError` from :meth:`BulkWriter.flush`), skip it silently, or
skip it and report it in :attr:`Flushed.skipped` (claims of business identifiers)."""


@dataclass(slots=True)
class Flushed:
    """What a :meth:`BulkWriter.flush` did besides writing."""

    skipped: list[tuple[Any, ...]] = field(default_factory=list)
    """The rows of the ``report`` insert whose unique key was taken (not written)."""
    updated: int = 0
    """Rows the update changed (fewer than it was given: some were not at the version
    named, i.e. changed concurrently)."""


class BulkWriter(ABC):
    """Queued writes of many rows, sent the way the backend takes them best (a backend
    implements :meth:`flush`, which runs ``_ops``: ``("insert", table, columns, rows,
    on_conflict)``, ``("delete", table, column, values, where)``, ``("update", table,
    columns, key, rows)``)."""

    def __init__(self, conn: Connection) -> None:
        self._conn = conn
        self._ops: list[tuple[Any, ...]] = []
        self._rows = 0
        """Rows queued to insert or update."""

    def insert_rows(
        self,
        table: Table,
        columns: tuple[str, ...],
        rows: Sequence[tuple[Any, ...]],
        *,
        on_conflict: OnConflict = "error",
    ) -> None:
        """Insert ``rows`` (tuples in ``columns`` order). At most one ``report`` insert per
        flush."""
        if rows:
            self._ops.append(("insert", table, columns, rows, on_conflict))
            self._rows += len(rows)

    def delete_rows(
        self, table: Table, column: str, values: Sequence[Any], *, where: dict[str, Any]
    ) -> None:
        """Delete the rows whose ``column`` is one of ``values`` and whose other columns
        are as ``where`` says."""
        if values:
            self._ops.append(("delete", table, column, values, where))

    def update_rows(
        self,
        table: Table,
        columns: tuple[str, ...],
        key: tuple[str, ...],
        rows: Sequence[tuple[Any, ...]],
    ) -> None:
        """Set ``columns`` of the row whose ``key`` columns are as given, for each row of
        ``rows`` (the new values in ``columns`` order, then the key's values in ``key``
        order; a key column may also be set: it is matched at its old value). Counted in
        :attr:`Flushed.updated`; at most one update per flush."""
        if any(op[0] == "update" for op in self._ops):
            raise ValueError("one update per flush")
        if not rows:
            return
        self._ops.append(("update", table, columns, key, rows))
        self._rows += len(rows)

    @abstractmethod
    def flush(self) -> Flushed:
        """Run what is queued, in order, and forget it. A taken unique key of an ``error``
        insert raises :class:`~sqlalchemy.exc.IntegrityError`."""

    def _take(self) -> tuple[list[tuple[Any, ...]], int]:
        """The queued operations and their rows, forgotten here; at most one ``report``
        insert or one update among them."""
        ops, rows, self._ops, self._rows = self._ops, self._rows, [], 0
        reported = sum(1 for op in ops if op[0] == "insert" and op[4] == "report")
        updates = sum(1 for op in ops if op[0] == "update")
        if reported + updates > 1:
            raise ValueError("one reported insert or one update per flush")
        return ops, rows
