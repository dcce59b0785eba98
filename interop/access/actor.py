"""Who is acting: the :class:`Actor` every access decision, audit event and write names.

An actor comes from an API key (vendors, operators), the bootstrap admin key, or a HelseID
access token (EPJ systems, hospitals, municipalities: a system acting for its organisation or a
named health professional acting with their HPR number).
"""

from __future__ import annotations

from dataclasses import dataclass, field

ROLES = ("gp", "hospital", "epj", "followup", "vendor", "admin")
"""gp = fastlege (the patient's regular GP); epj = the municipal patient record system;
followup = the municipal follow-up centre (*oppfølgingstjenesten*)."""


@dataclass(frozen=True, slots=True)
class Actor:
    id: str
    role: str
    orgnr: str | None = None
    herid: str | None = None
    hpr: str | None = None
    purpose: str | None = None
    name: str | None = None
    extra: dict[str, str] = field(default_factory=dict)
    source: str = "key"
    """How the actor was authenticated: ``bootstrap`` (the admin key), ``key`` (an API key) or
    ``helseid`` (a HelseID access token)."""

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"


ADMIN = Actor(id="admin", role="admin", name="bootstrap admin key", source="bootstrap")
