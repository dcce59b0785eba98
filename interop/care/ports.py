"""What the care core needs of the service around it, as a protocol: the store, the
settings and the access policy. ``interop.services.Services`` is one; the care core never imports the wiring (which
imports routing, messaging and the views)."""

from __future__ import annotations

from typing import Protocol

from interop.access.policy import AccessPolicy
from interop.config import Settings
from interop.store.repository import FhirStore


class CareServices(Protocol):
    @property
    def store(self) -> FhirStore: ...

    @property
    def settings(self) -> Settings: ...

    @property
    def policy(self) -> AccessPolicy: ...
