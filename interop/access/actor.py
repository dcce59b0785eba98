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
    """Purpose of use (HL7 PurposeOfUse: ``TREAT``, ``ETREAT``, ``COC`` …) from the
    Tillitsrammeverk attest of a HelseID token."""
    name: str | None = None
    extra: dict[str, str] = field(default_factory=dict)
    source: str = "key"
    """How the actor was authenticated: ``bootstrap`` (the admin key), ``key`` (an API key) or
    ``helseid`` (a HelseID access token)."""
    client_id: str | None = None
    """The HelseID client (the calling system) for ``helseid`` actors."""
    security_level: int | None = None
    """HelseID ``security_level`` of a logged-in user (4 = high assurance); None for systems."""
    pid: str | None = field(default=None, repr=False)
    """The logged-in user's fødselsnummer/D-nummer (HelseID ``pid``). Sensitive: never log it
    (it is left out of ``repr``)."""
    point_of_care: str | None = None
    """Tillitsrammeverk attest: the org.nr where the user works with the patient."""
    healthcare_service: str | None = None
    """Tillitsrammeverk attest: the care relationship's health service code (e.g. ``KP02``)."""
    decision_ref: str | None = None
    """Tillitsrammeverk attest: the caller's own reference to its access decision."""

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"


ADMIN = Actor(id="admin", role="admin", name="bootstrap admin key", source="bootstrap")


CLI_ACTOR_NAME = "interop command line"


def cli_actor() -> Actor:
    """Who the audit log names for what an operator does at the command line, with the
    database's credentials (an admin)."""
    import getpass

    return Actor(id=f"cli:{getpass.getuser()}", role="admin", name=CLI_ACTOR_NAME)
