"""What ``outbox reprocess`` must not send.

* A KITH message names its receiver in the MsgHead (and the patient's data is for that receiver):
  sent again to another destination, that destination must be the named receiver's own Endpoint.
  A message is not readdressed here; for another receiver it is made anew.
* A message held because the patient's GP changed (:mod:`interop.routing.gp_change`) is not sent
  again at all: to the former GP it would go to someone no longer the patient's GP, to the new GP
  it would name the former one. It is made anew for the new GP.
"""

from __future__ import annotations

from typing import Any

from lxml import etree
from sqlalchemy import Connection

from interop.messaging.addressbook import find_by_her_id, managed_endpoints, resource_json
from interop.routing.gp_change import GP_CHANGED
from interop.store.repository import FhirStore


class CannotReprocess(ValueError):
    """The message may not be sent again as asked (the text says why and what to do)."""


def msghead_her_ids(document: bytes, party: str = "Sender") -> list[str]:
    """HER-ids of the MsgHead's sender (or receiver), outermost first; ValueError when the
    document is not XML."""
    parser = etree.XMLParser(
        resolve_entities=False, no_network=True, load_dtd=False, huge_tree=True
    )
    try:
        root = etree.fromstring(document, parser)
    except etree.XMLSyntaxError as exc:
        raise ValueError(f"the business document is not XML: {exc}") from None
    ids: Any = root.xpath(
        f"(//*[local-name()='MsgInfo']/*[local-name()='{party}'])[1]"
        "//*[local-name()='Id'][../*[local-name()='TypeId'][@V='HER']]/text()"
    )
    return [str(i).strip() for i in ids]


def _endpoints_of(store: FhirStore, conn: Connection, her_id: str) -> set[str]:
    """Every Endpoint the holders of this HER-id are reached at (their own, a role's practice's,
    an organisation's managed ones), active or not."""
    out: set[str] = set()
    for ref in find_by_her_id(conn, her_id):
        holder = resource_json(store, conn, ref)
        if holder is None:
            continue
        orgs = [holder] if holder["resourceType"] == "Organization" else []
        if holder["resourceType"] == "PractitionerRole":
            org = resource_json(store, conn, (holder.get("organization") or {}).get("reference"))
            orgs += [org] if org is not None else []
        for h in [holder, *orgs]:
            out |= {str(e.get("reference")) for e in h.get("endpoint") or []}
        for org in orgs:
            out |= set(managed_endpoints(conn, org["id"]))
    return out


def check_reprocess(store: FhirStore, conn: Connection, row: Any, destination: str) -> None:
    """Raise :class:`CannotReprocess` when ``row`` may not be sent again to ``destination``."""
    if row.status == "dead" and (row.last_error or "").startswith(GP_CHANGED):
        raise CannotReprocess(
            f"message {row.id} was held: {row.last_error}. It is not sent again, neither to "
            "the former GP nor readdressed"
        )
    if destination == row.destination or not row.content_type.endswith("xml"):
        return
    try:
        receivers = msghead_her_ids(bytes(row.payload), "Receiver")
    except ValueError:
        return
    if not receivers:
        return
    her = receivers[-1]
    if destination not in _endpoints_of(store, conn, her):
        raise CannotReprocess(
            f"message {row.id} names HER-id {her} as its receiver (MsgHead), and {destination} "
            "is not that receiver's Endpoint in the address book: a message is not readdressed "
            "(to send it to this receiver elsewhere, put the Endpoint on its Organization or "
            "PractitionerRole first; for another receiver, make it anew)"
        )
