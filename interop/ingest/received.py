"""Received messages and what became of them: the operator's (and a vendor's) view of the
inbox, as the HTTP ingest report is for a message posted over HTTP.

A message taken over MLLP is acknowledged before it is processed, so its outcome — created,
duplicate, quarantined, rejected, each with the per-item reasons — is only known later; this
module reads it back from the inbox (:mod:`interop.store.inbound`). Who sees which message is
decided here from the senders list: an admin every message, a vendor the messages of the
senders listed with its org.nr.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from itertools import islice
from typing import Any, Literal

import orjson
from sqlalchemy import Connection

from adapters.hl7v2 import split_message_header
from interop.fhir.dates import format_instant, from_micros
from interop.ingest.hl7_structure import structure_problems
from interop.ingest.mllp_senders import MllpSenders
from interop.store import inbound
from interop.store.inbound import InboundRow

Outcome = Literal["pending", "created", "quarantined", "duplicate", "rejected", "skipped"]
OUTCOMES: tuple[Outcome, ...] = (
    "pending",
    "created",
    "quarantined",
    "duplicate",
    "rejected",
    "skipped",
)
STATUSES_OF: dict[str, tuple[str, ...]] = {
    "pending": ("received", "processing"),
    "rejected": ("failed", "conflict", "processed"),
}
"""The inbox statuses a message with an outcome can have (a processed message may still be
refused item by item); outcomes not listed are of processed messages."""
COUNTS = ("items_seen", "created", "updated", "duplicate", "quarantined", "rejected")
MAX_SCAN = 20_000
"""How many stored messages one listing looks through for the caller's (newest first)."""


@dataclass(frozen=True, slots=True)
class Viewer:
    """Whose messages a caller may see: every sender's (``None``), or those of these
    senders (MSH-3.1|MSH-4.1 as the senders list names them)."""

    senders: frozenset[str] | None

    @classmethod
    def everyone(cls) -> Viewer:
        return cls(None)

    @classmethod
    def vendor(cls, orgnr: str | None, listed: MllpSenders) -> Viewer:
        return cls(
            frozenset(
                s.key
                for s in listed.by_key.values()
                if orgnr is not None and s.role == "vendor" and s.orgnr == orgnr
            )
        )

    def sees(self, row: InboundRow) -> bool:
        return self.senders is None or sender_key(row) in self.senders


def sender_key(row: InboundRow) -> str:
    """The sender as the senders list names it (MSH-3.1|MSH-4.1 for HL7 v2)."""
    if row.adapter == "hl7v2":
        try:
            return split_message_header(row.head).sender
        except ValueError:
            pass
    return row.sender


def _report(row: InboundRow) -> dict[str, Any]:
    if not row.report:
        return {}
    try:
        data = orjson.loads(row.report)
    except orjson.JSONDecodeError:
        return {}
    return data if isinstance(data, dict) else {}


def outcome_of(row: InboundRow, report: dict[str, Any]) -> Outcome:
    """One word for what became of the message (the counts say the rest)."""
    if row.status in ("received", "processing"):
        return "pending"
    if row.status != "processed" or report.get("message_conflict"):
        return "rejected"
    if report.get("duplicate_message"):
        return "duplicate"
    n = {k: int(report.get(k) or 0) for k in COUNTS}
    if n["created"] + n["updated"]:
        return "created"
    if n["quarantined"]:
        return "quarantined"
    if n["duplicate"]:
        return "duplicate"
    if n["rejected"]:
        return "rejected"
    return "skipped"


def view(row: InboundRow, *, detail: bool) -> dict[str, Any]:
    """The message as the API and the CLI show it; ``detail`` adds every diagnostic and the
    resources it created."""
    report = _report(row)
    out: dict[str, Any] = {
        "id": row.id,
        "channel": row.channel,
        "sender": row.sender,
        "messageId": row.message_id,
        "adapter": row.adapter,
        "received": format_instant(from_micros(row.received)),
        "processed": format_instant(from_micros(row.processed)) if row.processed else None,
        "status": row.status,
        "attempts": row.attempts,
        "outcome": outcome_of(row, report),
        "counts": {_camel(k): int(report.get(k) or 0) for k in COUNTS} if report else None,
    }
    diagnostics = [d for d in report.get("diagnostics") or [] if isinstance(d, dict)]
    reasons = [d for d in diagnostics if d.get("severity") in ("fatal", "error")]
    if row.error:
        out["error"] = row.error
    if detail:
        out["diagnostics"] = diagnostics
        out["resources"] = list(report.get("resources") or [])
        out["mappingVersion"] = report.get("mapping_version")
    else:
        out["reasons"] = [_reason(d) for d in reasons[:5]]
        out["moreReasons"] = max(0, len(reasons) - 5)
    return out


def _reason(d: dict[str, Any]) -> str:
    where = f" ({d['location']})" if d.get("location") else ""
    return f"{d.get('code')}: {d.get('message')}{where}"


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(p.title() for p in rest)


def received_messages(
    conn: Connection,
    viewer: Viewer,
    *,
    outcome: Outcome | None = None,
    channel: str | None = None,
    limit: int = 100,
) -> list[dict[str, Any]]:
    """The newest messages the viewer may see (with this outcome), at most ``limit``."""
    statuses = STATUSES_OF.get(outcome, ("processed",)) if outcome else ()
    rows: Iterable[InboundRow] = islice(
        inbound.newest_first(conn, statuses=statuses, channel=channel), MAX_SCAN
    )
    out: list[dict[str, Any]] = []
    for row in rows:
        if not viewer.sees(row):
            continue
        shown = view(row, detail=False)
        if outcome is not None and shown["outcome"] != outcome:
            continue
        out.append(shown)
        if len(out) >= limit:
            break
    return out


def received_message(conn: Connection, viewer: Viewer, message_id: str) -> dict[str, Any] | None:
    """One message in detail (an HL7 v2 message also checked against its version's
    structure); ``None`` when there is none the viewer may see (the same answer whether it
    exists or not)."""
    row = inbound.by_id(conn, message_id)
    if row is None or not viewer.sees(row):
        return None
    shown = view(row, detail=True)
    if row.adapter == "hl7v2":
        raw = inbound.raw_of(conn, message_id)
        shown["structure"] = structure_problems(raw) if raw is not None else []
    return shown
