"""The access policy: the one place that decides what an actor may read and write.

Every door asks it: FHIR reads, searches and operations (``check_read``, ``filter_search`` and
``filter_result``), the service's own endpoints with a patient in the path
(``require_patient``), and every store write, whatever door it came through (``guard_write``
is a store guard, so a write by an actor cannot skip it). Who is related to whom comes from
:mod:`interop.access.scope`, once per request; every decision about a patient's data is
audited.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum
from functools import lru_cache
from importlib.resources import files
from typing import Any
from urllib.parse import urlencode

import orjson
import yaml
from sqlalchemy import Connection

from interop.access.actor import Actor
from interop.access.audit import audit_log, build_event, is_bootstrap
from interop.access.scope import PatientScope, patient_scope
from interop.config import Settings
from interop.fhir.outcome import FhirError, error
from interop.fhir.searchparams import (
    definitions,
    owner_patients,
    patient_compartment,
    reference_target,
)
from interop.store import audit_rows
from interop.store.context import Door
from interop.store.generation import RELATION_TYPES
from interop.store.generation import bump as bump_generation
from interop.store.generation import current as current_generation
from interop.store.readable import READABLE, Readable
from interop.store.repository import FhirStore, StoredResource, WriteTx
from interop.store.search import OWN_PATIENTS, REFERRER_PATIENTS, SearchResult

DIRECTORY = frozenset({"Organization", "Practitioner", "PractitionerRole", "Endpoint"})
"""The address book: readable by every actor except vendors, written by admins."""
ADMIN_ONLY = frozenset({"AuditEvent"})
SERVER_WRITTEN = frozenset({"AuditEvent"})
"""Written by the server alone: no client writes them through any door, admins included."""
OWNERLESS = ("Device",)
"""Types whose resources without a patient every reading actor may read (a Device in stock)."""
VENDOR_WRITES = frozenset({"Observation", "QuestionnaireResponse", "Device"})
NO_PATIENT = "__no-patient__"
SCOPE_CACHE_ACTORS = 10_000
"""Actors whose scope an API process keeps (each valid while the relations generation
stands still)."""
CLIENT_DOORS = frozenset({Door.FHIR, Door.BUNDLE})
"""Doors where the client composes the resources; through the others (plans, ingest,
messages) the service composes them for a patient the policy has let the actor reach."""
EVERYONE = PatientScope(None, {}, None)


class Action(StrEnum):
    """What an actor asks to do with a patient's data (``mappings/access/actions.yaml``)."""

    READ = "read"
    PLAN = "plan"
    """Make a new version of the patient's self-management plan."""
    APPROVE_PLAN = "approve-plan"
    """Approve a proposed plan, or ask for changes to it, as the patient's GP."""
    WRITE = "write"
    """Ingest measurements for the patient."""
    LINK = "link"
    """Link a vendor's user id to the patient (the vendor may then write for them)."""
    EMERGENCY = "emergency"
    """Open the patient's record outside the care relation by *nødrett* (emergency access)."""
    DELIVER = "deliver"
    """Post KITH messages and AppRecs (in the caller's own name)."""
    INDICATORS = "indicators"
    """Read its own organisation's management figures."""
    MESSAGES = "messages"
    """Read the message history of its patients (status of the messages to their GPs)."""
    WORKLIST = "worklist"
    """Read its own organisation's worklist and act on its Tasks (take, note, complete)."""
    INBOX = "inbox"
    """See the messages it sent (over MLLP) and what became of them."""


NOT_YOURS = "this person is not one of your patients"
"""The one answer to a refused patient in a path, whatever the reason, so that it never tells
whether a fødselsnummer belongs to a patient of the service."""


@lru_cache(maxsize=1)
def _actions() -> dict[str, frozenset[str]]:
    data = yaml.safe_load(
        files("mappings").joinpath("access", "actions.yaml").read_text(encoding="utf-8")
    )
    table = {name: frozenset(roles) for name, roles in (data.get("actions") or {}).items()}
    missing = {a.value for a in Action} - set(table)
    if missing:
        raise ValueError(f"mappings/access/actions.yaml: no roles for {sorted(missing)}")
    return table


def allowed_roles(action: Action) -> frozenset[str]:
    """The roles (besides admin) that may do ``action``."""
    return _actions()[action.value]


def _observation_codes(resource: dict[str, Any]) -> set[str]:
    return {c.get("code") for c in (resource.get("code") or {}).get("coding", []) if c.get("code")}


PATIENT_FILTERS = ("patient", "subject", "patient:Patient", "subject:Patient")


def _patients_asked(res_type: str, params: list[tuple[str, str]]) -> frozenset[str] | None:
    """The Patient ids the client's first patient filter names (``_id`` for Patient,
    ``patient``/``subject`` elsewhere), or None when it has none or one that is not a plain
    list of Patient references (a chain, a modifier): then every reachable patient restricts."""
    names = ("_id",) if res_type == "Patient" else PATIENT_FILTERS
    for key, value in params:
        if key not in names:
            continue
        ids: set[str] = set()
        for v in value.split(","):
            ref = reference_target(v.strip())
            if "/" in ref:
                rtype, _, rid = ref.rpartition("/")
                if rtype.rsplit("/", 1)[-1] != "Patient":
                    return None
                ref = rid
            if not ref:
                return None
            ids.add(ref)
        return frozenset(ids)
    return None


def _reaches_beyond(params: list[tuple[str, str]]) -> bool:
    """Whether the search asks about resources of other types than it returns (``_has``, a
    chain): the searches that need :class:`Readable`."""
    return any(key.startswith("_has") or "." in key for key, _value in params)


def _related(scope: PatientScope, patient_id: str) -> bool:
    """Whether the actor reaches the patient through its care relation (not by nødrett)."""
    return (scope.patients is None or patient_id in scope.patients) and (
        patient_id not in scope.denied
    )


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
        self._scopes: OrderedDict[tuple[str | None, ...], tuple[int, PatientScope]] = OrderedDict()
        self._scopes_lock = threading.Lock()

    # ---- who -----------------------------------------------------------------------------
    def scope(
        self, actor: Actor, conn: Connection | None = None, generation: int | None = None
    ) -> PatientScope:
        """The actor's patients, Consent refusals and codes (a few queries, once a request);
        ``conn``: read inside that transaction. ``generation``: the care-relations generation
        as read just now (with the resource on the fast path), else it is read here."""
        if actor.is_admin:
            return EVERYONE
        if conn is not None:  # inside a write: never cached (it may see what will not commit)
            return patient_scope(conn, actor, gp_practice_wide=self.gp_practice_wide)
        key = (actor.id, actor.role, actor.hpr, actor.orgnr, actor.herid)
        if generation is None:
            generation = current_generation(self.store.fast)
        with self._scopes_lock:
            cached = self._scopes.get(key)
        if cached is not None and cached[0] == generation:
            return cached[1]
        with self.store.reader() as reader:
            scope = patient_scope(reader, actor, gp_practice_wide=self.gp_practice_wide)
        with self._scopes_lock:
            self._scopes[key] = (generation, scope)
            self._scopes.move_to_end(key)
            while len(self._scopes) > SCOPE_CACHE_ACTORS:
                self._scopes.popitem(last=False)
        return scope

    def relations_hook(
        self, tx: WriteTx, stored: StoredResource, previous: StoredResource | None
    ) -> None:
        """Store hook: a write that can change who may see whom moves the generation on, in
        its own transaction, so no API process reuses a scope from before it."""
        if stored.res_type not in RELATION_TYPES or tx.context.get("relations_changed"):
            return
        if stored.res_type == "Device" and previous is not None:
            # a Device counts (a vendor's devices, in Consent) only when its owner changes
            if stored.view().get("owner") == previous.view().get("owner"):
                return
        elif stored.res_type == "Device" and not stored.view().get("owner"):
            return
        bump_generation(tx.conn)
        tx.context["relations_changed"] = True

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
        pids = owner_patients(resource)
        if not pids:
            if rtype in OWNERLESS:
                return None
            return f"{rtype} without a patient is not shared with role {actor.role}"
        for pid in pids:  # a Group's members: all of them, or the Group is not shown
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
    def require_role(self, actor: Actor, action: Action) -> None:
        """Refuse (403) a role that may not do ``action`` for any patient
        (``mappings/access/actions.yaml``); asked before the patient is looked up."""
        if actor.is_admin:
            return
        if actor.role not in allowed_roles(action):
            raise error(403, "forbidden", f"role {actor.role!r} may not {action.value} here")

    def require_patient(
        self, actor: Actor, patient_id: str, action: Action, what: str | None = None
    ) -> PatientScope:
        """Refuse (403, audited) unless the actor may do ``action`` on the patient's data. The
        answer is the same whether the person is unknown, another's patient or refuses this
        actor by Consent (:data:`NOT_YOURS`); the audit event keeps the reason."""
        self.require_role(actor, action)
        scope = self.scope(actor)
        if actor.is_admin:
            return scope
        why = scope.refusal(patient_id)
        if why == "not-related":
            why = f"Patient/{patient_id} is not a patient of {actor.role} {_who(actor)}"
        event = None
        if action is Action.READ or why:
            verb = "read" if action is Action.READ else "update"
            event = self._event(
                actor, verb, what or f"Patient/{patient_id}", [patient_id], why, scope
            )
        self._settle(Decision(event, why, NOT_YOURS if why else None), None)
        return scope

    def _decide_read(self, actor: Actor, stored: StoredResource) -> Decision:
        if is_bootstrap(actor):
            return Decision(None, None)
        resource = stored.json()
        scope = self.scope(actor, generation=stored.relations_generation)
        why = self._refusal(actor, resource, scope)
        patient = patient_compartment(resource)
        # the caller learns that it may not, never whose data it is or why (the audit keeps it):
        # of any patient the resource is about (a Group's other members too)
        shown = (
            NOT_YOURS if why and any(scope.refusal(p) for p in owner_patients(resource)) else None
        )
        return Decision(
            self._event(actor, "read", stored.reference, [patient] if patient else [], why, scope),
            why,
            shown,
        )

    def check_read(self, actor: Actor, stored: StoredResource, tx: WriteTx | None = None) -> None:
        """Refuse (403) a read the actor may not make; audit it (in ``tx`` when given)."""
        self._settle(self._decide_read(actor, stored), tx)

    async def check_read_async(self, actor: Actor, stored: StoredResource) -> None:
        """:meth:`check_read` for the event loop: the audit event is group-committed."""
        await self._settle_async(self._decide_read(actor, stored))

    def filter_search(
        self,
        actor: Actor,
        res_type: str,
        params: list[tuple[str, str]],
        tx: WriteTx | None = None,
    ) -> list[tuple[str, str]]:
        """The search restricted to what the actor may see, so totals and paging count only
        that (the patients it may reach, and its view's codes). A refused search is audited."""
        added = self.restriction(actor, res_type, params, tx)
        return params + [(k, v) for k, v in added if k not in (READABLE, REFERRER_PATIENTS)]

    def restriction(
        self,
        actor: Actor,
        res_type: str,
        params: list[tuple[str, str]],
        tx: WriteTx | None = None,
    ) -> list[tuple[str, str]]:
        """What the policy adds to the client's parameters (:meth:`filter_search`)."""
        if actor.is_admin:
            return []
        try:
            return self._restrict(actor, res_type, params, self.scope(actor))
        except FhirError as exc:
            what = f"{res_type}?{urlencode(params)}"
            self._settle(Decision(self._event(actor, "search", what, [], exc.message), None), tx)
            raise

    def _restrict(
        self,
        actor: Actor,
        res_type: str,
        params: list[tuple[str, str]],
        scope: PatientScope,
    ) -> list[tuple[str, str]]:
        """The parameters that restrict the client's search to what the actor may see."""
        why = self._search_refusal(actor, res_type, scope)
        if why is not None:
            raise error(403, "forbidden", why)
        reachable = scope.reachable
        if reachable is None:
            return []
        restricted: list[tuple[str, str]] = []
        if _reaches_beyond(params):
            # what the search only asks about (_has, chains) is asked of what the actor may read
            readable = Readable(
                tuple(sorted(reachable)),
                None if scope.codes is None else tuple(sorted(scope.codes)),
                tuple(sorted(DIRECTORY)),
                OWNERLESS,
            )
            restricted.append(readable.param())
        if any(k.startswith("_revinclude") for k, _v in params):
            # what refers to the page, in the compartments of the patients the actor reaches
            restricted.append((REFERRER_PATIENTS, ",".join(sorted(reachable)) or NO_PATIENT))
        if res_type not in DIRECTORY:
            # the client's own patient filter, narrowed to what the actor reaches, restricts the
            # same as all its patients and keeps the query small (a GP has a thousand)
            asked = _patients_asked(res_type, params)
            allowed = reachable if asked is None else asked & reachable
            ids = ",".join(sorted(allowed)) or NO_PATIENT
            if res_type == "Patient":
                restricted.append(("_id", ids))
            elif "patient" in definitions(res_type):
                restricted.append(("patient", ids))
            else:  # only ``subject``, or a Group's members: the compartment the read decides on
                restricted.append((OWN_PATIENTS, ids))
        if res_type == "Observation" and scope.codes is not None:
            restricted.append(("code", ",".join(sorted(scope.codes)) or NO_PATIENT))
        return restricted

    def _search_refusal(self, actor: Actor, res_type: str, scope: PatientScope) -> str | None:
        """Why the actor may not search ``res_type`` at all (None when it may)."""
        if actor.is_admin:
            return None
        if actor.role == "vendor":
            return "a vendor writes measurements and reads nothing"
        if res_type in ADMIN_ONLY:
            return f"{res_type} is for admins"
        if res_type in DIRECTORY or scope.reachable is None:
            return None
        if res_type != "Patient" and not any(p.compartment for p in definitions(res_type).values()):
            return f"{res_type} is not searchable for role {actor.role}"  # no patient's data
        return None

    def searchable(self, actor: Actor, types: Iterable[str]) -> list[str]:
        """Those of ``types`` the actor may search (what a search of each would not refuse
        outright), without auditing: for the searches across types, which leave the others
        out (each search made is restricted, filtered and audited as usual)."""
        scope = self.scope(actor)
        return [t for t in types if self._search_refusal(actor, t, scope) is None]

    def filter_result(
        self,
        actor: Actor,
        res_type: str,
        result: SearchResult,
        params: list[tuple[str, str]] | None = None,
        tx: WriteTx | None = None,
        compartment: str | None = None,
    ) -> SearchResult:
        """Check every returned resource once more, and audit the search naming every patient
        whose data it returned (in ``tx`` when given); ``compartment``: the Patient whose
        compartment was searched through every link (``Patient/{id}/{type}``), which the
        audited search names with the parameters."""
        result, decision = self._decide_result(actor, res_type, result, params, compartment)
        self._settle(decision, tx)
        return result

    async def filter_result_async(
        self,
        actor: Actor,
        res_type: str,
        result: SearchResult,
        params: list[tuple[str, str]] | None = None,
        compartment: str | None = None,
    ) -> SearchResult:
        """:meth:`filter_result` for the event loop: the audit event is group-committed."""
        result, decision = self._decide_result(actor, res_type, result, params, compartment)
        await self._settle_async(decision)
        return result

    def _decide_result(
        self,
        actor: Actor,
        res_type: str,
        result: SearchResult,
        params: list[tuple[str, str]] | None,
        compartment: str | None = None,
    ) -> tuple[SearchResult, Decision]:
        """Keep what the actor may see (each returned resource is parsed once) and the audit
        event naming every patient whose data is returned."""
        path = res_type if compartment is None else f"Patient/{compartment}/{res_type}"
        what = f"{path}?{urlencode(params or [])}"
        if is_bootstrap(actor):
            return result, Decision(None, None)
        scope = self.scope(actor)
        patients: dict[str, None] = {}

        def shown(content: bytes) -> bool:
            resource = orjson.loads(content)
            if self._refusal(actor, resource, scope) is not None:
                return False
            for pid in owner_patients(resource):
                patients[pid] = None
            return True

        rows = [(rid, c) for rid, c in result.rows if shown(c)]
        included = [(t, rid, c) for t, rid, c in result.included if shown(c)]
        # an answer that is only a count told of the patients it counted (all the actor's)
        for pid in result.counted:
            patients[pid] = None
        if len(rows) != len(result.rows):
            result.total = None
        result.rows = rows
        result.included = included
        return result, Decision(
            self._event(actor, "search", what, list(patients), None, scope), None
        )

    def record_list(self, actor: Actor, what: str, patients: Iterable[str]) -> None:
        """Audit a list the service composed of several patients' data (the worklist), naming
        every patient shown."""
        if is_bootstrap(actor):
            return
        event = self._event(actor, "search", what, list(patients), None, self.scope(actor))
        self._settle(Decision(event, None), None)

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
        # the scope as committed before this transaction: every write is also checked against
        # the version it replaces, so a relation this transaction changes cannot widen it
        scope = tx.context.get("access_scope")
        if not isinstance(scope, PatientScope):
            scope = tx.context["access_scope"] = self.scope(actor)
        pid = patient_compartment(resource)
        if pid is None:
            if not client_door:
                return  # what the service composes beside the patient's data (Provenance)
            raise error(
                403, "forbidden", f"role {actor.role!r} may only write resources about its patients"
            )
        # a resource about several patients (a Group's members) is written only by an actor
        # who may write for every one of them, as it is read only by one who may read every
        # one of them (``_refusal``): the new version's, and the one it replaces
        for owner in dict.fromkeys([pid, *owner_patients(resource)]):
            self._require_writable(actor, scope, owner)
        if current is not None:
            old = patient_compartment(current)
            if old is None or old != pid:
                raise error(
                    403,
                    "forbidden",
                    f"{rtype}/{previous.res_id if previous else ''} belongs to another patient "
                    "compartment: a resource never moves between patients",
                )
            if any(scope.refusal(owner) for owner in owner_patients(current)):
                raise error(403, "forbidden", NOT_YOURS)  # a version it may not read
            if client_door and actor.role == "vendor" and not self._created_by(tx, previous, actor):
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
        return audit_rows.created_by(tx.conn, previous.reference, actor.id)

    # ---- audit ---------------------------------------------------------------------------
    @staticmethod
    def _event(
        actor: Actor,
        action: str,
        what: str,
        patients: Iterable[str],
        refusal: str | None,
        scope: PatientScope | None = None,
    ) -> dict[str, Any]:
        """The audit event; emergency access (*nødrett*) when a patient was reached by it."""
        named = list(patients)
        emergency = None
        if (
            scope is not None
            and scope.emergency
            and not refusal
            and any(scope.in_emergency(p) and not _related(scope, p) for p in named)
        ):
            emergency = True
        return build_event(
            actor,
            action,
            what,
            named,
            "4" if refusal else "0",
            detail=refusal,
            emergency=emergency,
        )

    def _settle(self, decision: Decision, tx: WriteTx | None) -> None:
        """Audit the decision (in ``tx``, or in a transaction of its own), then refuse it."""
        if decision.event is not None:
            log = audit_log(self.store)
            if tx is not None:
                log.append(tx, decision.event)
            else:
                log.record_now(decision.event)
        if decision.refusal:
            raise error(403, "forbidden", decision.shown or decision.refusal)

    async def _settle_async(self, decision: Decision) -> None:
        if decision.event is not None:
            await audit_log(self.store).record(decision.event)
        if decision.refusal:
            raise error(403, "forbidden", decision.shown or decision.refusal)


@dataclass(frozen=True, slots=True)
class Decision:
    """An access decision: the audit event that records it, and why it was refused."""

    event: dict[str, Any] | None
    refusal: str | None
    shown: str | None = None
    """What the caller is told, when it must be less than the reason (which is audited)."""
