"""Who answers for a report to the GP (PLO *AnsvarForRapport*): the patient's primary contact
in the follow-up service, with profession, HPR-nummer and a phone the GP can call.

The primary contact is the participant of the patient's active CareTeam whose role is
*Primærkontakt* (kodeverk 9034, code 9) — as in the official HTL 1.6 example. The phone is the
PractitionerRole's (work) phone, else the Practitioner's. Without a registered primary contact
the report carries no AnsvarForRapport (it is optional in the schema); the sender organisation
is then the only contact.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection

from interop.identifiers import HPR_OID
from interop.messaging.addressbook import resource_json
from interop.store.relations import referrers
from interop.store.repository import FhirStore
from plo_messages.model import ROLE_OID, Coded, HealthcareProfessional, Ident

PRIMARY_CONTACT = Coded("9", "Primærkontakt", ROLE_OID)
PROFESSIONS = "2.16.578.1.12.4.1.1.9060"
"""Kodeverk 9060: kategori helsepersonell (SP sykepleier, LE lege, …)."""
DEFAULT_PROFESSION = Coded("SP", "Sykepleier")


def _is_primary_contact(participant: dict[str, Any]) -> bool:
    return any(
        c.get("code") == PRIMARY_CONTACT.v and c.get("system") in (ROLE_OID, f"urn:oid:{ROLE_OID}")
        for role in participant.get("role", [])
        for c in role.get("coding", [])
    )


def _phone(*resources: dict[str, Any] | None) -> str | None:
    for res in resources:
        for t in (res or {}).get("telecom", []):
            if t.get("system") == "phone" and t.get("value"):
                return str(t["value"]).replace(" ", "")
    return None


def _profession(role: dict[str, Any] | None) -> Coded:
    for concept in (role or {}).get("code", []):
        for c in concept.get("coding", []):
            if c.get("system") in (PROFESSIONS, f"urn:oid:{PROFESSIONS}") and c.get("code"):
                return Coded(str(c["code"]), c.get("display"))
    return DEFAULT_PROFESSION


def responsible_for_report(
    store: FhirStore, conn: Connection, patient_id: str
) -> HealthcareProfessional | None:
    """The patient's primary contact as AnsvarligRapport, or None when none is registered."""
    for team_id in sorted(referrers(conn, "CareTeam", "subject", [f"Patient/{patient_id}"])):
        team = resource_json(store, conn, f"CareTeam/{team_id}")
        if team is None or team.get("status", "active") != "active":
            continue
        for participant in team.get("participant", []):
            if not _is_primary_contact(participant):
                continue
            member = resource_json(store, conn, (participant.get("member") or {}).get("reference"))
            if member is None:
                continue
            role = member if member["resourceType"] == "PractitionerRole" else None
            person = (
                resource_json(store, conn, (role.get("practitioner") or {}).get("reference"))
                if role is not None
                else member
            )
            if person is None or person.get("resourceType") != "Practitioner":
                continue
            names = person.get("name") or [{}]
            hpr = next(
                (
                    str(i["value"])
                    for i in person.get("identifier", [])
                    if i.get("system") == HPR_OID and i.get("value")
                ),
                None,
            )
            return HealthcareProfessional(
                family_name=names[0].get("family"),
                given_name=" ".join(names[0].get("given", [])) or None,
                idents=[Ident(hpr, "HPR")] if hpr else [],
                role_to_patient=PRIMARY_CONTACT,
                profession=_profession(role),
                phone=_phone(role, person),
            )
    return None
