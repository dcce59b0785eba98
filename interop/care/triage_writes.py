"""The Tasks and Flags triage writes for the readings of one batch, written together.

Triage judges the readings of a batch (a transaction Bundle, a group commit's creates, an
ingest message) one after the other. What a reading changes — a new Task or Flag, a note or an
escalation on an open one, a Flag made inactive — is kept here as the newest content of each
resource, and the transaction's view of the patients' open Tasks and active Flags
(``tx.context["open_items"]``) is brought up to date at once: the next reading of the batch
sees exactly what it would see had the change been written. At the end of the batch (the
store's ``after_hooks``) the new resources are created with one insert per table and the
changed ones updated with one statement per table (:meth:`WriteTx.create_many`,
:meth:`WriteTx.update_many`) — on behalf of whom each was changed for (the service's own
writes after a client's Observation; a questionnaire's Task as the ingest's), checked and
audited as when written alone — before anything else of the transaction runs (its events
are handed on, and its audit written, before it commits).

A resource several readings of one batch change is written once, with the content the last of
them left — the content it has when the readings are written one at a time; it gets one new
version instead of one per reading. An open Task or Flag read in the transaction and changed
by another one since (PostgreSQL) is a 409 conflict, never overwritten.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from interop.store.context import WriteContext
from interop.store.repository import WriteTx

OPEN_ITEMS = "open_items"
"""``tx.context`` key: the :class:`OpenItems` triage reads and keeps."""
WRITES = "triage-writes"
"""``tx.context`` key: the :class:`TriageWrites` of the batch whose write hooks are running."""
OPEN_TASK = ("draft", "requested", "received", "accepted", "ready", "in-progress", "on-hold")


class TriageWrites:
    """The Tasks and Flags to write at the end of a batch, each once (see the module)."""

    __slots__ = ("_items",)

    def __init__(self) -> None:
        self._items: dict[tuple[str, str], _Kept] = {}

    def put(self, tx: WriteTx, res_type: str, resource: dict[str, Any], *, new: bool) -> str:
        """Keep ``resource`` (a Task or Flag with its ``id``) as what to write on behalf of
        whom the transaction acts for now (``tx.ctx``): ``new``, or a change of one read in
        the transaction (its ``meta`` names the version read) or kept here before. Returns
        its id."""
        res_id = str(resource["id"])
        key = (res_type, res_id)
        body = {k: v for k, v in resource.items() if k != "meta"}
        known = self._items.get(key)
        if known is not None:
            self._items[key] = _Kept(body, known.read, known.new, tx.ctx)
        else:
            read = (resource.get("meta") or {}).get("versionId")
            self._items[key] = _Kept(body, None if new or read is None else int(read), new, tx.ctx)
        found: OpenItems | None = tx.context.get(OPEN_ITEMS)
        if found is not None:
            found.keep(res_type, body)
        return res_id

    def flush(self, tx: WriteTx) -> None:
        """Write what was kept: per whom it was kept for (the service, or the client whose
        ingest judged a questionnaire) the new resources in one ``create_many`` and the
        changed ones in one ``update_many``."""
        items, self._items = self._items, {}
        by_ctx: dict[tuple[int, str], list[tuple[tuple[str, str], _Kept]]] = {}
        for key, kept in items.items():
            by_ctx.setdefault((id(kept.ctx.actor), kept.ctx.door), []).append((key, kept))
        for group in by_ctx.values():
            creates: list[tuple[dict[str, Any], str | None]] = [
                (kept.body, res_id) for (_t, res_id), kept in group if kept.new
            ]
            updates = [
                (res_type, res_id, kept.body, kept.read)
                for (res_type, res_id), kept in group
                if not kept.new
            ]
            with tx.acting(group[0][1].ctx):
                if creates:
                    tx.create_many(creates, validate=False)
                if updates:
                    tx.update_many(updates)


@dataclass(frozen=True, slots=True)
class _Kept:
    body: dict[str, Any]
    """The content to write (no meta)."""
    read: int | None
    """The version the transaction read it at (None: new, or not read with its meta)."""
    new: bool
    ctx: WriteContext
    """On whose behalf it is written."""


class OpenItems:
    """Each patient's open Tasks and active Flags as the transaction sees them (read once,
    then kept up to date with every Task and Flag it changes), with where each item is
    listed, so that keeping one up to date looks at its patient's lists only."""

    __slots__ = ("_of", "_listed")

    def __init__(self) -> None:
        self._of: dict[str, tuple[list[dict[str, Any]], list[dict[str, Any]]]] = {}
        self._listed: dict[tuple[str, str], str] = {}
        """(type, id) → the patient whose list holds it"""

    def __contains__(self, patient_id: object) -> bool:
        return patient_id in self._of

    def of(self, patient_id: str) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """The patient's (open Tasks, active Flags); the patient must have been read."""
        return self._of[patient_id]

    def add(self, read: dict[str, tuple[list[dict[str, Any]], list[dict[str, Any]]]]) -> None:
        """Patients' open items as read from the database."""
        for pid, (tasks, flags) in read.items():
            self._of[pid] = (tasks, flags)
            for res_type, items in (("Task", tasks), ("Flag", flags)):
                for item in items:
                    self._listed[(res_type, str(item.get("id")))] = pid

    def keep(self, res_type: str, item: dict[str, Any], *, deleted: bool = False) -> None:
        """Bring the lists up to date with a Task or Flag (``item``, with its id) as it is
        now: it replaces the one with its id, or leaves its list when no longer open/active
        or no longer about that patient (and joins its patient's list, when read)."""
        is_task = res_type == "Task"
        ref = ((item.get("for") if is_task else item.get("subject")) or {}).get("reference")
        status = item.get("status")
        open_now = not deleted and (status in OPEN_TASK if is_task else status == "active")
        owner = ref[8:] if isinstance(ref, str) and ref.startswith("Patient/") else None
        key = (res_type, str(item.get("id")))
        was = self._listed.pop(key, None)
        at = None
        if was is not None:
            items = self._of[was][0 if is_task else 1]
            at = next((k for k, x in enumerate(items) if x.get("id") == item.get("id")), None)
            if at is not None:
                del items[at]
        if open_now and owner is not None and owner in self._of:
            items = self._of[owner][0 if is_task else 1]
            items.insert(len(items) if at is None or was != owner else at, item)
            self._listed[key] = owner


def open_items(tx: WriteTx) -> OpenItems:
    """The transaction's :class:`OpenItems` (``tx.context["open_items"]``)."""
    found: OpenItems | None = tx.context.get(OPEN_ITEMS)
    if found is None:
        found = tx.context[OPEN_ITEMS] = OpenItems()
    return found
