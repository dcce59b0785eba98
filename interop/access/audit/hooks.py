"""Where the store and the request paths hand events to the audit log.

* :func:`write_hook` (a store write hook) audits every write made by an actor, in the write's
  own transaction — the bootstrap admin key's writes too, under its own identity.
* :func:`flush` appends a transaction's write events before it commits. Reads and searches
  are audited by the access policy (``interop.access.policy``), through :class:`AuditLog`.
"""

from __future__ import annotations

from interop.access.actor import Actor
from interop.access.audit.chain import AUDITING
from interop.access.audit.events import build_event
from interop.access.audit.log import audit_log
from interop.fhir.searchparams import patient_compartment
from interop.store.context import Door
from interop.store.repository import StoredResource, WriteTx


def acting_actor(tx: WriteTx) -> Actor | None:
    """The actor a write transaction acts for (None: the service's own writes)."""
    actor = tx.ctx.actor
    return actor if isinstance(actor, Actor) else None


def is_bootstrap(actor: Actor) -> bool:
    """The bootstrap admin key (operators, tests, benchmarks): its reads are not audited."""
    return actor.source == "bootstrap" or actor.id == "admin"


def write_hook(tx: WriteTx, stored: StoredResource, previous: StoredResource | None) -> None:
    """Store hook: audit a write by an actor in the write's own transaction. Through the
    ingest door a message may write hundreds of Observations: those are audited as one event
    per patient and kind of change, naming each resource written."""
    actor = acting_actor(tx)
    if actor is None or tx.context.get(AUDITING) or stored.res_type == "AuditEvent":
        return
    action = "delete" if stored.deleted else ("update" if previous is not None else "create")
    content = previous.view() if stored.deleted and previous is not None else stored.view()
    patient = patient_compartment(content)
    if tx.ctx.door is Door.INGEST:
        grouped = tx.context.get(INGESTED)
        if grouped is None:
            grouped = tx.context[INGESTED] = {}
        grouped.setdefault((action, patient), []).append(stored.reference)
        return
    event = build_event(actor, action, stored.reference, [patient] if patient else [])
    pending = tx.context.get(PENDING)
    if pending is None:
        pending = tx.context[PENDING] = []
    pending.append(event)


INGESTED = "audit_ingested"
"""``tx.context`` key: (action, patient) → the references an ingest wrote, for :func:`flush`."""


PENDING = "audit_pending"
"""``tx.context`` key: the write events of a transaction, appended by :func:`flush` before it
commits (one chain look-up and one insert per table for all of them)."""


def flush(tx: WriteTx) -> None:
    """Store hook run before commit: append the transaction's write events to the chain."""
    events = tx.context.pop(PENDING, None) or []
    ingested = tx.context.pop(INGESTED, None)
    actor = acting_actor(tx)
    if ingested and actor is not None:
        for (action, patient), refs in ingested.items():
            what = refs[0] if len(refs) == 1 else f"ingest?written={','.join(refs)}"
            events.append(build_event(actor, action, what[:2000], [patient] if patient else []))
    if events:
        audit_log(tx.store).append_many(tx, events)
