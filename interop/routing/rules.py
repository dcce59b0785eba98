"""Routing rules (``mappings/routing-rules.yaml``): events → recipients → outbox messages.

Events are collected while a write transaction runs (``tx.context["events"]``) and routed at
its end, in the same transaction: the outbox rows commit together with the data that caused
them, or not at all. An event that cannot be routed (no GP on the patient, no Endpoint, no
schemas configured) is never dropped: it becomes a dead-lettered outbox row whose error says
what is missing, visible in ``interop outbox dead`` and the metrics.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import lru_cache
from importlib.resources import files
from pathlib import Path
from typing import Any

import orjson
import yaml
from sqlalchemy import Connection, select

from interop.care.default_thresholds import defaults_for_patient
from interop.care.events import Deviation, DeviationClosed, PlanChanged
from interop.care.plans import plan_versions, ranges_in_force
from interop.fhir.dates import fhir_instant
from interop.messaging.addressbook import AddressError, Destination, destination_of
from interop.messaging.compose import compose_gp_message
from interop.messaging.pmd import load_observations, observation_bundles, pmd_bundles
from interop.messaging.runtime import kith_for
from interop.national.plans_export import NHN_PLAN, plan_payloads
from interop.national.vkp_dho import DEVIATION_CLOSED, journal_payloads
from interop.routing.outbox import enqueue, mark_dead
from interop.store.repository import FhirStore, WriteTx
from interop.store.schema import token_table
from interop.views.concepts import display
from plo_messages import InvalidOutgoingMessage, SchemaConfigError

log = logging.getLogger("interop.routing")

SUBSCRIPTION_SYSTEM = "https://dho-interop.no/fhir/CodeSystem/subscription"
OBSERVATION_CREATED = "observation.created"
NOTIFY_GP_URL = (
    "https://dho-interop.no/fhir/StructureDefinition/notify-gp"  # see interop.care.plans
)


@dataclass(frozen=True, slots=True)
class Event:
    name: str
    patient_id: str
    focus: str | None = None
    """The resource that caused it (``Task/…``, ``CarePlan/…``)."""
    data: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Rule:
    name: str
    event: str
    to: str | dict[str, str]
    message: str
    content_type: str | None = None
    when: dict[str, Any] = field(default_factory=dict)


@lru_cache(maxsize=4)
def load_rules(mappings_dir: Path | None = None) -> tuple[Rule, ...]:
    path = (
        mappings_dir / "routing-rules.yaml"
        if mappings_dir
        else files("mappings").joinpath("routing-rules.yaml")
    )
    data = yaml.safe_load(path.read_text("utf-8"))
    return tuple(
        Rule(
            r["name"],
            r["event"],
            r["to"],
            r["message"],
            str(r["content_type"]) if r.get("content_type") is not None else None,
            dict(r.get("when") or {}),
        )
        for r in data.get("rules", [])
    )


def emit(tx: WriteTx, event: Event) -> None:
    """Record an event to be routed when the transaction's writes are done."""
    tx.context.setdefault("events", []).append(event)


def observations_created(tx: WriteTx, created: Iterable[tuple[str, str]]) -> None:
    """Note Observations created in this transaction as (subject reference, ``Observation/…``)
    pairs. When the transaction is routed they become one ``observation.created`` event per
    patient, ``data["observations"]`` listing them, however often this was called."""
    by_patient: dict[str, list[str]] = tx.context.setdefault("observations_created", {})
    for subject, ref in created:
        if subject.startswith("Patient/"):
            by_patient.setdefault(subject[8:], []).append(ref)


_SUBSCRIPTIONS = select(token_table.c.res_id, token_table.c.code).where(
    token_table.c.res_type == "Endpoint",
    token_table.c.param == "payload-type",
    token_table.c.system == SUBSCRIPTION_SYSTEM,
)
"""Every Endpoint's subscription codes (index ``ix_token_lookup``); built once, as building a
statement costs more than running this one."""


class _Subscribers:
    """Subscribed Endpoints, looked up once per routed transaction (one indexed query, when
    the first event needs it), and their destinations."""

    def __init__(self) -> None:
        self.by_code: dict[str, list[str]] | None = None
        self.destinations: dict[str, Destination | None] = {}

    def endpoints(self, conn: Connection, code: str) -> list[str]:
        if self.by_code is None:
            self.by_code = {}
            for rid, c in conn.execute(_SUBSCRIPTIONS):
                self.by_code.setdefault(c, []).append(rid)
            for ids in self.by_code.values():
                ids.sort()
        return self.by_code.get(code, [])

    def destination(self, store: FhirStore, conn: Connection, eid: str) -> Destination | None:
        if eid not in self.destinations:
            ep = store.get("Endpoint", eid, conn)
            self.destinations[eid] = (
                destination_of(ep.json()) if ep is not None and not ep.deleted else None
            )
        return self.destinations[eid]


def _dead_letter(conn: Connection, event: Event, rule: Rule, reason: str) -> str:
    row = enqueue(
        conn,
        event=event.name,
        kind=rule.message,
        destination=f"unroutable:{rule.name}",
        transport="none",
        address="",
        content_type="application/json",
        payload=orjson.dumps(
            {"event": event.name, "patient": event.patient_id, "focus": event.focus, **event.data}
        ),
        patient_id=event.patient_id,
        focus=event.focus,
    )
    mark_dead(conn, row, f"cannot route ({rule.name}): {reason}")
    log.warning("event %s for Patient/%s not routable: %s", event.name, event.patient_id, reason)
    return row


def deviation_event(event: Deviation) -> Event | None:
    """The routing event of the care core's ``DeviationOpened``/``DeviationEscalated``:
    ``triage.<zone>`` about its Task; None for a late reading's (no urgent message about a
    state that may be long past)."""
    if event.late:
        return None
    data: dict[str, Any] = {
        "code": event.code,
        "zone": event.zone,
        "value": event.value,
        "unit": event.unit,
        "reading": event.reading,
        "time": event.time,
    }
    if event.display:
        data["display"] = event.display
    if event.bound:
        data["comparator"] = event.bound
    if event.focus and event.focus.startswith("QuestionnaireResponse/"):
        data["questionnaireResponse"] = event.focus
    elif event.focus:
        data["observation"] = event.focus
    return Event(f"triage.{event.zone}", event.patient_id, event.task, data)


class Router:
    """Routes the events of a transaction; subscribes to the care core's domain events where
    the service is wired (:meth:`on_deviation`, :meth:`on_plan_changed`)."""

    def on_deviation(self, tx: WriteTx, event: Deviation) -> None:
        routed = deviation_event(event)
        if routed is not None:
            emit(tx, routed)

    def on_deviation_closed(self, tx: WriteTx, event: DeviationClosed) -> None:
        """A deviation Task a person completed is journaled (``deviation.closed``)."""
        if event.status == "completed":
            emit(tx, Event(DEVIATION_CLOSED, event.patient_id, event.task))

    def on_plan_changed(self, tx: WriteTx, event: PlanChanged) -> None:
        emit(tx, Event("plan.changed", event.patient_id, event.care_plan))

    def __init__(self, services: Any) -> None:
        self.services = services
        self.store: FhirStore = services.store
        self.settings = services.settings
        self.rules = load_rules(self.settings.mappings_dir)

    def route_pending(self, tx: WriteTx) -> list[str]:
        # the care core's domain events go to their subscribers first (interop.services);
        # routing's own are routed here
        pending = tx.context.pop("events", [])
        events = [e for e in pending if isinstance(e, Event)]
        if len(events) != len(pending):  # domain events stay for their subscribers
            tx.context["events"] = [e for e in pending if not isinstance(e, Event)]
        created: dict[str, list[str]] = tx.context.pop("observations_created", {})
        events.extend(
            Event(OBSERVATION_CREATED, pid, None, {"observations": refs})
            for pid, refs in created.items()
        )
        # one subscriber look-up per transaction, however often it is routed (a batch of
        # ingested messages routes each message's events on its own), unless an Endpoint was
        # written in between
        subscribers, seen = tx.context.get("subscribers") or (None, 0)
        if subscribers is None or any(s.res_type == "Endpoint" for s in tx.written[seen:]):
            subscribers = _Subscribers()
        tx.context["subscribers"] = (subscribers, len(tx.written))
        out: list[str] = []
        for event in events:
            out.extend(self.route(tx.conn, event, subscribers))
        return out

    def route(
        self, conn: Connection, event: Event, subscribers: _Subscribers | None = None
    ) -> list[str]:
        if subscribers is None:
            subscribers = _Subscribers()
        rows: list[str] = []
        for rule in self.rules:
            if rule.event != event.name or not self._conditions_hold(conn, rule, event):
                continue
            try:
                rows.extend(self._apply(conn, rule, event, subscribers))
            except AddressError as exc:
                rows.append(_dead_letter(conn, event, rule, str(exc)))
        return rows

    # ---- conditions ----------------------------------------------------------------------
    def _conditions_hold(self, conn: Connection, rule: Rule, event: Event) -> bool:
        wanted = rule.when.get("plan_notifies_gp")
        if wanted is None:
            return True
        active = [
            cp for cp in plan_versions(conn, event.patient_id) if cp.get("status") == "active"
        ]
        for cp in active[-1:]:
            for ext in cp.get("extension", []):
                if ext.get("url") == NOTIFY_GP_URL and ext.get("valueCode") == wanted:
                    return True
        return False

    # ---- recipients and messages -----------------------------------------------------------
    def _apply(
        self, conn: Connection, rule: Rule, event: Event, subscribers: _Subscribers
    ) -> list[str]:
        if rule.to == "patient-gp" and rule.message == "plo-helseopplysninger-lege":
            return [self._plo_to_gp(conn, rule, event)]
        if isinstance(rule.to, dict) and "subscribers" in rule.to:
            return self._to_subscribers(conn, rule, event, rule.to["subscribers"], subscribers)
        raise AddressError(
            f"rule {rule.name}: unsupported recipient/message {rule.to}/{rule.message}"
        )

    def _plo_to_gp(self, conn: Connection, rule: Rule, event: Event) -> str:
        try:
            kith = kith_for(self.settings)
        except SchemaConfigError as exc:
            raise AddressError(f"KITH schemas unusable: {exc}") from None
        if kith is None:
            raise AddressError("INTEROP_KITH_SCHEMA_DIR is not set: KITH messages cannot be built")
        deviation = self._deviation(conn, event) if event.name.startswith("triage.") else None
        try:
            msg = self._compose(conn, kith, rule, event, deviation)
        except InvalidOutgoingMessage as exc:
            # a message that does not validate never leaves: the schema's message says why
            raise AddressError(f"the message does not validate: {exc}") from None
        except LookupError as exc:
            # a client's Observation about a Patient this server does not hold
            raise AddressError(str(exc)) from None
        return self._enqueue_kith(conn, event, msg)

    def _compose(
        self, conn: Connection, kith: Any, rule: Rule, event: Event, deviation: Any
    ) -> Any:
        return compose_gp_message(
            self.store,
            conn,
            kith,
            event.patient_id,
            content_type=rule.content_type or "3",
            deviation=deviation,
            zone_name=self.settings.timezone,
        )

    def _enqueue_kith(self, conn: Connection, event: Event, msg: Any) -> str:
        return enqueue(
            conn,
            event=event.name,
            kind=msg.kind,
            destination=msg.recipient.destination.endpoint,
            transport=msg.recipient.destination.transport,
            address=msg.recipient.destination.address,
            content_type="application/xml",
            payload=msg.payload,
            msg_id=msg.msg_id,
            patient_id=event.patient_id,
            focus=event.focus,
            expects_apprec=True,
            conversation_ref=msg.msg_id,
        )

    def _deviation(self, conn: Connection, event: Event) -> dict[str, Any]:
        data = dict(event.data)
        code = str(data.get("code"))
        data.setdefault("display", display(code))
        when = fhir_instant(str(data["time"]), self.settings.timezone)
        ranges = ranges_in_force(conn, event.patient_id, when, self.settings.timezone).get(code)
        if ranges is None:
            ranges = defaults_for_patient(conn, event.patient_id).get(code)
        if ranges is not None:
            data["green"] = [None if x is None else float(x) for x in ranges.green]
            data["plan"] = ranges.source != "default"
            data["action"] = ranges.actions.get(str(data.get("zone")))
        return data

    def _to_subscribers(
        self, conn: Connection, rule: Rule, event: Event, code: str, subscribers: _Subscribers
    ) -> list[str]:
        """One message (or one per Bundle of at most ``pmd.MAX_ENTRIES``) per active Endpoint
        subscribed with ``code``; the payload is built only when there is a subscriber."""
        destinations = [
            dest
            for eid in subscribers.endpoints(conn, code)
            if (dest := subscribers.destination(self.store, conn, eid)) is not None
        ]
        if not destinations:
            return []
        payloads = self._subscriber_payloads(conn, rule, event)
        rows: list[str] = []
        for dest in destinations:
            for payload in payloads:
                rows.append(
                    enqueue(
                        conn,
                        event=event.name,
                        kind=rule.message,
                        destination=dest.endpoint,
                        transport=dest.transport,
                        address=dest.address,
                        content_type="application/json"
                        if rule.message == NHN_PLAN
                        else "application/fhir+json",
                        payload=payload,
                        patient_id=event.patient_id,
                        focus=event.focus,
                    )
                )
        return rows

    def _subscriber_payloads(self, conn: Connection, rule: Rule, event: Event) -> list[bytes]:
        if rule.message == "fhir-resource":
            if not event.focus or "/" not in event.focus:
                return []
            rtype, rid = event.focus.split("/", 1)
            found = self.store.get(rtype, rid, conn)
            return [bytes(found.content)] if found is not None and not found.deleted else []
        if rule.message in ("fhir-observations", "pmd-observations"):
            stored = load_observations(conn, event.data.get("observations") or [])
            if not stored:
                return []
            if rule.message == "fhir-observations":
                bundles = observation_bundles(stored)
            else:
                bundles = pmd_bundles(
                    self.store,
                    conn,
                    event.patient_id,
                    stored,
                    bundle_type=self.settings.pmd_bundle_type,
                )
            return [orjson.dumps(b) for b in bundles]
        if rule.message == "vkp-dho-document":
            return journal_payloads(self.store, conn, event.focus)
        if rule.message == NHN_PLAN:
            return plan_payloads(self.store, conn, event.focus, self.settings.edi2_source_system)
        raise AddressError(f"rule {rule.name}: unsupported message {rule.message} for subscribers")


def router_for(services: Any) -> Router:
    """The services' router (made once per Services)."""
    router: Router | None = getattr(services, "_router", None)
    if router is None:
        router = Router(services)
        services._router = router
    return router
