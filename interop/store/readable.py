"""What an actor may read, as the store applies it to the resources a search only asks about.

A search returns resources of one type, restricted by the access policy's parameters; through
``_has`` and chains it also asks about resources of other types it never returns. Those are
asked only of what the actor may read (:class:`Readable`, set by the policy beside its
restriction), or a search of a readable resource would answer questions about another
patient's data: whether a fødselsnummer is a patient of the service (a GP's Practitioner found
by ``_has:Patient:general-practitioner:identifier``), a diagnosis, a birth date.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import orjson
from sqlalchemy import ColumnElement, false, literal, or_, select

from interop.store import compartment
from interop.store.schema import observation_table, reference_table, resource_table


class _ObservationIndex(Protocol):
    """What :meth:`Readable.narrow` asks of the search (the Observation index's code rows)."""

    def observation_conditions(
        self, obs_params: list[tuple[str, str | None, list[str]]]
    ) -> tuple[list[ColumnElement[bool]], bool]: ...


READABLE = "\x00readable"
"""The key of the policy's :class:`Readable` among its restriction parameters (a NUL is in no
parameter a client sends)."""


def own_patients_condition(res_type: str, ids: Sequence[str], table: Any) -> ColumnElement[bool]:
    """Resources of ``res_type`` (rows of ``table``, the resource table or an alias) whose
    patient compartment is one of ``ids``; for a type about several patients (a Group's
    members) every one of them must be, as on a read (the policy's ``owner_patients``)."""
    cond: ColumnElement[bool] = table.c.patient_id.in_(list(ids))
    if compartment.own_link(res_type) is not None:
        return cond
    r = reference_table.c
    others = (
        select(literal(1))
        .where(
            r.res_type == res_type,
            r.res_id == table.c.res_id,
            r.param.in_(compartment.links(res_type)),
            r.target.startswith("Patient/"),
            r.target.not_in([f"Patient/{i}" for i in ids]),
        )
        .exists()
    )
    return cond & ~others


@dataclass(frozen=True, slots=True)
class Readable:
    """The resources a restricted actor may read, whatever their type: those of the ``open``
    types (the address book), those of an ``ownerless`` type without a patient, and those in
    the compartment of one of ``patients`` (all of them for a Group); Observations only with
    one of ``codes`` when the actor's view has codes. Anything else (a type without a
    patient compartment, the audit log) is not readable."""

    patients: tuple[str, ...]
    codes: tuple[str, ...] | None
    open: tuple[str, ...]
    ownerless: tuple[str, ...]

    def param(self) -> tuple[str, str]:
        """As one of the policy's restriction parameters."""
        body = {
            "patients": list(self.patients),
            "codes": None if self.codes is None else list(self.codes),
            "open": list(self.open),
            "ownerless": list(self.ownerless),
        }
        return READABLE, orjson.dumps(body).decode()

    @staticmethod
    def from_restriction(restriction: Sequence[tuple[str, str]]) -> Readable | None:
        for key, raw in restriction:
            if key == READABLE:
                body = orjson.loads(raw)
                codes = body.get("codes")
                return Readable(
                    tuple(body["patients"]),
                    None if codes is None else tuple(codes),
                    tuple(body["open"]),
                    tuple(body["ownerless"]),
                )
        return None

    def condition(
        self, engine: _ObservationIndex, res_type: str, res_id: Any
    ) -> ColumnElement[bool] | None:
        """``res_id`` (a column of ``res_type`` ids) is one the actor may read; None when every
        resource of the type is (the address book)."""
        if res_type in self.open:
            return None
        x = resource_table.alias("readable")
        own = own_patients_condition(res_type, self.patients, x)
        if res_type in self.ownerless:
            own = or_(x.c.patient_id.is_(None), own)
        conds = [x.c.res_type == res_type, x.c.deleted == false(), own]
        if res_type == "Observation" and self.codes is not None:
            oconds, _has_code = engine.observation_conditions(
                [("code", None, list(self.codes) or ["__no-code__"])]
            )
            conds.append(x.c.res_id.in_(select(observation_table.c.res_id).where(*oconds)))
        return res_id.in_(select(x.c.res_id).where(*conds).correlate(None))

    def narrow(self, engine: _ObservationIndex, res_type: str, ids: Any) -> Any:
        """``ids`` (a ``select`` of one ``res_id`` column of ``res_type``) left with the
        readable ones."""
        inner = ids.subquery("asked")
        cond = self.condition(engine, res_type, inner.c.res_id)
        return ids if cond is None else select(inner.c.res_id).where(cond)
