"""Composing the follow-up centre's PLO *Helseopplysninger til lege* for the patient's GP.

Type 3 *Ønske om legevurdering* reports a red/yellow deviation: what was measured, when, against
which zones of the self-management plan, with the plan's advice for that zone. Type 2
*Statusrapport* is the periodic summary. Both carry the latest values and trends of the GP view
as text and its trend chart as a PDF attachment.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import Connection

from interop.messaging.addressbook import (
    Recipient,
    gp_of_patient,
    patient_info,
    sender_for_patient,
)
from interop.messaging.responsible import responsible_for_report
from interop.store.repository import FhirStore
from interop.text import number, plural, quantity, unit
from interop.views.chart_pdf import render_pdf
from interop.views.summary import compute, view_definition
from plo_messages import KithMessages
from plo_messages.content import (
    HelseopplysningerTilLege,
    JournalText,
    build_helseopplysninger_til_lege,
)
from plo_messages.model import Attachment, Coded, Header
from plo_messages.msghead import local_timestamp

HEADINGS = "2.16.578.1.12.4.1.1.9142"
"""Kodeverk 9142: headings of a journal text (PROB = current problem, FU = findings)."""
CONTENT_TYPES = {"3": "Ønske om legevurdering", "2": "Statusrapport"}
ZONE_NO = {"red": "rødt", "yellow": "gult", "green": "grønt", "not-assessed": "ikke vurdert"}


@dataclass(frozen=True, slots=True)
class ComposedMessage:
    msg_id: str
    payload: bytes
    recipient: Recipient
    kind: str
    type_code: str


def _range_text(green: list[float | None], unit_code: str) -> str:
    lo, hi = green
    if lo is not None and hi is not None:
        return f"{number(lo)}–{quantity(hi, unit_code)}"
    if lo is not None:
        return f"≥ {quantity(lo, unit_code)}"
    if hi is not None:
        return f"≤ {quantity(hi, unit_code)}"
    return "ingen grense"


def _code_lines(summary: dict[str, Any]) -> list[str]:
    """The summary in Norwegian sentences (display units, decimal comma, plurals)."""
    lines = []
    for c in summary["codes"]:
        unit_code = c["unit"] or ""
        latest = c["latest"]
        zone = f" ({ZONE_NO.get(latest['zone'], latest['zone'])})" if latest.get("zone") else ""
        trend = ""
        if c.get("trendPerWeek") is not None:
            trend = f", trend {number(round(c['trendPerWeek'], 1))} {unit(unit_code)}/uke".replace(
                " /", "/"
            )
        line = (
            f"{c['display']}: siste {quantity(latest['value'], unit_code)}{zone}, "
            f"snitt {quantity(round(c['mean'], 1), unit_code)}, "
            f"min {number(c['min'])}, maks {quantity(c['max'], unit_code)}, "
            f"{plural(c['count'], 'measurement')}{trend}."
        )
        rng = c.get("ranges")
        if rng:
            source = "egenbehandlingsplan" if rng["source"] != "default" else "standardgrenser"
            line += f" Grønn sone ({source}): {_range_text(rng['green'], unit_code)}"
            if rng.get("yellow"):
                line += f", gul: {_range_text(rng['yellow'], unit_code)}"
            line += "."
        lines.append(line)
    ec = summary["eventCount"]
    lines.append(
        f"Avvik i perioden: {ec['red']} røde, {ec['yellow']} gule. "
        f"Etterlevelse av måleplanen: {number(round(summary['adherence'] * 100))} %."
    )
    return lines


def compose_gp_message(
    store: FhirStore,
    conn: Connection,
    kith: KithMessages,
    patient_id: str,
    *,
    content_type: str,
    deviation: dict[str, Any] | None = None,
    zone_name: str = "Europe/Oslo",
    now: datetime | None = None,
) -> ComposedMessage:
    """Build (and schema-validate) a *Helseopplysninger til lege* for the patient's GP.

    ``deviation``: the measurement that caused a type 3 message (``code``, ``display``,
    ``value``, ``unit``, ``zone``, ``time``, ``actions`` from the plan)."""
    stored = store.get("Patient", patient_id, conn)
    if stored is None:
        raise LookupError(f"Patient/{patient_id} not found")
    patient = stored.json()
    recipient = gp_of_patient(store, conn, patient)
    sender, _sender_org = sender_for_patient(store, conn, patient)
    summary = compute(conn, patient_id, view_definition("gp"), now=now, zone_name=zone_name)
    zone = ZoneInfo(zone_name)
    notes = []
    if deviation is not None:
        when = datetime.fromisoformat(str(deviation["time"])).astimezone(zone)
        text = (
            f"{ZONE_NO.get(deviation['zone'], deviation['zone']).capitalize()} avvik i digital "
            f"hjemmeoppfølging: {deviation['display']} {deviation.get('reading') or ''} "
            f"målt {when:%d.%m.%Y kl. %H:%M}."
        )
        if deviation.get("green"):
            source = "egenbehandlingsplanen" if deviation.get("plan") else "standardgrensene"
            text += (
                f" Grønn sone etter {source}: "
                f"{_range_text(deviation['green'], deviation.get('unit') or '')}."
            )
        if deviation.get("action"):
            text += f" Planens tiltak for {ZONE_NO.get(deviation['zone'], '')} sone: {deviation['action']}"
        text += " Oppfølgingssenteret ber om legevurdering."
        notes.append(JournalText(text, Coded("PROB", "Aktuell problemstilling", HEADINGS)))
    notes.append(
        JournalText(
            f"Målinger {summary['period']['start'][:10]} – {summary['period']['end'][:10]}: "
            + " ".join(_code_lines(summary)),
            Coded("FU", "Funn og undersøkelsesresultat", HEADINGS),
        )
    )
    info = patient_info(patient)
    pdf = render_pdf(summary, info.name or "pasient", zone_name)
    msg_id = str(uuid.uuid4())
    header = Header(
        type=Coded("HELSEOPPLYSNINGER_LEGE", "Helseopplysninger til lege"),
        msg_id=msg_id,
        gen_date=local_timestamp(now),
        sender=sender,
        receiver=recipient.organisation,
        patient=info,
    )
    body = HelseopplysningerTilLege(
        Coded(content_type, CONTENT_TYPES[content_type]),
        notes,
        remark="Digital hjemmeoppfølging",
        responsible=responsible_for_report(store, conn, patient_id),
        approved_date=local_timestamp(now)[:10],
    )
    payload = kith.build(
        header,
        build_helseopplysninger_til_lege(body),
        [Attachment("application/pdf", pdf, "Trend siste periode (digital hjemmeoppfølging)")],
    )
    return ComposedMessage(msg_id, payload, recipient, "plo-helseopplysninger-lege", content_type)
