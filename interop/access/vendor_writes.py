"""What a vendor (*leverandør*) may write through the ingest doors: ``POST /ingest/{adapter}``
and HL7 v2 over MLLP.

* A vendor writes measurements only for the patients linked to it: a patient-link row in one
  of its own user-id namespaces (``vendor_user_system(name)``, or a sub-namespace
  ``…:<oid>`` of it), made by the follow-up centre or an admin. How the message names the
  patient (fødselsnummer, PID-3, OpenTele ``PatientId``, ``?patient=``, a FHIR reference, a
  vendor user id) does not matter: the patient it resolves to must be one of those.
* An item for anyone else is refused with the reason code ``not-linked`` and one text that
  does not depend on whether the person is a patient of the service: an unknown fødselsnummer
  and a known but unlinked one get the same answer, and neither waits in the quarantine (a
  held item would be released once the person became a patient, into a name the vendor was
  never given). Only the vendor's own user ids still wait there for a link, which can only be
  made in the vendor's own namespace.
* A vendor changes only what it created: what a vendor ingests carries its mark in
  ``meta.source``; an update (same identifier, changed content) of a resource without that
  mark is refused with ``created-by-other-source``.

The follow-up centre ingests only for the patients its organisation manages
(:meth:`VendorWriter.for_followup`: an item for anyone else it knows is refused as
``not-linked``; a person not yet known waits in the quarantine, as before, until a person
makes the patient; it may correct what others stored). Admins ingest without limits.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from sqlalchemy import Connection, or_, select

from adapters.base import Diagnostic, PatientRef, vendor_user_system
from interop.access.actor import Actor
from interop.store.schema import patient_link_table

NOT_LINKED = "not-linked"
"""Reason code: the patient is not linked to the vendor (or not known at all: never told apart)."""
CREATED_BY_OTHER_SOURCE = "created-by-other-source"
"""Reason code: the stored resource this item would change was not created by the vendor."""
MARK_PREFIX = "urn:dho-interop:vendor:"


@dataclass(frozen=True, slots=True)
class VendorWriter:
    """A vendor writing measurements: its name (org.nr, else the actor id) is its user-id
    namespace and the mark on what it creates."""

    name: str
    scopes: tuple[str, ...] = ()
    """Further user-id namespaces the deployer declared the vendor's own (the PID-3 assigning
    authorities an MLLP sender uses, see :mod:`interop.ingest.mllp_senders`)."""
    patients: frozenset[str] | None = None
    """For the follow-up centre: the patients it manages (a vendor's come from its links)."""

    @classmethod
    def for_followup(cls, actor: Actor, patients: frozenset[str]) -> VendorWriter:
        """The follow-up centre's limits: its own patients; unknown people wait in the
        quarantine; no mark, and it may correct what others stored."""
        return cls(actor.orgnr or actor.id, patients=patients)

    @property
    def is_vendor(self) -> bool:
        return self.patients is None

    @classmethod
    def for_actor(cls, actor: Actor) -> VendorWriter | None:
        """The limits for an actor: a vendor gets them, every other ingesting role none."""
        if actor.role != "vendor":
            return None
        return cls(actor.orgnr or actor.id)

    @property
    def systems(self) -> tuple[str, ...]:
        return tuple(vendor_user_system(s) for s in (self.name, *self.scopes))

    @property
    def mark(self) -> str:
        """``meta.source`` of what the vendor creates."""
        return MARK_PREFIX + quote(self.name, safe="")

    def owns_system(self, system: str) -> bool:
        """A user-id namespace of the vendor's own (or a sub-namespace of one); for the
        follow-up centre every namespace (its unknown people wait in the quarantine)."""
        if not self.is_vendor:
            return True
        return any(system == s or system.startswith(s + ":") for s in self.systems)

    def linked_patients(self, conn: Connection) -> set[str]:
        """Ids of the patients linked to the vendor (the follow-up centre's own patients)."""
        if self.patients is not None:
            return set(self.patients)
        link = patient_link_table
        conds = [link.c.system == s for s in self.systems]
        conds += [link.c.system.startswith(s + ":", autoescape=True) for s in self.systems]
        return {r[0] for r in conn.execute(select(link.c.patient_id).where(or_(*conds)))}

    def created(self, resource: dict[str, Any] | None) -> bool:
        """Whether a stored resource carries the vendor's mark (the follow-up centre may
        correct anything of its patients)."""
        if not self.is_vendor:
            return True
        meta = (resource or {}).get("meta")
        return isinstance(meta, dict) and meta.get("source") == self.mark

    def stamp(self, resource: dict[str, Any]) -> None:
        """Mark a resource the vendor creates (``meta.source``); the follow-up centre's are not."""
        if not self.is_vendor:
            return
        meta = resource.get("meta")
        resource["meta"] = {**(meta if isinstance(meta, dict) else {}), "source": self.mark}

    def not_linked(self, ref: PatientRef, location: str | None) -> Diagnostic:
        """The refusal of an item for a patient not linked to the vendor. Its text names only
        what the vendor sent, so it reads the same whether or not the person is known here."""
        if not self.is_vendor:
            return Diagnostic(
                "error",
                NOT_LINKED,
                f"{ref.system}|{ref.value} er ikke en av pasientene til {self.name}; "
                "målingen er ikke lagret",
                location,
            )
        return Diagnostic(
            "error",
            NOT_LINKED,
            f"{ref.system}|{ref.value} er ikke en pasient knyttet til leverandøren {self.name}; "
            "målingen er ikke lagret (oppfølgingstjenesten knytter pasienter til en leverandør)",
            location,
        )

    def not_created(self, identifier: tuple[str, str], location: str | None) -> Diagnostic:
        """The refusal of a change to a stored resource another source created (named by the
        identifier the vendor sent, never by the stored resource's id)."""
        return Diagnostic(
            "error",
            CREATED_BY_OTHER_SOURCE,
            f"{identifier[0]}|{identifier[1]} er lagret fra en annen kilde enn leverandøren "
            f"{self.name} og kan ikke endres av den",
            location,
        )
