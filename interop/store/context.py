"""The write context: who writes, and through which door.

Every store write names it (``store.write(WriteContext(actor, Door.FHIR))``), so the hooks
that follow a write (audit, triage) read it from one typed place instead of flags a caller
may forget. The store knows the actor only as a :class:`Principal`; the access layer's
``Actor`` is one.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol


class Principal(Protocol):
    """Whoever acts (an ``interop.access.actor.Actor``)."""

    @property
    def id(self) -> str: ...

    @property
    def role(self) -> str: ...


class Door(StrEnum):
    """The way a write came in."""

    FHIR = "fhir"
    """``/fhir`` REST: create, update, delete, conditional create."""
    BUNDLE = "bundle"
    """A FHIR transaction or batch Bundle posted to ``/fhir``."""
    INGEST = "ingest"
    """An adapter's message or file (``/ingest/*``, ``interop ingest``)."""
    MLLP = "mllp"
    """HL7 v2 over MLLP, processed from the inbound store."""
    PLAN = "plan"
    """The self-management plan endpoint."""
    MESSAGE = "message"
    """KITH messages and AppRecs received (HTTP, EDI 2.0, file drop)."""
    LINK = "link"
    """Patient links and the quarantine."""
    AUDIT = "audit"
    """The audit log's own events."""
    EMERGENCY = "emergency"
    """Emergency access (*nødrett*) opened by an actor."""
    WORKLIST = "worklist"
    """The follow-up centre's actions on a Task from its worklist (take, note, complete)."""
    SERVICE = "service"
    """The service's own work: the worker, periodic jobs, the CLI, the demo, benchmarks."""


@dataclass(frozen=True, slots=True)
class WriteContext:
    actor: Principal | None
    """Who writes; None for the service's own work (``Door.SERVICE``)."""
    door: Door

    @classmethod
    def service(cls) -> WriteContext:
        """A write by the service itself (worker, periodic jobs, CLI, demo)."""
        return SERVICE


SERVICE = WriteContext(None, Door.SERVICE)
