"""The address book is FHIR: Organization, PractitionerRole and Endpoint resources.

* The patient's GP: ``Patient.generalPractitioner`` → PractitionerRole (HER-id of the GP) →
  its Organization (the practice, HER-id) → the Endpoint on the role, on the organisation, or
  managed by the organisation.
* Us, the sender: ``Patient.managingOrganization`` (the follow-up centre, HER-id) and its
  ``partOf`` parent (the municipality).
* Our own HER-ids, for incoming messages: every organisation that manages a patient, with its
  parents, plus ``INTEROP_LOCAL_HER_IDS``.

An Endpoint's ``connectionType`` (CodeSystem ``https://dho-interop.no/fhir/CodeSystem/transport``)
names the transport; its ``address`` is where to deliver.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, select

from interop.identifiers import HERID_OID, HPR_OID, ORGNR_OID
from interop.store.repository import FhirStore
from interop.store.schema import reference_table, resource_table, token_table
from plo_messages.model import HealthcareProfessional, Ident, Organisation, PatientInfo

TRANSPORT_SYSTEM = "https://dho-interop.no/fhir/CodeSystem/transport"
"""The code system of an Endpoint's ``connectionType``: the transport its messages take."""

FNR_OID = "urn:oid:2.16.578.1.12.4.1.4.1"
DNR_OID = "urn:oid:2.16.578.1.12.4.1.4.2"


INACTIVE_REASON = "https://dho-interop.no/fhir/StructureDefinition/endpoint-inactive-reason"
"""Extension on an Endpoint switched off: why (e.g. its HER-id left Adresseregisteret)."""


class AddressError(LookupError):
    """The address book cannot say where a message should go (the reason says what is missing)."""


@dataclass(frozen=True, slots=True)
class Destination:
    endpoint: str
    """``Endpoint/{id}``"""
    transport: str
    address: str


@dataclass(frozen=True, slots=True)
class Recipient:
    organisation: Organisation
    """As MsgHead wants it: organisation, optionally the GP person inside."""
    destination: Destination
    reference: str
    """``PractitionerRole/{id}`` or ``Organization/{id}``"""


def resource_json(store: FhirStore, conn: Connection, ref: str | None) -> dict[str, Any] | None:
    """The current JSON of ``Type/id`` (None when absent or deleted)."""
    if not ref or "/" not in ref:
        return None
    rtype, rid = ref.split("/", 1)
    found = store.get(rtype, rid, conn)
    return found.json() if found is not None and not found.deleted else None


def _ident(resource: dict[str, Any], system: str) -> str | None:
    for i in resource.get("identifier", []):
        if i.get("system") == system and i.get("value"):
            return str(i["value"])
    return None


def destination_of(endpoint: dict[str, Any]) -> Destination | None:
    ct = endpoint.get("connectionType") or {}
    if endpoint.get("status", "active") != "active" or ct.get("system") != TRANSPORT_SYSTEM:
        return None
    if not ct.get("code") or not endpoint.get("address"):
        return None
    return Destination(f"Endpoint/{endpoint['id']}", str(ct["code"]), str(endpoint["address"]))


def managed_endpoints(conn: Connection, org_id: str) -> list[str]:
    rows = conn.execute(
        select(reference_table.c.res_id)
        .where(
            reference_table.c.res_type == "Endpoint",
            reference_table.c.param == "organization",
            reference_table.c.target == f"Organization/{org_id}",
        )
        .order_by(reference_table.c.res_id)
    ).all()
    return [f"Endpoint/{r[0]}" for r in rows]


def endpoint_for(
    store: FhirStore, conn: Connection, *holders: dict[str, Any] | None
) -> Destination | None:
    """The first usable Endpoint named by the holders (role, organisation) or managed by the
    organisation."""
    for holder in holders:
        if holder is None:
            continue
        for ref in holder.get("endpoint", []):
            ep = resource_json(store, conn, ref.get("reference"))
            dest = destination_of(ep) if ep else None
            if dest:
                return dest
    for holder in holders:
        if holder is not None and holder.get("resourceType") == "Organization":
            for ref in managed_endpoints(conn, holder["id"]):
                ep = resource_json(store, conn, ref)
                dest = destination_of(ep) if ep else None
                if dest:
                    return dest
    return None


def _org_idents(org: dict[str, Any]) -> list[Ident]:
    out = []
    her = _ident(org, HERID_OID)
    if her:
        out.append(Ident(her, "HER"))
    orgnr = _ident(org, ORGNR_OID)
    if orgnr:  # the organisation number too, as the KITH examples carry it
        out.append(Ident(orgnr, "ENH"))
    return out


def _human_name(resource: dict[str, Any]) -> tuple[str | None, str | None]:
    names = resource.get("name") or []
    if not names:
        return None, None
    n = next((x for x in names if x.get("use") == "official"), names[0])
    given = " ".join(n.get("given", [])) or None
    return n.get("family"), given


def _inactive_reason(store: FhirStore, conn: Connection, holder: dict[str, Any]) -> str | None:
    """Why the holder's Endpoint was switched off, if it says."""
    for ref in holder.get("endpoint", []):
        ep = resource_json(store, conn, ref.get("reference"))
        for ext in (ep or {}).get("extension", []):
            if ext.get("url") == INACTIVE_REASON and ext.get("valueString"):
                return str(ext["valueString"])
    return None


def gp_of_patient(store: FhirStore, conn: Connection, patient: dict[str, Any]) -> Recipient:
    """The patient's GP as a message recipient, or :class:`AddressError` saying what is missing."""
    refs = [g.get("reference", "") for g in patient.get("generalPractitioner", [])]
    if not refs:
        raise AddressError("the patient has no generalPractitioner")
    last_problem = ""
    for ref in refs:
        target = resource_json(store, conn, ref)
        if target is None:
            last_problem = f"{ref} not found"
            continue
        if target["resourceType"] == "PractitionerRole":
            org = resource_json(store, conn, (target.get("organization") or {}).get("reference"))
            if org is None:
                last_problem = f"{ref} has no organization"
                continue
            practitioner = resource_json(
                store, conn, (target.get("practitioner") or {}).get("reference")
            )
            family, given = _human_name(practitioner or {})
            person_idents = []
            her = _ident(target, HERID_OID)
            if her:
                person_idents.append(Ident(her, "HER"))
            hpr = _ident(practitioner or {}, HPR_OID)
            if hpr and not her:
                person_idents.append(Ident(hpr, "HPR"))
            organisation = Organisation(
                org.get("name", ""),
                _org_idents(org),
                person=HealthcareProfessional(family, given, idents=person_idents)
                if person_idents
                else None,
            )
            dest = endpoint_for(store, conn, target)
            gone = _inactive_reason(store, conn, target) if dest is None else None
            if gone is None and dest is None:
                dest = endpoint_for(store, conn, org)
        elif target["resourceType"] == "Organization":
            organisation = Organisation(target.get("name", ""), _org_idents(target))
            dest = endpoint_for(store, conn, target)
        else:
            last_problem = f"{ref} is a {target['resourceType']}"
            continue
        if not organisation.addressed_her_id:
            last_problem = f"{ref}: no HER-id for the GP or the practice"
            continue
        if dest is None:
            last_problem = f"{ref}: no active Endpoint with a transport for the GP"
            why = _inactive_reason(store, conn, target)
            if why:
                last_problem += f": {why}"
            continue
        return Recipient(organisation, dest, ref)
    raise AddressError(last_problem)


def sender_for_patient(
    store: FhirStore, conn: Connection, patient: dict[str, Any]
) -> tuple[Organisation, dict[str, Any]]:
    """The follow-up centre managing the patient (inside its parent organisation, if any)."""
    org = resource_json(store, conn, (patient.get("managingOrganization") or {}).get("reference"))
    if org is None:
        raise AddressError("the patient has no managingOrganization (the sender)")
    unit = Organisation(org.get("name", ""), _org_idents(org))
    if not unit.her_id:
        raise AddressError(f"Organization/{org['id']} (the sender) has no HER-id")
    parent = resource_json(store, conn, (org.get("partOf") or {}).get("reference"))
    if parent is not None and _ident(parent, HERID_OID):
        return Organisation(parent.get("name", ""), _org_idents(parent), unit=unit), org
    return unit, org


def patient_info(patient: dict[str, Any]) -> PatientInfo:
    family, given = _human_name(patient)
    fnr = _ident(patient, FNR_OID)
    dnr = _ident(patient, DNR_OID)
    return PatientInfo(
        fnr or dnr,
        "FNR" if fnr else "DNR",
        family_name=family,
        given_name=given,
    )


def own_her_ids(conn: Connection, configured: list[str] | None = None) -> set[str]:
    """HER-ids we answer for: organisations managing patients (and their parents)."""
    managing = (
        select(reference_table.c.target)
        .where(reference_table.c.res_type == "Patient", reference_table.c.param == "organization")
        .distinct()
    )
    org_ids = {
        t.split("/", 1)[1] for (t,) in conn.execute(managing) if t.startswith("Organization/")
    }
    parents = conn.execute(
        select(reference_table.c.target).where(
            reference_table.c.res_type == "Organization",
            reference_table.c.param == "partof",
            reference_table.c.res_id.in_(org_ids),
        )
    ).all()
    org_ids |= {t.split("/", 1)[1] for (t,) in parents if t.startswith("Organization/")}
    rows = conn.execute(
        select(token_table.c.code).where(
            token_table.c.res_type == "Organization",
            token_table.c.param == "identifier",
            token_table.c.system == HERID_OID,
            token_table.c.res_id.in_(org_ids),
        )
    ).all()
    return {r[0] for r in rows} | set(configured or [])


def find_by_her_id(conn: Connection, her_id: str) -> list[str]:
    """``Organization/…`` and ``PractitionerRole/…`` carrying this HER-id."""
    rows = conn.execute(
        select(token_table.c.res_type, token_table.c.res_id)
        .join(
            resource_table,
            (resource_table.c.res_type == token_table.c.res_type)
            & (resource_table.c.res_id == token_table.c.res_id),
        )
        .where(
            token_table.c.res_type.in_(("Organization", "PractitionerRole")),
            token_table.c.param == "identifier",
            token_table.c.system == HERID_OID,
            token_table.c.code == her_id,
            resource_table.c.deleted.is_(False),
        )
    ).all()
    return [f"{t}/{i}" for t, i in rows]


def destination_for_her_ids(
    store: FhirStore, conn: Connection, her_ids: list[str]
) -> Destination | None:
    """Where to send a message (an AppRec, say) for a party known by its HER-ids, most
    specific first."""
    for her in reversed(her_ids):
        for ref in find_by_her_id(conn, her):
            holder = resource_json(store, conn, ref)
            if holder is None:
                continue
            org = None
            if holder["resourceType"] == "PractitionerRole":
                org = resource_json(
                    store, conn, (holder.get("organization") or {}).get("reference")
                )
            dest = endpoint_for(store, conn, holder, org)
            if dest:
                return dest
    return None


def file_drop_folders(store: FhirStore, conn: Connection) -> list[tuple[str, str]]:
    """(Endpoint reference, address) of every active file-drop Endpoint."""
    return endpoints_of_type(store, conn, "file-drop")


def endpoints_of_type(store: FhirStore, conn: Connection, transport: str) -> list[tuple[str, str]]:
    """(Endpoint reference, address) of every active Endpoint of this ``connectionType``."""
    rows = conn.execute(
        select(token_table.c.res_id).where(
            token_table.c.res_type == "Endpoint",
            token_table.c.param == "connection-type",
            token_table.c.system == TRANSPORT_SYSTEM,
            token_table.c.code == transport,
        )
    ).all()
    out = []
    for (rid,) in rows:
        ep = resource_json(store, conn, f"Endpoint/{rid}")
        dest = destination_of(ep) if ep else None
        if dest is not None:
            out.append((dest.endpoint, dest.address))
    return sorted(out)
