"""The patient's right to see who has accessed their record (pasientjournalloven § 18, innsyn
i logg): every audit event naming the patient, as JSON or as a printable page in bokmål.

Events are found through ``audit_patient`` (one row per patient an event names, so a search
that returned ten patients' data is listed for each of them, with the time it was recorded):
the cost follows the patient's own events, not the size of the log.
"""

from __future__ import annotations

import html
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import orjson
from sqlalchemy import Connection, select

from interop.access.audit.events import HPR_SYSTEM, event_is_emergency
from interop.fhir.dates import fhir_range, from_micros
from interop.store.schema import audit_chain_table, audit_patient_table

ACTION_NAMES = {"R": "read", "E": "search", "C": "create", "U": "update", "D": "delete"}
ACTION_BOKMAL = {"R": "lest", "E": "søk", "C": "registrert", "U": "endret", "D": "slettet"}


@dataclass(frozen=True)
class Access:
    time: str
    """when (the event's ``recorded``)"""
    name: str
    hpr: str | None
    role: str | None
    organisation: str | None
    action: str
    what: str
    granted: bool
    emergency: bool
    """*nødrett*: emergency access without the usual grounds"""
    event: str


def _access(event: dict[str, Any]) -> Access:
    agent = (event.get("agent") or [{}])[0]
    who = agent.get("who") or {}
    ident = who.get("identifier") or {}
    hpr = ident.get("value") if ident.get("system") == HPR_SYSTEM else None
    roles = agent.get("role") or []
    entities = event.get("entity") or []
    what_ref = (entities[0].get("what") or {}) if entities else {}
    return Access(
        time=event.get("recorded", ""),
        name=who.get("display") or agent.get("altId") or "?",
        hpr=hpr,
        role=roles[0].get("text") if roles else None,
        organisation=(agent.get("location") or {}).get("display"),
        action=ACTION_NAMES.get(event.get("action", ""), event.get("action", "")),
        what=what_ref.get("reference") or what_ref.get("display") or "",
        granted=event.get("outcome") == "0",
        emergency=event_is_emergency(event),
        event=f"AuditEvent/{event.get('id')}",
    )


def period(start: str | None, end: str | None, zone: str) -> tuple[int | None, int | None]:
    """A period from dates or times (the end inclusive: ``--to 2026-03-01`` covers that day);
    ValueError naming the bad bound."""
    lo = hi = None
    if start:
        try:
            lo = fhir_range(start, zone)[0]
        except ValueError:
            raise ValueError(f"from: {start!r} is not a date (YYYY-MM-DD) or time") from None
    if end:
        try:
            hi = fhir_range(end, zone)[1]
        except ValueError:
            raise ValueError(f"to: {end!r} is not a date (YYYY-MM-DD) or time") from None
    if lo is not None and hi is not None and lo > hi:
        raise ValueError(f"from ({start}) is after to ({end})")
    return lo, hi


def accesses(
    conn: Connection, patient_id: str, start: int | None = None, end: int | None = None
) -> Iterator[Access]:
    """The audit events naming ``Patient/patient_id``, oldest first (times in µs, inclusive)."""
    chain, named = audit_chain_table.c, audit_patient_table.c
    stmt = (
        select(chain.content)
        .select_from(audit_patient_table.join(audit_chain_table, chain.seq == named.seq))
        .where(named.patient_id == patient_id, chain.content.is_not(None))
        .order_by(named.recorded, named.seq)
    )
    if start is not None:
        stmt = stmt.where(named.recorded >= start)
    if end is not None:
        stmt = stmt.where(named.recorded <= end)
    for (content,) in conn.execute(stmt):
        yield _access(orjson.loads(bytes(content)))


def as_json(national_id: str, items: list[Access], start: str | None, end: str | None) -> bytes:
    return orjson.dumps(
        {
            "patient": national_id,
            "from": start,
            "to": end,
            "count": len(items),
            "accesses": [asdict(a) for a in items],
        }
    )


def norwegian_time(recorded: str, zone: str) -> str:
    """``dd.mm.yyyy kl. HH:MM`` in Norwegian local time."""
    try:
        t = from_micros(fhir_range(recorded, zone)[0]).astimezone(ZoneInfo(zone))
    except ValueError:
        return recorded
    return t.strftime("%d.%m.%Y kl. %H:%M")


def as_html(
    national_id: str,
    items: list[Access],
    start: str | None,
    end: str | None,
    zone: str,
) -> str:
    """A printable page in bokmål."""
    e = html.escape
    span = ""
    if start or end:
        span = f" i perioden {e(start or '…')} – {e(end or '…')}"
    rows = []
    for a in items:
        who = e(a.name) + (f"<br><small>HPR-nr. {e(a.hpr)}</small>" if a.hpr else "")
        if a.role:
            who += f"<br><small>{e(a.role)}</small>"
        kind = "<strong>Nødrett</strong>" if a.emergency else "Normal"
        rows.append(
            "<tr>"
            f"<td>{e(norwegian_time(a.time, zone))}</td>"
            f"<td>{who}</td>"
            f"<td>{e(a.organisation or '–')}</td>"
            f"<td>{e(ACTION_BOKMAL.get(_code(a.action), a.action))}: {e(a.what)}</td>"
            f"<td>{kind}</td>"
            f"<td>{'Ja' if a.granted else 'Nei (avvist)'}</td>"
            "</tr>"
        )
    body = (
        "<table><thead><tr><th>Tidspunkt</th><th>Hvem</th><th>Virksomhet</th>"
        "<th>Hva ble sett eller gjort</th><th>Type tilgang</th><th>Innvilget</th></tr></thead>"
        f"<tbody>{''.join(rows)}</tbody></table>"
        if rows
        else "<p>Ingen har sett eller endret opplysningene dine i denne perioden.</p>"
    )
    made = datetime.now(ZoneInfo(zone)).strftime("%d.%m.%Y kl. %H:%M")
    return (
        '<!DOCTYPE html><html lang="nb"><head><meta charset="utf-8">'
        "<title>Innsyn i logg: hvem har sett journalen din</title>"
        "<style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse;"
        "width:100%}th,td{border:1px solid #999;padding:.3em .5em;text-align:left;"
        "vertical-align:top}th{background:#eee}@media print{body{margin:0}}</style>"
        "</head><body>"
        "<h1>Hvem har sett journalen din</h1>"
        f"<p>Oversikt over hvem som har lest, søkt i eller endret opplysninger om pasient med "
        f"fødselsnummer {e(national_id)}{span} i tjenesten for digital hjemmeoppfølging. "
        f"Antall oppføringer: {len(items)}.</p>"
        "<p><em>Nødrett</em> betyr at helsepersonell har gitt seg selv tilgang fordi det var "
        "nødvendig for å gi deg øyeblikkelig hjelp (helsepersonelloven § 7).</p>"
        f"{body}"
        f"<p><small>Laget {e(made)}. Tidspunkter er norsk tid.</small></p>"
        "</body></html>"
    )


def _code(action: str) -> str:
    return {v: k for k, v in ACTION_NAMES.items()}.get(action, action)


class PatientNotFound(LookupError):
    """No such patient (the message says why, in the terms of the number given)."""

    def __init__(self, message: str, *, invalid: bool = False) -> None:
        super().__init__(message)
        self.invalid = invalid


def find_patient(conn: Connection, national_id: str) -> str:
    """The Patient id for a fødselsnummer/D-nummer; PatientNotFound when invalid or unknown."""
    from interop.identifiers import person_id_system
    from interop.patients import patient_by_identifier

    system = person_id_system(national_id)
    if system is None:
        raise PatientNotFound(
            f"{national_id!r} is not a valid fødselsnummer or D-nummer", invalid=True
        )
    pid = patient_by_identifier(conn, system, national_id)
    if pid is None:
        raise PatientNotFound(f"no Patient with fødselsnummer/D-nummer {national_id}")
    return pid
