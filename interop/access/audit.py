"""The audit log (*Wire Tap*): an AuditEvent for every read and write by an actor, chained by
hash so that tampering is detectable.

Each event's hash is ``sha256(previous hash + canonical JSON of the event)`` (the event without
``id``/``meta`` and without its own hash extensions); the order and hashes live in
``audit_chain``. Writes are audited in the same transaction as the write (a store hook); reads
and searches in a short transaction of their own. The bootstrap admin key's *reads* are not
audited (they are the operators' and the benchmark's traffic); its writes are.
"""

from __future__ import annotations

import hashlib
from typing import Any

import orjson
from sqlalchemy import Connection, select, text

from interop.access.actor import Actor
from interop.fhir.dates import format_instant, now_utc
from interop.store.context import Door, WriteContext
from interop.store.repository import FhirStore, StoredResource, WriteTx
from interop.store.schema import audit_chain_table, resource_table

HASH_URL = "https://dho-interop.no/fhir/StructureDefinition/audit-hash"
PREV_URL = "https://dho-interop.no/fhir/StructureDefinition/audit-previous-hash"
GENESIS = "0" * 64
LOCK_KEY = 0x41554454  # "AUDT"
ACTION = {"read": "R", "search": "E", "create": "C", "update": "U", "delete": "D"}


def canonical(event: dict[str, Any]) -> bytes:
    body = {k: v for k, v in event.items() if k not in ("id", "meta")}
    body["extension"] = [
        e for e in body.get("extension", []) if e.get("url") not in (HASH_URL, PREV_URL)
    ]
    if not body["extension"]:
        del body["extension"]
    return orjson.dumps(body, option=orjson.OPT_SORT_KEYS)


def _event(
    actor: Actor,
    action: str,
    what: str,
    patients: list[str],
    outcome: str,
    detail: str | None,
) -> dict[str, Any]:
    who: dict[str, Any] = {"display": actor.name or f"{actor.role} {actor.id}"}
    if actor.hpr:
        who["identifier"] = {"system": "urn:oid:2.16.578.1.12.4.1.4.4", "value": actor.hpr}
    agent: dict[str, Any] = {
        "type": {
            "coding": [
                {
                    "system": "http://terminology.hl7.org/CodeSystem/extra-security-role-type",
                    "code": "humanuser" if actor.hpr else "dataprocessor",
                }
            ]
        },
        "role": [{"text": actor.role}],
        "who": who,
        "altId": actor.id,
        "requestor": True,
    }
    if actor.orgnr or actor.herid:
        agent["location"] = {
            "display": f"org.nr {actor.orgnr or '-'} / HER-id {actor.herid or '-'}"
        }
    if actor.purpose:
        agent["purposeOfUse"] = [{"text": actor.purpose}]
    entity: list[dict[str, Any]] = [
        {"what": {"reference": what} if "/" in what and "?" not in what else {"display": what}}
    ]
    for patient_id in patients:
        entity.append(
            {
                "what": {"reference": f"Patient/{patient_id}"},
                "role": {
                    "system": "http://terminology.hl7.org/CodeSystem/object-role",
                    "code": "1",
                },
            }
        )
    ev: dict[str, Any] = {
        "resourceType": "AuditEvent",
        "type": {
            "system": "http://terminology.hl7.org/CodeSystem/audit-event-type",
            "code": "rest",
            "display": "RESTful Operation",
        },
        "action": ACTION.get(action, "E"),
        "recorded": format_instant(now_utc()),
        "outcome": outcome,
        "agent": [agent],
        "source": {"observer": {"display": "DHO Interop"}},
        "entity": entity,
    }
    if detail:
        ev["outcomeDesc"] = detail[:500]
    return ev


def append(tx: WriteTx, event: dict[str, Any]) -> StoredResource:
    """Chain and store one AuditEvent inside the transaction."""
    conn = tx.conn
    if tx.store.is_postgres:
        conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": LOCK_KEY})
    last = conn.execute(
        select(audit_chain_table.c.seq, audit_chain_table.c.hash)
        .order_by(audit_chain_table.c.seq.desc())
        .limit(1)
    ).first()
    seq, prev = (last.seq + 1, last.hash) if last else (1, GENESIS)
    digest = hashlib.sha256(prev.encode() + canonical(event)).hexdigest()
    event = {
        **event,
        "extension": [
            *event.get("extension", []),
            {"url": PREV_URL, "valueString": prev},
            {"url": HASH_URL, "valueString": digest},
        ],
    }
    tx.context["auditing"] = True
    try:
        stored = tx.create(event, validate=False)
    finally:
        tx.context["auditing"] = False
    conn.execute(
        audit_chain_table.insert().values(
            seq=seq, res_id=stored.res_id, prev_hash=prev, hash=digest
        )
    )
    return stored


def record(
    store: FhirStore,
    actor: Actor,
    action: str,
    what: str,
    patients: list[str],
    outcome: str = "0",
    detail: str | None = None,
) -> None:
    """Audit a read or a search (naming every patient whose data it returned) in its own
    short transaction. The bootstrap admin key's reads are not audited (operators' and the
    benchmark's traffic); every other actor's are."""
    if actor.source == "bootstrap":
        return
    with store.write(WriteContext(None, Door.AUDIT)) as tx:
        append(tx, _event(actor, action, what, patients, outcome, detail))


def write_hook(tx: WriteTx, stored: StoredResource, previous: StoredResource | None) -> None:
    """Store hook: audit a write by an actor in the write's own transaction."""
    actor = tx.ctx.actor
    if (
        not isinstance(actor, Actor)
        or tx.context.get("auditing")
        or stored.res_type == "AuditEvent"
    ):
        return
    if actor.id == "admin":
        return  # the bootstrap key (operators, tests, benchmarks); API-created admins are audited
    action = "delete" if stored.deleted else ("update" if previous is not None else "create")
    patient = None
    if stored.res_type == "Patient":
        patient = stored.res_id
    else:
        from interop.fhir.searchparams import extract

        patient = extract(stored.json()).patient_id
    append(tx, _event(actor, action, stored.reference, [patient] if patient else [], "0", None))


def verify(conn: Connection) -> tuple[bool, str]:
    """Walk the chain; (ok, message naming the first broken link)."""
    prev = GENESIS
    n = 0
    for row in conn.execute(select(audit_chain_table).order_by(audit_chain_table.c.seq)):
        n += 1
        if row.prev_hash != prev:
            return (
                False,
                f"link {row.seq} (AuditEvent/{row.res_id}): previous hash does not match link {row.seq - 1}",
            )
        content = conn.execute(
            select(resource_table.c.content).where(
                resource_table.c.res_type == "AuditEvent", resource_table.c.res_id == row.res_id
            )
        ).scalar()
        if content is None:
            return False, f"link {row.seq}: AuditEvent/{row.res_id} is missing"
        event = orjson.loads(content)
        digest = hashlib.sha256(prev.encode() + canonical(event)).hexdigest()
        if digest != row.hash:
            return (
                False,
                f"link {row.seq}: AuditEvent/{row.res_id} was changed after it was written",
            )
        prev = row.hash
    return True, f"{n} audit events, chain intact"
