"""Whose name an authenticated caller may deliver KITH messages in.

A message posted by a caller (``POST /api/v1/messages/inbound``) names its sender in the
MsgHead (an AppRec in its ``Sender``): an organisation, perhaps a unit under it, perhaps a
person (*HealthcareProfessional*) there, each with a HER-id. Its AppRec goes to that sender
and what it says is stored as coming from it, so the caller must be that sender:

* the caller's HER-ids are its own, those of the organisations in the address book with its
  org.nr or HER-id and of the organisations under them (``Organization.partOf``), and those
  of the PractitionerRoles there (or of its HPR number);
* going from the most specific level of the sender (person, unit, organisation) up, the first
  HER-id that is the caller's or that the address book knows decides: the caller's, taken;
  someone else's, refused. Levels nobody knows (a new GP, a unit not registered here) are
  passed over, so they can only stand under the caller's own organisation; the organisations
  above the caller's level are its parents and are not checked. A sender with no HER-id the
  caller has is refused.

Admins (operators) may deliver any message. The file-drop folders and the EDI 2.0
Meldingstjener are channels with their own trust and are not checked here (see
:mod:`interop.messaging.inbound`).
"""

from __future__ import annotations

from sqlalchemy import Connection, select

from interop.access.actor import Actor
from interop.identifiers import HERID_OID, HPR_OID, ORGNR_OID
from interop.store.relations import referrers
from interop.store.schema import resource_table, token_table
from plo_messages.model import Organisation


def _with_identifier(conn: Connection, rtype: str, system: str, value: str) -> set[str]:
    return {
        r[0]
        for r in conn.execute(
            select(token_table.c.res_id)
            .join(
                resource_table,
                (resource_table.c.res_type == token_table.c.res_type)
                & (resource_table.c.res_id == token_table.c.res_id),
            )
            .where(
                token_table.c.res_type == rtype,
                token_table.c.param == "identifier",
                token_table.c.system == system,
                token_table.c.code == value,
                resource_table.c.deleted.is_(False),
            )
        )
    }


def _her_ids(conn: Connection, rtype: str, ids: set[str]) -> set[str]:
    if not ids:
        return set()
    return {
        r[0]
        for r in conn.execute(
            select(token_table.c.code).where(
                token_table.c.res_type == rtype,
                token_table.c.param == "identifier",
                token_table.c.system == HERID_OID,
                token_table.c.res_id.in_(sorted(ids)),
            )
        )
    }


def caller_organisations(conn: Connection, actor: Actor) -> set[str]:
    """Ids of the caller's Organizations: those with its org.nr or HER-id, and their parts."""
    orgs: set[str] = set()
    if actor.orgnr:
        orgs |= _with_identifier(conn, "Organization", ORGNR_OID, actor.orgnr)
    if actor.herid:
        orgs |= _with_identifier(conn, "Organization", HERID_OID, actor.herid)
    frontier = set(orgs)
    while frontier:
        children = referrers(
            conn, "Organization", "partof", {f"Organization/{o}" for o in frontier}
        )
        frontier = children - orgs
        orgs |= frontier
    return orgs


def _levels(sender: Organisation) -> tuple[list[str], str | None]:
    """The organisation-level HER-ids, outermost first, and the person-level one."""
    orgs: list[str] = []
    person: str | None = None
    node: Organisation | None = sender
    while node is not None:
        if node.her_id:
            orgs.append(node.her_id)
        if node.person is not None and node.person.ident("HER"):
            person = node.person.ident("HER")
        node = node.unit
    return orgs, person


def refusal(conn: Connection, actor: Actor, sender: Organisation) -> str | None:
    """Why the caller may not deliver a message from this sender (None: it may)."""
    if actor.is_admin:
        return None
    orgs, person = _levels(sender)
    levels = [*orgs, *([person] if person else [])]
    named = ", ".join(levels) or "ingen"
    refused = f"avsenderen i meldingen (HER-id {named}) er ikke innsenderens egen virksomhet"
    mine = caller_organisations(conn, actor)
    roles = referrers(conn, "PractitionerRole", "organization", {f"Organization/{o}" for o in mine})
    if actor.hpr:
        practitioners = _with_identifier(conn, "Practitioner", HPR_OID, actor.hpr)
        roles |= referrers(
            conn, "PractitionerRole", "practitioner", {f"Practitioner/{p}" for p in practitioners}
        )
    own = _her_ids(conn, "Organization", mine) | _her_ids(conn, "PractitionerRole", roles)
    if actor.herid:
        own.add(actor.herid)
    # from the most specific level up: the first HER-id the caller or the address book knows
    # decides; levels nobody knows (a new GP, a unit not registered) are passed over
    for her in reversed(levels):
        if her in own:
            return None
        if _with_identifier(conn, "Organization", HERID_OID, her) or _with_identifier(
            conn, "PractitionerRole", HERID_OID, her
        ):
            return refused
    return refused
