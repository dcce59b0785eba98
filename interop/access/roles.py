"""Who may see which patient, per actor role.

* admin: everything.
* gp (fastlege): patients whose ``generalPractitioner`` is the GP (Practitioner with their HPR
  number, or one of its PractitionerRoles) or their practice (Organization / PractitionerRole
  with their org.nr or HER-id).
* followup, epj: patients managed by their organisation or one of its parts
  (``Patient.managingOrganization``, following ``Organization.partOf``).
* hospital: patients with an active EpisodeOfCare managed by their organisation.
* vendor: writes only, for patients linked to the vendor; reads nothing.

Each role's measurement codes come from its view definition (``mappings/views``), like a SMART
``code:in`` scope, and restrict FHIR search and reads of Observations too. Searches are
restricted by adding the allowed patients (and codes) to the query, so totals and paging only
ever count what the actor may see; results are checked once more before they leave.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from urllib.parse import urlencode

import orjson
from sqlalchemy import Connection, select

from adapters.base import vendor_user_system
from interop.access import audit
from interop.access.actor import Actor
from interop.access.policy import AccessPolicy
from interop.fhir.outcome import FhirError, error
from interop.fhir.searchparams import definitions, extract
from interop.services import Services
from interop.store.repository import StoredResource
from interop.store.schema import patient_link_table, reference_table, token_table
from interop.store.search import SearchResult

HPR = "urn:oid:2.16.578.1.12.4.1.4.4"
ORGNR = "urn:oid:2.16.578.1.12.4.1.4.101"
HERID = "urn:oid:2.16.578.1.12.4.1.2"
DIRECTORY = frozenset({"Organization", "Practitioner", "PractitionerRole", "Endpoint"})
ADMIN_ONLY = frozenset({"AuditEvent"})
NO_PATIENT = "__no-patient__"


def _ids(conn: Connection, rtype: str, param: str, codes: list[tuple[str, str]]) -> set[str]:
    out: set[str] = set()
    for system, code in codes:
        out |= {
            r[0]
            for r in conn.execute(
                select(token_table.c.res_id).where(
                    token_table.c.res_type == rtype,
                    token_table.c.param == param,
                    token_table.c.system == system,
                    token_table.c.code == code,
                )
            )
        }
    return out


def _referrers(conn: Connection, rtype: str, param: str, targets: set[str]) -> set[str]:
    if not targets:
        return set()
    return {
        r[0]
        for r in conn.execute(
            select(reference_table.c.res_id).where(
                reference_table.c.res_type == rtype,
                reference_table.c.param == param,
                reference_table.c.target.in_(sorted(targets)),
            )
        )
    }


def _org_tree(conn: Connection, actor: Actor) -> set[str]:
    codes = [(ORGNR, actor.orgnr)] if actor.orgnr else []
    codes += [(HERID, actor.herid)] if actor.herid else []
    orgs = _ids(conn, "Organization", "identifier", codes)
    frontier = set(orgs)
    while frontier:
        children = _referrers(
            conn, "Organization", "partof", {f"Organization/{o}" for o in frontier}
        )
        frontier = children - orgs
        orgs |= frontier
    return orgs


def patients_for(conn: Connection, actor: Actor) -> set[str] | None:
    """The patients an actor may see (None = all)."""
    if actor.is_admin:
        return None
    if actor.role == "gp":
        practitioners = _ids(
            conn, "Practitioner", "identifier", [(HPR, actor.hpr)] if actor.hpr else []
        )
        roles = _referrers(
            conn, "PractitionerRole", "practitioner", {f"Practitioner/{p}" for p in practitioners}
        )
        orgs = _org_tree(conn, actor)
        if actor.herid:
            roles |= _ids(conn, "PractitionerRole", "identifier", [(HERID, actor.herid)])
        roles |= _referrers(
            conn, "PractitionerRole", "organization", {f"Organization/{o}" for o in orgs}
        )
        targets = (
            {f"Practitioner/{p}" for p in practitioners}
            | {f"PractitionerRole/{r}" for r in roles}
            | {f"Organization/{o}" for o in orgs}
        )
        return _referrers(conn, "Patient", "general-practitioner", targets)
    if actor.role in ("followup", "epj"):
        return _referrers(
            conn, "Patient", "organization", {f"Organization/{o}" for o in _org_tree(conn, actor)}
        )
    if actor.role == "hospital":
        orgs = {f"Organization/{o}" for o in _org_tree(conn, actor)}
        # an active EpisodeOfCare it manages, or an active CareTeam that includes it
        episodes = _referrers(conn, "EpisodeOfCare", "organization", orgs) & _ids(
            conn, "EpisodeOfCare", "status", [("", "active")]
        )
        teams = _referrers(conn, "CareTeam", "participant", orgs) & _ids(
            conn, "CareTeam", "status", [("", "active")]
        )
        found: set[str] = set()
        for rtype, ids in (("EpisodeOfCare", episodes), ("CareTeam", teams)):
            if ids:
                found |= {
                    r[0].split("/", 1)[1]
                    for r in conn.execute(
                        select(reference_table.c.target).where(
                            reference_table.c.res_type == rtype,
                            reference_table.c.param == "patient",
                            reference_table.c.res_id.in_(sorted(ids)),
                        )
                    )
                }
        return found
    if actor.role == "vendor":
        system = vendor_user_system(actor.orgnr or actor.id)
        return {
            r[0]
            for r in conn.execute(
                select(patient_link_table.c.patient_id).where(patient_link_table.c.system == system)
            )
        }
    return set()


def code_scope(actor: Actor) -> frozenset[str] | None:
    """LOINC codes the actor's view allows (None = all)."""
    if actor.is_admin or actor.role in ("followup", "vendor"):
        return None
    from interop.views.summary import view_definition

    try:
        codes = view_definition(actor.role).codes
    except KeyError:
        return frozenset()
    return frozenset(codes) if codes else None


def _observation_codes(resource: dict[str, Any]) -> set[str]:
    return {c.get("code") for c in (resource.get("code") or {}).get("coding", []) if c.get("code")}


class RolePolicy(AccessPolicy):
    def __init__(self, services: Callable[[], Services]) -> None:
        self._services = services

    def _patients(self, actor: Actor) -> set[str] | None:
        with self._services().store.reader() as conn:
            return patients_for(conn, actor)

    def _visible(
        self, actor: Actor, resource: dict[str, Any], patients: set[str] | None
    ) -> str | None:
        """None when the actor may see the resource, else the reason."""
        rtype = resource.get("resourceType", "")
        if rtype in ADMIN_ONLY and not actor.is_admin:
            return f"{rtype} is for admins"
        if actor.is_admin:
            return None
        if actor.role == "vendor":
            return "a vendor writes measurements and reads nothing"
        if rtype in DIRECTORY:
            return None
        pid = extract(resource).patient_id
        if pid is None:
            return (
                None
                if rtype == "Device"
                else f"{rtype} without a patient is not shared with role {actor.role}"
            )
        if patients is not None and pid not in patients:
            who = (
                actor.hpr
                and f"HPR {actor.hpr}"
                or actor.orgnr
                and f"org.nr {actor.orgnr}"
                or actor.id
            )
            return f"Patient/{pid} is not a patient of {actor.role} {who}"
        denied = self._consent_denies(actor, pid)
        if denied:
            return denied
        scope = code_scope(actor)
        if (
            rtype == "Observation"
            and scope is not None
            and not (_observation_codes(resource) & scope)
        ):
            return (
                f"{'/'.join(sorted(_observation_codes(resource)))} is outside the {actor.role} view"
            )
        return None

    def _actor_refs(self, conn: Connection, actor: Actor) -> set[str]:
        refs = {f"Organization/{o}" for o in _org_tree(conn, actor)}
        if actor.hpr:
            refs |= {
                f"Practitioner/{p}"
                for p in _ids(conn, "Practitioner", "identifier", [(HPR, actor.hpr)])
            }
        return refs

    def _consent_denies(self, actor: Actor, patient_id: str) -> str | None:
        """A patient's active Consent with a deny provision naming the actor (its organisation
        or the practitioner) refuses that actor."""
        with self._services().store.reader() as conn:
            consents = _referrers(conn, "Consent", "patient", {f"Patient/{patient_id}"})
            if not consents:
                return None
            active = _ids(conn, "Consent", "status", [("", "active")]) & consents
            mine = self._actor_refs(conn, actor)
            for cid in sorted(active):
                targets = {
                    r[0]
                    for r in conn.execute(
                        select(reference_table.c.target).where(
                            reference_table.c.res_type == "Consent",
                            reference_table.c.param == "actor",
                            reference_table.c.res_id == cid,
                        )
                    )
                }
                if targets & mine:
                    row = self._services().store.get("Consent", cid, conn)
                    if (
                        row is not None
                        and (row.json().get("provision") or {}).get("type") == "deny"
                    ):
                        names = ", ".join(sorted(targets & mine))
                        return f"Consent/{cid} of Patient/{patient_id} denies {names}"
        return None

    def check_read(self, actor: Actor, stored: StoredResource) -> None:
        if actor.is_admin:
            return
        resource = stored.json()
        why = self._visible(actor, resource, self._patients(actor))
        patient = extract(resource).patient_id
        audit.record(
            self._services().store,
            actor,
            "read",
            stored.reference,
            patient,
            "4" if why else "0",
            why,
        )
        if why:
            raise error(403, "forbidden", why)

    def check_write(self, actor: Actor, resource: dict[str, Any]) -> None:
        if actor.is_admin:
            return
        rtype = resource.get("resourceType", "")
        if rtype in ADMIN_ONLY or rtype in DIRECTORY or rtype == "Provenance":
            raise error(403, "forbidden", f"role {actor.role!r} may not write {rtype}")
        pid = extract(resource).patient_id
        if pid is None:
            raise error(
                403, "forbidden", f"role {actor.role!r} may only write resources about its patients"
            )
        patients = self._patients(actor)
        if patients is not None and pid not in patients:
            raise error(403, "forbidden", f"Patient/{pid} is not a patient of this {actor.role}")
        if actor.role == "vendor" and rtype not in (
            "Observation",
            "QuestionnaireResponse",
            "Device",
        ):
            raise error(403, "forbidden", f"a vendor writes measurements, not {rtype}")

    def check_delete(self, actor: Actor, stored: StoredResource) -> None:
        if not actor.is_admin:
            raise error(403, "forbidden", "only an admin deletes")

    def check_bundle(self, actor: Actor, bundle: Any) -> None:
        if actor.is_admin:
            return
        for i, e in enumerate(bundle.get("entry") or [] if isinstance(bundle, dict) else []):
            method = (e.get("request") or {}).get("method")
            if method in ("GET", "HEAD", "DELETE"):
                raise error(
                    403,
                    "forbidden",
                    f"Bundle.entry[{i}]: role {actor.role!r} may only create or update in a Bundle",
                )
            if isinstance(e.get("resource"), dict):
                self.check_write(actor, e["resource"])

    def filter_search(
        self, actor: Actor, res_type: str, params: list[tuple[str, str]]
    ) -> list[tuple[str, str]]:
        if actor.is_admin:
            return params
        try:
            restricted = self._restrict(actor, res_type, params)
        except FhirError as exc:
            audit.record(
                self._services().store,
                actor,
                "search",
                f"{res_type}?{urlencode(params)}",
                None,
                "4",
                exc.message,
            )
            raise
        audit.record(
            self._services().store, actor, "search", f"{res_type}?{urlencode(params)}", None
        )
        return restricted

    def _restrict(
        self, actor: Actor, res_type: str, params: list[tuple[str, str]]
    ) -> list[tuple[str, str]]:
        if actor.role == "vendor":
            raise error(403, "forbidden", "a vendor writes measurements and reads nothing")
        if res_type in ADMIN_ONLY:
            raise error(403, "forbidden", f"{res_type} is for admins")
        if res_type in DIRECTORY:
            return params
        patients = self._patients(actor)
        restricted = list(params)
        if patients is not None:
            ids = ",".join(sorted(patients)) or NO_PATIENT
            if res_type == "Patient":
                restricted.append(("_id", ids))
            elif "patient" in definitions(res_type):
                restricted.append(("patient", ids))
            else:
                raise error(403, "forbidden", f"{res_type} is not searchable for role {actor.role}")
        scope = code_scope(actor)
        if res_type == "Observation" and scope is not None:
            restricted.append(("code", ",".join(sorted(scope)) or NO_PATIENT))
        return restricted

    def filter_result(self, actor: Actor, res_type: str, result: SearchResult) -> SearchResult:
        if actor.is_admin:
            return result
        patients = self._patients(actor)
        rows = [
            (rid, c)
            for rid, c in result.rows
            if self._visible(actor, orjson.loads(c), patients) is None
        ]
        included = [
            (t, rid, c)
            for t, rid, c in result.included
            if self._visible(actor, orjson.loads(c), patients) is None
        ]
        if len(rows) != len(result.rows):
            result.total = None
        result.rows = rows
        result.included = included
        return result
