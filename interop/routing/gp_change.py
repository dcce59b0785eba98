"""A patient's GP changes: what is queued for the former GP never reaches them.

Messages queued for the patient's GP name that GP as receiver and carry the patient's data. When
``Patient.generalPractitioner`` changes — by the Fastlegeregisteret sync, or by hand through
``/fhir`` (PUT, PATCH, a transaction), the API or the CLI — the patient's messages still queued
to the former GP's Endpoints are dead-lettered in the same transaction, with the reason. This is
a write hook (:func:`after_write`, attached by ``interop.services.wire_store``), so no write path
can forget it. A held message is not sent anywhere by ``outbox reprocess`` (see
:func:`interop.routing.outbox.Outbox.reprocess`): it is made anew for the new GP.
"""

from __future__ import annotations

import logging
from typing import Any

from sqlalchemy import Connection, update

from interop.identifiers import HERID_OID
from interop.messaging.addressbook import resource_json
from interop.store.repository import FhirStore, StoredResource, WriteTx
from interop.store.schema import outbox_table

log = logging.getLogger("interop.routing")

GP_CHANGED = "the patient's GP changed"
"""How the dead-letter reason of a message held for a former GP begins."""
SOURCE_KEY = "gp_change_source"
"""``tx.context`` key: who says the GP changed (the FLR sync sets ``Fastlegeregisteret``)."""
HELD_KEY = "held_for_former_gp"
"""``tx.context`` key: how many messages the transaction's GP changes held."""


def gp_refs(patient: dict[str, Any]) -> list[str]:
    return [
        str(g["reference"])
        for g in patient.get("generalPractitioner") or []
        if isinstance(g, dict) and isinstance(g.get("reference"), str)
    ]


def _her_ids(resource: dict[str, Any]) -> list[str]:
    return [
        str(i.get("value"))
        for i in resource.get("identifier") or []
        if i.get("system") == HERID_OID and i.get("value")
    ]


def _endpoints(store: FhirStore, conn: Connection, refs: list[str]) -> tuple[set[str], list[str]]:
    """The Endpoints messages to these GPs went to (the role's own, else its practice's; an
    Organization's), and their HER-ids."""
    endpoints: set[str] = set()
    her: list[str] = []
    for ref in refs:
        holder = resource_json(store, conn, ref)
        if holder is None or holder["resourceType"] not in ("PractitionerRole", "Organization"):
            continue
        her += _her_ids(holder)
        own = {str(e.get("reference")) for e in holder.get("endpoint") or []}
        if not own and holder["resourceType"] == "PractitionerRole":
            org = resource_json(store, conn, (holder.get("organization") or {}).get("reference"))
            own = {str(e.get("reference")) for e in (org or {}).get("endpoint") or []}
        endpoints |= own
    return endpoints, her


def hold_for_former_gp(
    store: FhirStore,
    conn: Connection,
    patient_id: str,
    former: list[str],
    new: list[str],
    source: str,
) -> int:
    """Dead-letter the patient's messages still queued for the Endpoints of GPs no longer the
    patient's, with the reason (``source``: who says so). Returns how many."""
    gone = [r for r in former if r not in new]
    endpoints, former_her = _endpoints(store, conn, gone)
    if not endpoints:
        return 0
    _, new_her = _endpoints(store, conn, new)
    why = (
        f"{GP_CHANGED} {source} (HER-id {', '.join(former_her) or '?'} → "
        f"{', '.join(new_her) or ('?' if new else 'none')}): not sent to the former GP; make "
        "the message anew for the new GP"
    )
    result = conn.execute(
        update(outbox_table)
        .where(
            outbox_table.c.patient_id == patient_id,
            outbox_table.c.destination.in_(sorted(endpoints)),
            outbox_table.c.status == "queued",
        )
        .values(status="dead", last_error=why[:2000])
    )
    held = int(result.rowcount or 0)
    if held:
        log.warning("Patient/%s: %d message(s) to the former GP dead-lettered", patient_id, held)
    return held


def after_write(tx: WriteTx, stored: StoredResource, previous: StoredResource | None) -> None:
    """The write hook: a Patient whose ``generalPractitioner`` changed holds what is queued for
    the former GP."""
    if stored.res_type != "Patient" or previous is None or previous.deleted or stored.deleted:
        return
    former = gp_refs(previous.json())
    if not former:
        return
    new = gp_refs(stored.json())
    if former == new:
        return
    source = tx.context.get(SOURCE_KEY)
    if not source:
        who = tx.ctx.actor.id if tx.ctx.actor is not None else "the service"
        source = f"by hand ({who}, {tx.ctx.door.value})"
    held = hold_for_former_gp(tx.store, tx.conn, stored.res_id, former, new, str(source))
    tx.context[HELD_KEY] = int(tx.context.get(HELD_KEY) or 0) + held
