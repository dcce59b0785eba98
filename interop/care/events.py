"""Domain events the care core raises while a write transaction runs.

The care core (plans, triage, deviations) judges measurements and keeps Tasks and Flags; it
never imports routing, messaging, views or the API. What others must hear about it says as a
typed event, collected on the write context (:func:`raise_event`, in ``tx.context``) and
handed to the subscribers wired in ``interop.services`` (:class:`Subscriptions`), in the
same transaction, before it commits: what a subscriber writes (an outbox row, a journal
entry) commits with the data that caused it, or not at all.

Events
------
``MeasurementJudged``
    Every measurement triage judged (any door), with its zone.
``DeviationOpened``
    A yellow or red reading (or questionnaire) opened a deviation: a new assessment Task.
``DeviationEscalated``
    An open deviation's worst reading became worse (yellow → red).
``DeviationClosed``
    A person completed a deviation Task (or it was cancelled): who (``owner``), when
    (``closed_at``, the Task's ``executionPeriod.end``) and what was done (``outcome``). For
    subscribers such as journaling to the patient record (VKP) and the follow-up worklist.
``PlanChanged``
    A new version of the patient's self-management plan (egenbehandlingsplan).
``PlanAnswered``
    The patient's GP answered a proposed plan (the API, the GP's page, or a Dialogmelding
    *svar*): approved it, asked for changes, or said something the service cannot read as
    either. The follow-up centre hears it (a routine Task on its worklist).

A deviation raised by a late reading (taken longer ago than ``INTEROP_LATE_AFTER_HOURS``;
*etterregistrert*) has ``late=True``: its Task is routine and nobody is messaged urgently.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from interop.store.repository import WriteTx

EVENTS_KEY = "events"
"""Where a transaction collects its events (``tx.context[EVENTS_KEY]``, a list)."""


@dataclass(frozen=True, slots=True)
class DomainEvent:
    patient_id: str


@dataclass(frozen=True, slots=True)
class MeasurementJudged(DomainEvent):
    observation: str
    """``Observation/<id>``"""
    code: str
    zone: str
    """``green``, ``yellow``, ``red`` or ``not-assessed``."""
    time: str
    late: bool = False


@dataclass(frozen=True, slots=True)
class Deviation(DomainEvent):
    """What a deviation's events carry: its Task and the reading it is now about."""

    task: str
    """``Task/<id>``"""
    code: str
    """The measurement's LOINC code, or ``questionnaire``."""
    zone: str
    reading: str
    """The reading as text (``150/95 mm[Hg]``; a questionnaire's title and severity)."""
    time: str
    value: float | None = None
    unit: str | None = None
    focus: str | None = None
    """The Observation or QuestionnaireResponse that raised or escalated it."""
    display: str | None = None
    late: bool = False
    bound: str | None = None
    """A value the source gave only as a bound (``>``, ``<`` …): the comparator."""


@dataclass(frozen=True, slots=True)
class DeviationOpened(Deviation):
    pass


@dataclass(frozen=True, slots=True)
class DeviationEscalated(Deviation):
    pass


@dataclass(frozen=True, slots=True)
class DeviationClosed(DomainEvent):
    task: str
    """``Task/<id>`` of the deviation (``assess-deviation`` or ``assess-questionnaire``)."""
    code: str | None
    status: str
    """``completed`` or ``cancelled``."""
    owner: dict[str, Any] | None
    """The Task's ``owner`` reference: who assessed it."""
    closed_at: str
    """The Task's ``executionPeriod.end``."""
    outcome: str | None
    """What was done, as the Task's output (or its status reason / last note) says."""


@dataclass(frozen=True, slots=True)
class PlanChanged(DomainEvent):
    care_plan: str
    """``CarePlan/<id>`` of the new version."""


@dataclass(frozen=True, slots=True)
class PlanAnswered(DomainEvent):
    care_plan: str
    """``CarePlan/<id>`` the GP answered."""
    decision: str
    """``approved``, ``changes`` (back to draft), ``unclear`` (still proposed) or
    ``not-the-gp`` (an approval from someone who is not the patient's GP: still proposed)."""
    gp_name: str | None
    gp: str | None
    """``Practitioner/<id>`` of the answering GP, when known."""
    comment: str | None
    """The GP's own words (the page's text, the svar's text); None for a bare approval."""
    time: str
    door: str
    """``api``, ``page`` or ``dialogmelding``."""


def raise_event(tx: WriteTx, event: DomainEvent) -> None:
    """Collect ``event`` on the write context, for the subscribers at the transaction's end."""
    tx.context.setdefault(EVENTS_KEY, []).append(event)


E = TypeVar("E", bound=DomainEvent)
Handler = Callable[[WriteTx, Any], None]


class Subscriptions:
    """Who hears which event: handlers by event type (a subclass's events reach the handlers
    of its bases too), called in the order they subscribed."""

    def __init__(self) -> None:
        self._handlers: list[tuple[type[DomainEvent], Handler]] = []

    def subscribe(self, event_type: type[E], handler: Callable[[WriteTx, E], None]) -> None:
        self._handlers.append((event_type, handler))

    def publish(self, tx: WriteTx, events: list[DomainEvent]) -> None:
        for event in events:
            for event_type, handler in self._handlers:
                if isinstance(event, event_type):
                    handler(tx, event)

    def publish_pending(self, tx: WriteTx) -> None:
        """Hand the domain events collected so far to their subscribers (other entries of the
        list, such as routing's own events, stay for the router)."""
        pending: list[Any] = tx.context.get(EVENTS_KEY) or []
        domain = [e for e in pending if isinstance(e, DomainEvent)]
        if not domain:
            return
        tx.context[EVENTS_KEY] = [e for e in pending if not isinstance(e, DomainEvent)]
        self.publish(tx, domain)
