"""The keyed audit chain: each AuditEvent's link is ``HMAC-SHA256(key, previous link ||
canonical event)`` with the key's id beside it in ``audit_chain``.

Editing an event, removing one, or re-computing the links breaks the chain for anyone who
holds the key; truncating the newest events is caught against an exported head
(:mod:`interop.access.audit.heads`). Links from before revision 0014 are plain SHA-256
(``key_id`` empty) and are accepted only before the first keyed link, which covers them.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import orjson
from sqlalchemy import Connection, select

from interop.access.audit.keys import Keyring, default_keyring
from interop.store import audit_rows
from interop.store.repository import StoredResource, WriteTx, new_id
from interop.store.schema import audit_chain_table, resource_table

HASH_URL = "https://dho-interop.no/fhir/StructureDefinition/audit-hash"
PREV_URL = "https://dho-interop.no/fhir/StructureDefinition/audit-previous-hash"
KEY_URL = "https://dho-interop.no/fhir/StructureDefinition/audit-key-id"
CHAIN_URLS = (HASH_URL, PREV_URL, KEY_URL)
GENESIS = "0" * 64
LOCK_KEY = 0x41554454  # "AUDT": PostgreSQL advisory lock serialising appends
_HEAD = "audit-chain-head"
"""``tx.context`` key: the chain's head as this transaction left it."""
AUDITING = "auditing"
"""``tx.context`` flag set while audit events themselves are written."""


def canonical(event: dict[str, Any]) -> bytes:
    """The bytes a link covers: the event without ``id``/``meta`` and its own chain extensions,
    keys sorted."""
    body = {k: v for k, v in event.items() if k not in ("id", "meta")}
    body["extension"] = [e for e in body.get("extension", []) if e.get("url") not in CHAIN_URLS]
    if not body["extension"]:
        del body["extension"]
    return orjson.dumps(body, option=orjson.OPT_SORT_KEYS)


def keyed_link(key: bytes, prev: str, event: dict[str, Any]) -> str:
    return hmac.new(key, prev.encode() + canonical(event), hashlib.sha256).hexdigest()


def legacy_link(prev: str, event: dict[str, Any]) -> str:
    return hashlib.sha256(prev.encode() + canonical(event)).hexdigest()


def append_events(
    tx: WriteTx, events: list[dict[str, Any]], keyring: Keyring
) -> list[StoredResource]:
    """Chain and store AuditEvents inside the transaction (one insert per table; see
    :mod:`interop.store.audit_rows` for how they are stored)."""
    if not events:
        return []
    conn = tx.conn
    head: tuple[int, str] | None = tx.context.get(_HEAD)
    if head is None:
        lock = LOCK_KEY if tx.store.is_postgres else None
        head = audit_rows.head(conn, lock) or (0, GENESIS)
    seq, prev = head
    key, kid = keyring.current, keyring.current_id
    zone = tx.store.zone
    rows: list[audit_rows.AuditRow] = []
    stored: list[StoredResource] = []
    for event in events:
        seq += 1
        link = keyed_link(key, prev, event)
        linked = {
            **event,
            "extension": [
                *event.get("extension", []),
                {"url": PREV_URL, "valueString": prev},
                {"url": HASH_URL, "valueString": link},
                {"url": KEY_URL, "valueString": kid},
            ],
        }
        res_id = new_id()
        recorded = audit_rows.recorded_micros(event, zone)
        content = audit_rows.served(linked, res_id, recorded)
        action, outcome, actor_id, what, patients = audit_rows.event_columns(event)
        rows.append(
            audit_rows.AuditRow(
                seq,
                res_id,
                prev,
                link,
                kid,
                recorded,
                action,
                outcome,
                actor_id,
                what,
                content,
                patients,
            )
        )
        stored.append(StoredResource("AuditEvent", res_id, 1, recorded, False, content))
        prev = link
    audit_rows.insert(conn, rows)
    tx.context[_HEAD] = (seq, prev)
    return stored


def chain_head(conn: Connection) -> tuple[int, str, str | None] | None:
    """(seq, link, key id) of the newest link, or None for an empty chain."""
    row = conn.execute(
        select(audit_chain_table.c.seq, audit_chain_table.c.hash, audit_chain_table.c.key_id)
        .order_by(audit_chain_table.c.seq.desc())
        .limit(1)
    ).first()
    return (row.seq, row.hash, row.key_id) if row else None


@dataclass(frozen=True)
class Head:
    """An exported head: the chain had link ``link`` at ``seq`` at ``time``."""

    seq: int
    link: str
    time: str
    where: str
    """where it was read from (file and line), for messages"""


@dataclass
class Verification:
    ok: bool
    links: int
    legacy: int
    problems: list[str] = field(default_factory=list)

    @property
    def message(self) -> str:
        if self.ok:
            text_ = f"{self.links} audit events, chain intact"
            if self.legacy:
                text_ += (
                    f" ({self.legacy} early link(s) are plain SHA-256 from before the keyed "
                    "chain; the first keyed link covers them)"
                )
            return text_
        more = len(self.problems) - 1
        return self.problems[0] + (f" (and {more} more problem(s))" if more else "")

    def __iter__(self) -> Iterator[Any]:
        """``ok, message = verify(conn)``"""
        return iter((self.ok, self.message))


def verify(
    conn: Connection, keyring: Keyring | None = None, heads: Iterable[Head] = ()
) -> Verification:
    """Walk the whole chain and check every link (and the exported heads); the first problem
    found names the first bad link. ``keyring``: default the process's keys."""
    if keyring is None:
        keyring = default_keyring()
    wanted = {h.seq: h for h in heads}
    seen_at: dict[int, str] = {}
    problems: list[str] = []
    expected, prev = 1, GENESIS
    n = legacy = keyed = keyed_bad = 0
    keyed_seen = False
    first_keyed = 0
    c = audit_chain_table.c
    stmt = select(c.seq, c.res_id, c.prev_hash, c.hash, c.key_id, c.content).order_by(c.seq)
    for row in conn.execute(stmt.execution_options(yield_per=2000)):
        n += 1
        name = f"link {row.seq} (AuditEvent/{row.res_id})"
        if row.seq != expected:
            problems.append(
                f"link(s) {expected}..{row.seq - 1} are missing before {name}: "
                "audit events were removed"
            )
        elif row.prev_hash != prev:
            problems.append(
                f"{name}: its previous link does not match link {row.seq - 1}: "
                "an event was removed or the chain re-ordered"
            )
        if row.seq in wanted:
            seen_at[row.seq] = row.hash
        if row.content is None:
            problems.append(f"{name}: the event is missing (removed from the database)")
        else:
            event = orjson.loads(bytes(row.content))
            if row.key_id is None:
                legacy += 1
                if keyed_seen:
                    problems.append(
                        f"{name}: an unkeyed link after keyed ones: the chain was re-written"
                    )
                elif legacy_link(row.prev_hash, event) != row.hash:
                    problems.append(f"{name}: the event was changed after it was written")
            else:
                keyed_seen = True
                keyed += 1
                first_keyed = first_keyed or row.seq
                key = keyring.get(row.key_id)
                if key is None:
                    keyed_bad += 1
                    problems.append(
                        f"{name}: made with key id {row.key_id}, which is not a configured key "
                        "(INTEROP_AUDIT_KEY_FILE / INTEROP_AUDIT_KEY_DIR): a wrong key, or the "
                        "chain was re-made with another key"
                    )
                elif not hmac.compare_digest(keyed_link(key, row.prev_hash, event), row.hash):
                    keyed_bad += 1
                    problems.append(
                        f"{name}: the event does not match its link: it was changed after it "
                        "was written, or the link was re-computed without the key"
                    )
        prev, expected = row.hash, row.seq + 1
    if keyed and keyed_bad == keyed and keyed > 1:
        problems.insert(
            0,
            f"every one of the {keyed} keyed links fails, from link {first_keyed} on: the key "
            "is wrong, or the log was re-chained without it; first: "
            + next(p for p in problems if p.startswith(f"link {first_keyed} ")),
        )
    if n and not keyed:
        problems.append(
            f"none of the {n} links is keyed: the chain is not protected by the audit key "
            "(all written before revision 0014, or re-chained without the key)"
        )
    last = expected - 1
    for seq in sorted(wanted):
        head = wanted[seq]
        if seq > last:
            problems.append(
                f"the log ends at link {last}, but the head exported at {head.time} "
                f"({head.where}) is link {seq}: link(s) {last + 1}..{seq} were removed (truncated)"
            )
        elif seq in seen_at and not hmac.compare_digest(seen_at[seq], head.link):
            problems.append(
                f"link {seq} differs from the head exported at {head.time} ({head.where}): "
                "the log was re-written after that export"
            )
        elif seq not in seen_at:
            problems.append(
                f"link {seq}, exported as a head at {head.time} ({head.where}), is missing"
            )
    # since revision 0020 no AuditEvent is a resource row: one there was put behind the log
    strays = conn.execute(
        select(resource_table.c.res_id).where(resource_table.c.res_type == "AuditEvent").limit(5)
    ).scalars()
    problems.extend(
        f"AuditEvent/{rid} is not in the chain: it was added behind the log's back"
        for rid in strays
    )
    return Verification(not problems, n, legacy, problems)
