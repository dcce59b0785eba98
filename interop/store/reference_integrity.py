"""Referential integrity of client writes: a resource never points at a Patient that is not
there, and a Patient that others point at is not deleted (409).

Run as a store guard, after the access policy's guard (so an actor learns nothing about a
Patient it may not see): on create and update every reference to a Patient on this server must
name a stored, not deleted Patient or one the same transaction creates
(``tx.context[PENDING]``, set by the Bundle processor); a ``urn:`` reference left unresolved is
refused. References to other servers (absolute URLs with another base) are not checked.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

from sqlalchemy import and_, exists, or_, select

from interop.fhir.outcome import FhirError, Issue
from interop.fhir.references import (
    conditional_reference_issues,
    parse_literal,
    reference_strings,
    references,
    unresolved_urn_issues,
)
from interop.store.repository import FhirStore, StoredResource, WriteTx
from interop.store.schema import reference_table, resource_table
from interop.store.value_lists import one_of_sql

PENDING = "references.pending"
"""``tx.context`` key: ``Type/id`` of the resources the running transaction creates."""
_KNOWN = "references.known_patients"
_NOT_HOLDING = ("AuditEvent",)


class ReferenceIntegrity:
    def __init__(self, store: FhirStore) -> None:
        self.store = store

    def __call__(
        self, tx: WriteTx, resource: dict[str, Any] | None, current: StoredResource | None
    ) -> None:
        if resource is None:
            if current is not None and current.res_type == "Patient":
                self._not_referenced(tx, current.res_id)
            return
        if resource.get("resourceType") in _NOT_HOLDING:
            return  # the audit trail records what was asked for, there or not
        strings = reference_strings(resource)
        conditional = conditional_reference_issues(resource, strings)
        if conditional:
            raise FhirError(400, conditional)
        issues: list[Issue] = []
        if any(r.startswith("urn:") for r in strings):
            issues = unresolved_urn_issues(
                resource, "names no entry of this Bundle: the reference cannot be resolved"
            )
        known: set[str] = tx.context.setdefault(_KNOWN, set())
        pending: set[str] = tx.context.get(PENDING) or set()
        missing: set[str] = set()
        for reference, key in self._patients(strings):
            if key in known or key in pending:
                continue
            stored = tx.get("Patient", key[8:])
            if stored is not None and not stored.deleted:
                known.add(key)
            else:
                missing.add(reference)
        if missing:
            # where they are (the walk is only needed to say so)
            where = {r.reference: r.expression for r in references(resource)}
            for reference in sorted(missing):
                expr = where.get(reference, resource.get("resourceType", ""))
                issues.append(
                    Issue(
                        "error",
                        "not-found",
                        f"{expr}: {reference!r} names no Patient on this server",
                        (expr,),
                    )
                )
        if issues:
            raise FhirError(422, issues)

    def before_guards(self, tx: WriteTx, resources: list[dict[str, Any]]) -> None:
        """Before the guard checks several resources written together: which of the Patients
        they name are there, in one statement (the guard then looks up only those that are
        not, to say so)."""
        known: set[str] = tx.context.setdefault(_KNOWN, set())
        pending: set[str] = tx.context.get(PENDING) or set()
        wanted = sorted(
            {
                key[8:]
                for resource in resources
                if resource.get("resourceType") not in _NOT_HOLDING
                for _reference, key in self._patients(reference_strings(resource))
                if key not in known and key not in pending
            }
        )
        if not wanted:
            return
        is_one_of, values = one_of_sql(tx.conn, wanted)
        found = tx.conn.exec_driver_sql(
            f"SELECT res_id FROM resource WHERE res_type = 'Patient' AND NOT deleted AND res_id {is_one_of}",
            (values,),
        )
        known.update(f"Patient/{pid}" for (pid,) in found)

    def _patients(self, strings: Iterable[str]) -> Iterator[tuple[str, str]]:
        """(reference, ``Patient/<id>``) of each reference to a Patient on this server."""
        for reference in strings:
            parsed = parse_literal(reference)
            if parsed is None or parsed[0] != "Patient":
                continue
            _type, pid, base = parsed
            if base is not None and base.rstrip("/") not in self._own_bases():
                continue  # another server's Patient
            yield reference, f"Patient/{pid}"

    def _own_bases(self) -> set[str]:
        base = self.store.base_url
        return {base, f"{base}/fhir"} if base else set()

    def _not_referenced(self, tx: WriteTx, patient_id: str) -> None:
        """409 when another current resource refers to the Patient."""
        target = f"Patient/{patient_id}"
        # the audit trail of who read or changed the Patient does not hold it in place
        others = or_(
            exists().where(
                and_(
                    resource_table.c.patient_id == patient_id,
                    resource_table.c.deleted.is_(False),
                    resource_table.c.res_type.not_in(_NOT_HOLDING),
                    or_(
                        resource_table.c.res_type != "Patient",
                        resource_table.c.res_id != patient_id,
                    ),
                )
            ),
            exists().where(
                and_(
                    reference_table.c.target == target,
                    reference_table.c.res_type.not_in(_NOT_HOLDING),
                )
            ),
        )
        if tx.conn.execute(select(others)).scalar():
            raise FhirError(
                409,
                [
                    Issue(
                        "error",
                        "conflict",
                        f"{target} is referenced by other resources (its Observations, plans or "
                        "others) and cannot be deleted",
                    )
                ],
            )
