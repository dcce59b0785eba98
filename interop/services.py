"""The service's parts wired together once per process (store, search, bundle processing).

The API, the CLI, the ingest pipeline and the workers all take their parts from here, so the
same settings give the same behaviour everywhere.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy import Engine

from interop.access.audit import flush_audit, write_hook
from interop.access.policy import AccessPolicy
from interop.care import task_completion
from interop.care.events import (
    Deviation,
    DeviationClosed,
    DomainEvent,
    PlanAnswered,
    PlanChanged,
    Subscriptions,
)
from interop.care.measurement_checks import MeasurementChecks
from interop.care.plan_notices import PlanNotices
from interop.care.triage import Triage, flush_zone_index
from interop.config import Settings
from interop.mapping import MappingSet
from interop.routing import gp_change
from interop.routing.rules import router_for
from interop.store.db import get_engine
from interop.store.migrate import upgrade
from interop.store.reference_integrity import ReferenceIntegrity
from interop.store.repository import FhirStore, WriteTx
from interop.store.search import SearchEngine
from interop.store.transaction import BundleProcessor

DISPATCH_ROUNDS = 5
"""How many times events raised by subscribers' own writes are handed on before a transaction
gives up (a subscriber that raises what it hears would otherwise never end)."""


@dataclass
class Services:
    settings: Settings
    engine: Engine
    store: FhirStore
    search: SearchEngine
    bundles: BundleProcessor
    policy: AccessPolicy = field(init=False)
    events: Subscriptions = field(init=False)
    """Who hears the care core's domain events (``interop.care.events``)."""
    """The one access policy; it guards every store write made on behalf of an actor."""

    def __post_init__(self) -> None:
        self.events = Subscriptions()
        # routing hears of deviations and plan changes (the care core does not know it)
        self.events.subscribe(Deviation, lambda tx, e: router_for(self).on_deviation(tx, e))
        self.events.subscribe(PlanChanged, lambda tx, e: router_for(self).on_plan_changed(tx, e))
        self.events.subscribe(
            DeviationClosed, lambda tx, e: router_for(self).on_deviation_closed(tx, e)
        )
        # the follow-up centre hears the GP's answer to a proposed plan (a worklist Task)
        self.events.subscribe(PlanAnswered, PlanNotices(self.settings.timezone))
        self.policy = AccessPolicy(self.store, self.settings)
        self.store.guards.append(self.policy.guard_write)
        # after the policy: an actor learns nothing about a Patient it may not see
        integrity = ReferenceIntegrity(self.store)
        self.store.guards.append(integrity)
        self.store.before_guards.append(integrity.before_guards)
        self.store.hooks.append(self.policy.relations_hook)
        if self.bundles is not None:
            self.bundles.policy = self.policy
        # what the care core raised during a write and nobody handled yet (a /fhir write's
        # triage, a closed Task) goes to its subscribers in the same transaction, before the
        # audit trail is written
        self.store.before_commit.insert(0, self.dispatch)

    def dispatch(self, tx: WriteTx) -> None:
        """Hand the events collected on the write context to their subscribers and route
        what routing must send (outbox rows in the same transaction). A subscriber's own
        writes may raise events in turn (a Task it writes): they are handed on too, never left
        behind at commit (a bounded number of rounds)."""
        for _ in range(DISPATCH_ROUNDS):
            self.events.publish_pending(tx)
            if tx.context.get("events") or tx.context.get("observations_created"):
                router_for(self).route_pending(tx)
            if not any(isinstance(e, DomainEvent) for e in tx.context.get("events") or []):
                return
        raise RuntimeError(f"domain events still raised after {DISPATCH_ROUNDS} rounds")


def wire_store(store: FhirStore, settings: Settings | None = None) -> None:
    """Attach the in-transaction steps every write goes through (the measurement checks,
    triage, Flags and Tasks, holding messages for a former GP, the audit trail)."""
    checks = MeasurementChecks(
        MappingSet.load(settings.mappings_dir if settings else None),
        future_skew_seconds=settings.max_future_skew_seconds if settings else 300,
        zone=store.zone,
    )
    store.prepare_hooks.append(checks.prepare)
    triage = Triage(store, late_after_hours=settings.late_after_hours if settings else 24)
    store.prepare_hooks.append(triage.prepare)
    store.prepare_hooks.append(task_completion.prepare)
    store.before_hooks.append(triage.before_hooks)
    store.hooks.append(triage.after_write)
    store.hooks.append(task_completion.after_write)
    # a GP changed by any write path: what is queued for the former GP is held
    store.hooks.append(gp_change.after_write)
    store.before_commit.append(flush_zone_index)
    store.hooks.append(write_hook)
    store.before_commit.append(flush_audit)


def build_services(settings: Settings, *, migrate: bool = True) -> Services:
    engine = get_engine(settings.database_url)
    if migrate:
        upgrade(engine)
    store = FhirStore(engine, zone=settings.timezone, base_url=settings.base_url or "")
    wire_store(store, settings)
    search = SearchEngine(
        store,
        default_count=settings.search_default_count,
        max_count=settings.search_max_count,
        total_limit=settings.total_limit,
        max_values=settings.search_max_values,
    )
    return Services(
        settings=settings,
        engine=engine,
        store=store,
        search=search,
        bundles=BundleProcessor(store, search),
    )
