"""The access policy: the one place that decides what an actor may read and write.

Every door asks it: FHIR reads, searches and operations (``check_read``, ``filter_search`` and
``filter_result``), the service's own endpoints with a patient in the path
(``require_patient``), and every store write, whatever door it came through (``guard_write``
is a store guard, so a write by an actor cannot skip it). Who is related to whom comes from
:mod:`interop.access.scope`, once per request; every decision about a patient's data is
audited.
"""

from __future__ import annotations

from collections.abc import Iterable
from enum import StrEnum
from typing import Any
from urllib.parse import urlencode

import orjson
from sqlalchemy import select

from interop.access import audit
from interop.access.actor import Actor
from interop.access.scope import PatientScope, patient_scope
from interop.config import Settings
from interop.fhir.outcome import FhirError, error
from interop.fhir.searchparams import definitions, extract
from interop.store.context import Door
from interop.store.repository import FhirStore, StoredResource, WriteTx
from interop.store.schema import reference_table, token_table
from interop.store.search import SearchResult

DIRECTORY = frozenset({"Organization", "Practitioner", "PractitionerRole", "Endpoint"})
"""The address book: readable by every actor except vendors, written by admins."""
ADMIN_ONLY = frozenset({"AuditEvent"})
SERVER_WRITTEN = frozenset({"AuditEvent"})
"""Written by the server alone: no client writes them through any door, admins included."""
VENDOR_WRITES = frozenset({"Observation", "QuestionnaireResponse", "Device"})
NO_PATIENT = "__no-patient__"
CLIENT_DOORS = frozenset({Door.FHIR, Door.BUNDLE})
"""Doors where the client composes the resources; through the others (plans, ingest,
messages) the service composes them for a patient the policy has let the actor reach."""
EVERYONE = PatientScope(None, {}, None)


class Action(StrEnum):
    READ = "read"
    SEARCH = "search"
    WRITE = "write"
    PLAN = "plan"
    """Write the patient's self-management plan."""


def _observation_codes(resource: dict[str, Any]) -> set[str]:
    return {c.get("code") for c in (resource.get("code") or {}).get("coding", []) if c.get("code")}


def _patient_of(resource: dict[str, Any]) -> str | None:
    return extract(resource).patient_id


def _who(actor: Actor) -> str:
    return (
        (actor.hpr and f"HPR {actor.hpr}")
        or (actor.orgnr and f"org.nr {actor.orgnr}")
        or f"actor {actor.id}"
    )


class AccessPolicy:
    def __init__(self, store: FhirStore, settings: Settings) -> None:
        self.store = store
        self.gp_practice_wide = settings.gp_access == "practice"

    # ---- who -----------------------------------------------------------------------------
    def scope(self, actor: Actor) -> PatientScope:
        """The actor's patients, Consent refusals and codes (a few queries, once a request)."""
        if actor.is_admin:
            return EVERYONE
        with self.store.reader() as conn:
            return patient_scope(conn, actor, gp_practice_wide=self.gp_practice_wide)

    def _refusal(self, actor: Actor, resource: dict[str, Any], scope: PatientScope) -> str | None:
        """None when the actor may see the resource, else the reason."""
        rtype = resource.get("resourceType", "")
        if actor.is_admin:
            return None
        if rtype in ADMIN_ONLY:
            return f"{rtype} is for admins"
        if actor.role == "vendor":
            return "a vendor writes measurements and reads nothing"
        if rtype in DIRECTORY:
            return None
        pid = _patient_of(resource)
        if pid is None:
            if rtype == "Device":
                return None
            return f"{rtype} without a patient is not shared with role {actor.role}"
        why = scope.refusal(pid)
        if why == "not-related":
            return f"Patient/{pid} is not a patient of {actor.role} {_who(actor)}"
        if why:
            return why
        if (
            rtype == "Observation"
            and scope.codes is not None
            and not (_observation_codes(resource) & scope.codes)
        ):
            return (
                f"{'/'.join(sorted(_observation_codes(resource)))} is outside the {actor.role} view"
            )
        return None

    # ---- reads ---------------------------------------------------------------------------
    def require_patient(
        self, actor: Actor, patient_id: str, action: Action, what: str | None = None
    ) -> PatientScope:
        """Refuse (403, audited) unless the actor may do ``action`` on the patient's data."""
        scope = self.scope(actor)
        if actor.is_admin:
            return scope
        why = scope.refusal(patient_id)
        if why == "not-related":
            why = f"Patient/{patient_id} is not a patient of {actor.role} {_who(actor)}"
        if why is None and actor.role == "vendor" and action is not Action.WRITE:
            why = "a vendor writes measurements and reads nothing"
        if why is None and action is Action.PLAN and actor.role not in ("gp", "followup"):
            why = f"role {actor.role!r} may not change self-management plans"
        if why is None and action is Action.WRITE and actor.role not in ("vendor", "followup"):
            why = f"role {actor.role!r} may not write measurements"
        if action in (Action.READ, Action.SEARCH) or why:
            self._audit(
                actor,
                "read" if action is Action.READ else action.value,
                what or f"Patient/{patient_id}",
                [patient_id],
                why,
            )
        if why:
            raise error(403, "forbidden", why)
        return scope

    def check_read(self, actor: Actor, stored: StoredResource) -> None:
        if actor.is_admin and actor.source == "bootstrap":
            return
        resource = stored.json()
        scope = self.scope(actor)
        why = self._refusal(actor, resource, scope)
        patient = stored.res_id if stored.res_type == "Patient" else _patient_of(resource)
        self._audit(actor, "read", stored.reference, [patient] if patient else [], why)
        if why:
            raise error(403, "forbidden", why)

    def filter_search(
        self, actor: Actor, res_type: str, params: list[tuple[str, str]]
    ) -> list[tuple[str, str]]:
        """The search restricted to what the actor may see, so totals and paging count only
        that (the patients it may reach, and its view's codes)."""
        if actor.is_admin:
            return params
        try:
            return self._restrict(actor, res_type, params, self.scope(actor))
        except FhirError as exc:
            self._audit(actor, "search", f"{res_type}?{urlencode(params)}", [], exc.message)
            raise

    def _restrict(
        self,
        actor: Actor,
        res_type: str,
        params: list[tuple[str, str]],
        scope: PatientScope,
    ) -> list[tuple[str, str]]:
        if actor.role == "vendor":
            raise error(403, "forbidden", "a vendor writes measurements and reads nothing")
        if res_type in ADMIN_ONLY:
            raise error(403, "forbidden", f"{res_type} is for admins")
        if res_type in DIRECTORY:
            return params
        reachable = scope.reachable
        restricted = list(params)
        if reachable is not None:
            ids = ",".join(sorted(reachable)) or NO_PATIENT
            if res_type == "Patient":
                restricted.append(("_id", ids))
            elif "patient" in definitions(res_type):
                restricted.append(("patient", ids))
            else:
                raise error(403, "forbidden", f"{res_type} is not searchable for role {actor.role}")
        if res_type == "Observation" and scope.codes is not None:
            restricted.append(("code", ",".join(sorted(scope.codes)) or NO_PATIENT))
        return restricted

    def filter_result(
        self,
        actor: Actor,
        res_type: str,
        result: SearchResult,
        params: list[tuple[str, str]] | None = None,
    ) -> SearchResult:
        """Check every returned resource once more, and audit the search naming every patient
        whose data it returned."""
        what = f"{res_type}?{urlencode(params or [])}"
        if actor.is_admin:
            if actor.source != "bootstrap":
                self._audit(actor, "search", what, self._patients_in(result), None)
            return result
        scope = self.scope(actor)
        rows = [
            (rid, c)
            for rid, c in result.rows
            if self._refusal(actor, orjson.loads(c), scope) is None
        ]
        included = [
            (t, rid, c)
            for t, rid, c in result.included
            if self._refusal(actor, orjson.loads(c), scope) is None
        ]
        if len(rows) != len(result.rows):
            result.total = None
        result.rows = rows
        result.included = included
        self._audit(actor, "search", what, self._patients_in(result), None)
        return result

    @staticmethod
    def _patients_in(result: SearchResult) -> list[str]:
        found: dict[str, None] = {}
        for content in [c for _, c in result.rows] + [c for _, _, c in result.included]:
            resource = orjson.loads(content)
            pid = (
                resource.get("id")
                if resource.get("resourceType") == "Patient"
                else _patient_of(resource)
            )
            if pid:
                found[pid] = None
        return list(found)

    # ---- writes --------------------------------------------------------------------------
    def guard_write(
        self, tx: WriteTx, resource: dict[str, Any] | None, previous: StoredResource | None
    ) -> None:
        """Store guard: may ``tx.ctx.actor`` write ``resource`` over ``previous``?"""
        actor = tx.ctx.actor
        if not isinstance(actor, Actor) or tx.context.get("auditing"):
            return
        current = previous.json() if previous is not None and not previous.deleted else None
        rtype = (resource or current or {}).get("resourceType", "")
        if rtype in SERVER_WRITTEN:
            raise error(403, "forbidden", f"{rtype} resources are written by the server only")
        if actor.is_admin:
            return
        if resource is None:
            raise error(403, "forbidden", "only an admin deletes")
        client_door = tx.ctx.door in CLIENT_DOORS
        if client_door and (rtype in DIRECTORY or rtype == "Provenance"):
            raise error(403, "forbidden", f"role {actor.role!r} may not write {rtype}")
        if client_door and actor.role == "vendor" and rtype not in VENDOR_WRITES:
            raise error(403, "forbidden", f"a vendor writes measurements, not {rtype}")
        scope = tx.context.get("access_scope")
        if not isinstance(scope, PatientScope):
            scope = tx.context["access_scope"] = self.scope(actor)
        pid = _patient_of(resource)
        if pid is None:
            if not client_door:
                return  # what the service composes beside the patient's data (Provenance)
            raise error(
                403, "forbidden", f"role {actor.role!r} may only write resources about its patients"
            )
        self._require_writable(actor, scope, pid)
        if current is not None:
            old = _patient_of(current)
            if old is None or old != pid:
                raise error(
                    403,
                    "forbidden",
                    f"{rtype}/{previous.res_id if previous else ''} belongs to another patient "
                    "compartment: a resource never moves between patients",
                )
            if actor.role == "vendor" and not self._created_by(tx, previous, actor):
                raise error(
                    403,
                    "forbidden",
                    f"a vendor may only update what it created; {rtype}/"
                    f"{previous.res_id if previous else ''} was not created by it",
                )

    def _require_writable(self, actor: Actor, scope: PatientScope, pid: str) -> None:
        why = scope.refusal(pid)
        if why == "not-related":
            if actor.role == "vendor":
                why = f"Patient/{pid} is not linked to this vendor"
            else:
                why = f"Patient/{pid} is not a patient of this {actor.role}"
        if why:
            raise error(403, "forbidden", why)

    @staticmethod
    def _created_by(tx: WriteTx, previous: StoredResource | None, actor: Actor) -> bool:
        """Whether the audit log shows ``actor`` created the resource."""
        if previous is None:
            return False
        entity = {
            r[0]
            for r in tx.conn.execute(
                select(reference_table.c.res_id).where(
                    reference_table.c.res_type == "AuditEvent",
                    reference_table.c.param == "entity",
                    reference_table.c.target == previous.reference,
                )
            )
        }
        if not entity:
            return False
        creates = {
            r[0]
            for r in tx.conn.execute(
                select(token_table.c.res_id).where(
                    token_table.c.res_type == "AuditEvent",
                    token_table.c.res_id.in_(sorted(entity)),
                    token_table.c.param == "action",
                    token_table.c.code == "C",
                )
            )
        }
        by_actor = {
            r[0]
            for r in tx.conn.execute(
                select(token_table.c.res_id).where(
                    token_table.c.res_type == "AuditEvent",
                    token_table.c.res_id.in_(sorted(creates)),
                    token_table.c.param == "altid",
                    token_table.c.code == actor.id,
                )
            )
        }
        return bool(by_actor)

    # ---- audit ---------------------------------------------------------------------------
    def _audit(
        self,
        actor: Actor,
        action: str,
        what: str,
        patients: Iterable[str],
        refusal: str | None,
    ) -> None:
        audit.record(
            self.store,
            actor,
            action,
            what,
            list(patients),
            "4" if refusal else "0",
            refusal,
        )
