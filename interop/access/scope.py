"""Whose data an actor may see: its patients, the patients whose Consent refuses it, and its
measurement codes, found with a fixed number of queries per request (never one per row).

* admin: every patient; Consent does not bind the operators.
* gp (fastlege, the patient's regular GP): the patients whose ``generalPractitioner`` is the
  GP (the Practitioner with their HPR number, one of its PractitionerRoles, or a
  PractitionerRole with the actor's HER-id). With ``INTEROP_GP_ACCESS=practice`` also the
  patients of every GP at the practice (Organization with the actor's org.nr/HER-id, its
  parts and their PractitionerRoles). A GP actor without an HPR number is the practice's
  system and sees the practice's patients.
* followup, epj: patients managed by their organisation or one of its parts
  (``Patient.managingOrganization``, following ``Organization.partOf``).
* hospital: patients with an active EpisodeOfCare managed by, or an active CareTeam with, its
  organisation.
* vendor: the patients linked to it (``/api/v1/patient-links``); it writes, never reads.

A patient's active Consent whose deny provision names the actor — its Practitioner, one of
its PractitionerRoles, its Organization or a parent of it, a CareTeam it is in, or (for a
vendor) its Organization or one of its Devices — takes that patient out of the actor's scope.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import orjson
from sqlalchemy import Connection, or_, select

from adapters.base import vendor_user_system
from interop.access.actor import Actor
from interop.fhir.dates import now_utc, to_micros
from interop.mapping.views import view_definition
from interop.store.relations import referrers, targets, with_tokens
from interop.store.schema import emergency_access_table, patient_link_table, resource_table

HPR = "urn:oid:2.16.578.1.12.4.1.4.4"
ORGNR = "urn:oid:2.16.578.1.12.4.1.4.101"
HERID = "urn:oid:2.16.578.1.12.4.1.2"


@dataclass(frozen=True, slots=True)
class PatientScope:
    """The patients an actor may reach, decided once per request."""

    patients: frozenset[str] | None
    """Patient ids in the actor's care relation (None: every patient, the admin)."""
    denied: dict[str, str]
    """Patient id → why a Consent refuses this actor."""
    codes: frozenset[str] | None
    """LOINC codes of the actor's view (None: every code)."""
    emergency: dict[str, int] = field(default_factory=dict)
    """Patient id → until when (epoch µs) the actor has opened the record by *nødrett*."""

    def in_emergency(self, patient_id: str) -> bool:
        """Whether the actor reaches the patient now only by emergency access."""
        until = self.emergency.get(patient_id)
        return until is not None and until > to_micros(now_utc())

    def refusal(self, patient_id: str) -> str | None:
        """None when the actor may reach the patient, else the reason. Emergency access opens
        the record whatever the care relation or Consent says (and is audited as such)."""
        if self.emergency and self.in_emergency(patient_id):
            return None
        if self.patients is not None and patient_id not in self.patients:
            return "not-related"
        return self.denied.get(patient_id)

    @property
    def reachable(self) -> frozenset[str] | None:
        """The patients the actor may reach (None: every patient)."""
        if self.patients is None:
            return None
        opened = {p for p in self.emergency if self.in_emergency(p)}
        return frozenset(p for p in self.patients if p not in self.denied) | opened


def _own_orgs(conn: Connection, actor: Actor) -> set[str]:
    codes = [(ORGNR, actor.orgnr)] if actor.orgnr else []
    codes += [(HERID, actor.herid)] if actor.herid else []
    return with_tokens(conn, "Organization", "identifier", codes)


def org_tree(conn: Connection, actor: Actor) -> set[str]:
    """The actor's organisations and all their parts (``partOf`` downwards)."""
    orgs = _own_orgs(conn, actor)
    frontier = set(orgs)
    while frontier:
        children = referrers(
            conn, "Organization", "partof", (f"Organization/{o}" for o in frontier)
        )
        frontier = children - orgs
        orgs |= frontier
    return orgs


def _org_ancestry(conn: Connection, actor: Actor) -> set[str]:
    """The actor's organisations and their parents (``partOf`` upwards)."""
    orgs = _own_orgs(conn, actor)
    frontier = set(orgs)
    while frontier:
        parents = {
            t.split("/", 1)[1]
            for t in targets(conn, "Organization", "partof", frontier)
            if t.startswith("Organization/")
        }
        frontier = parents - orgs
        orgs |= frontier
    return orgs


def _practitioners(conn: Connection, actor: Actor) -> set[str]:
    return with_tokens(conn, "Practitioner", "identifier", [(HPR, actor.hpr)] if actor.hpr else [])


def _gp_targets(conn: Connection, actor: Actor, practice_wide: bool) -> set[str]:
    practitioners = _practitioners(conn, actor)
    roles = referrers(
        conn, "PractitionerRole", "practitioner", (f"Practitioner/{p}" for p in practitioners)
    )
    if actor.herid:
        roles |= with_tokens(conn, "PractitionerRole", "identifier", [(HERID, actor.herid)])
    targets = {f"Practitioner/{p}" for p in practitioners}
    if practice_wide or not actor.hpr:
        orgs = org_tree(conn, actor)
        roles |= referrers(
            conn, "PractitionerRole", "organization", (f"Organization/{o}" for o in orgs)
        )
        targets |= {f"Organization/{o}" for o in orgs}
    return targets | {f"PractitionerRole/{r}" for r in roles}


def related_patients(conn: Connection, actor: Actor, *, gp_practice_wide: bool) -> set[str] | None:
    """The patients in the actor's care relation (None = all)."""
    if actor.is_admin:
        return None
    if actor.role == "gp":
        return referrers(
            conn, "Patient", "general-practitioner", _gp_targets(conn, actor, gp_practice_wide)
        )
    if actor.role in ("followup", "epj"):
        return referrers(
            conn, "Patient", "organization", (f"Organization/{o}" for o in org_tree(conn, actor))
        )
    if actor.role == "hospital":
        orgs = {f"Organization/{o}" for o in org_tree(conn, actor)}
        episodes = referrers(conn, "EpisodeOfCare", "organization", orgs) & with_tokens(
            conn, "EpisodeOfCare", "status", [("", "active")]
        )
        teams = referrers(conn, "CareTeam", "participant", orgs) & with_tokens(
            conn, "CareTeam", "status", [("", "active")]
        )
        found: set[str] = set()
        for rtype, ids in (("EpisodeOfCare", episodes), ("CareTeam", teams)):
            found |= {
                t.split("/", 1)[1]
                for t in targets(conn, rtype, "patient", ids)
                if t.startswith("Patient/")
            }
        return found
    if actor.role == "vendor":
        # its own user-id namespace and the sub-namespaces under it (``…:<oid>``), as the
        # ingest doors count them (interop.access.vendor_writes)
        system = vendor_user_system(actor.orgnr or actor.id)
        link = patient_link_table.c
        return {
            r[0]
            for r in conn.execute(
                select(link.patient_id).where(
                    or_(
                        link.system == system, link.system.startswith(system + ":", autoescape=True)
                    )
                )
            )
        }
    return set()


def actor_references(conn: Connection, actor: Actor) -> set[str]:
    """Every reference a Consent may use to name this actor."""
    practitioners = _practitioners(conn, actor)
    orgs = _org_ancestry(conn, actor)
    refs = {f"Practitioner/{p}" for p in practitioners} | {f"Organization/{o}" for o in orgs}
    roles = referrers(
        conn,
        "PractitionerRole",
        "practitioner",
        set(refs) & {f"Practitioner/{p}" for p in practitioners},
    )
    if actor.herid:
        roles |= with_tokens(conn, "PractitionerRole", "identifier", [(HERID, actor.herid)])
    refs |= {f"PractitionerRole/{r}" for r in roles}
    if actor.role == "vendor":
        refs |= {
            f"Device/{d}"
            for d in referrers(conn, "Device", "organization", (f"Organization/{o}" for o in orgs))
        }
    # a CareTeam the actor (its practitioner, a role of it, or its organisation) is in
    refs |= {f"CareTeam/{t}" for t in referrers(conn, "CareTeam", "participant", set(refs))}
    return refs


def consent_denials(conn: Connection, actor: Actor) -> dict[str, str]:
    """Patient id → reason, for every active deny Consent naming the actor."""
    mine = actor_references(conn, actor)
    consents = referrers(conn, "Consent", "actor", mine)
    if not consents:
        return {}
    consents &= with_tokens(conn, "Consent", "status", [("", "active")])
    if not consents:
        return {}
    denied: dict[str, str] = {}
    for rid, content in conn.execute(
        select(resource_table.c.res_id, resource_table.c.content).where(
            resource_table.c.res_type == "Consent",
            resource_table.c.res_id.in_(sorted(consents)),
            resource_table.c.deleted.is_(False),
        )
    ):
        consent = orjson.loads(content)
        provision = consent.get("provision") or {}
        if provision.get("type") != "deny":
            continue
        named = {
            a.get("reference", {}).get("reference")
            for a in provision.get("actor") or []
            if isinstance(a, dict) and isinstance(a.get("reference"), dict)
        }
        hit = sorted(r for r in named if r in mine)
        patient = ((consent.get("patient") or {}).get("reference") or "").removeprefix("Patient/")
        if hit and patient:
            denied[patient] = f"Consent/{rid} of Patient/{patient} denies {', '.join(hit)}"
    return denied


def code_scope(actor: Actor) -> frozenset[str] | None:
    """LOINC codes the actor's view allows (None = all), like a SMART ``code:in`` scope."""
    if actor.is_admin or actor.role in ("followup", "vendor"):
        return None
    try:
        codes = view_definition(actor.role).codes
    except KeyError:
        return frozenset()
    return frozenset(codes) if codes else None


def emergency_openings(conn: Connection, actor: Actor) -> dict[str, int]:
    """Patient id → end (epoch µs) of the actor's emergency accesses still running."""
    e = emergency_access_table.c
    now = to_micros(now_utc())
    out: dict[str, int] = {}
    for pid, end in conn.execute(
        select(e.patient_id, e.end).where(e.actor_id == actor.id, e.end > now, e.start <= now)
    ):
        out[pid] = max(out.get(pid, 0), int(end))
    return out


def patient_scope(conn: Connection, actor: Actor, *, gp_practice_wide: bool) -> PatientScope:
    if actor.is_admin:
        return PatientScope(None, {}, None)
    return PatientScope(
        patients=frozenset(related_patients(conn, actor, gp_practice_wide=gp_practice_wide) or ()),
        denied=consent_denials(conn, actor),
        codes=code_scope(actor),
        emergency=emergency_openings(conn, actor),
    )
