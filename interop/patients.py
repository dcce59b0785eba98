"""Patient identity: national ids and vendor user ids → a Patient in the store.

A fødselsnummer/D-nummer finds the Patient with that identifier. A vendor's own user id
goes through the patient-link table, which a person maintains (API/CLI). Names are never
used to guess. Unknown patients are not invented: their measurements wait in quarantine.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, delete, insert, select

from adapters.base import DNR_OID, FHIR_REFERENCE, FNR_OID, PatientRef
from interop.fhir.dates import now_utc, to_micros
from interop.fhir.outcome import error
from interop.identifiers import check_identifier
from interop.store.generation import bump
from interop.store.ingest_records import patients_by_identifier
from interop.store.schema import patient_link_table, resource_table, token_table

NATIONAL_SYSTEMS = frozenset({FNR_OID, DNR_OID})


@dataclass(frozen=True, slots=True)
class Resolution:
    patient_id: str | None
    reason_code: str | None = None
    reason: str | None = None


def patient_by_identifier(conn: Connection, system: str, value: str) -> str | None:
    row = conn.execute(
        select(token_table.c.res_id)
        .join(
            resource_table,
            (resource_table.c.res_type == token_table.c.res_type)
            & (resource_table.c.res_id == token_table.c.res_id),
        )
        .where(
            token_table.c.res_type == "Patient",
            token_table.c.param == "identifier",
            token_table.c.system == system,
            token_table.c.code == value,
            resource_table.c.deleted.is_(False),
        )
        .limit(1)
    ).first()
    return row[0] if row else None


def resolve(conn: Connection, ref: PatientRef) -> Resolution:
    if ref.system in NATIONAL_SYSTEMS:
        problem = check_identifier(ref.system, ref.value)
        if problem:
            return Resolution(None, "invalid-identifier", problem)
        pid = patient_by_identifier(conn, ref.system, ref.value)
        if pid is None:
            return Resolution(
                None, "unknown-patient", f"no Patient with identifier {ref.system}|{ref.value}"
            )
        return Resolution(pid)
    if ref.system == FHIR_REFERENCE:
        rtype, _, rid = ref.value.partition("/")
        if rtype != "Patient" or not rid:
            return Resolution(None, "unknown-patient", f"subject {ref.value!r} is not a Patient")
        row = conn.execute(
            select(resource_table.c.deleted).where(
                resource_table.c.res_type == "Patient", resource_table.c.res_id == rid
            )
        ).first()
        if row is None or row[0]:
            return Resolution(None, "unknown-patient", f"{ref.value} is not known here")
        return Resolution(rid)
    linked = conn.execute(
        select(patient_link_table.c.patient_id).where(
            patient_link_table.c.system == ref.system, patient_link_table.c.value == ref.value
        )
    ).scalar()
    if linked is None:
        return Resolution(
            None,
            "unknown-patient",
            f"vendor user {ref.system}|{ref.value} is not linked to a patient "
            "(link it with POST /api/v1/patient-links or `interop link-patient`)",
        )
    return Resolution(linked)


def resolve_many(conn: Any, refs: Iterable[PatientRef]) -> dict[PatientRef, Resolution]:
    """:func:`interop.patients.resolve` for several references: national ids in one
    statement, other references one by one."""
    out: dict[PatientRef, Resolution] = {}
    wanted: dict[str, list[str]] = {}
    for ref in dict.fromkeys(refs):
        if ref.system in NATIONAL_SYSTEMS:
            problem = check_identifier(ref.system, ref.value)
            if problem:
                out[ref] = Resolution(None, "invalid-identifier", problem)
            else:
                wanted.setdefault(ref.system, []).append(ref.value)
        else:
            out[ref] = resolve(conn, ref)
    if wanted:
        found = patients_by_identifier(conn, wanted)
        for system, values in wanted.items():
            for value in values:
                pid = found.get((system, value))
                out[PatientRef(system, value)] = (
                    Resolution(pid)
                    if pid is not None
                    else Resolution(
                        None, "unknown-patient", f"no Patient with identifier {system}|{value}"
                    )
                )
    return out


def link_patient(
    conn: Connection, system: str, value: str, national_id: str, *, created_by: str | None = None
) -> str:
    """Link a vendor user id to the Patient with this fødselsnummer/D-nummer; returns its id."""
    from interop.identifiers import person_id_system

    nsys = person_id_system(national_id)
    if nsys is None:
        raise error(422, "value", f"{national_id!r} is not a valid fødselsnummer or D-nummer")
    pid = patient_by_identifier(conn, nsys, national_id)
    if pid is None:
        raise error(404, "not-found", f"no Patient with {nsys}|{national_id}; create it first")
    conn.execute(
        delete(patient_link_table).where(
            patient_link_table.c.system == system, patient_link_table.c.value == value
        )
    )
    conn.execute(
        insert(patient_link_table).values(
            system=system,
            value=value,
            patient_id=pid,
            created=to_micros(now_utc()),
            created_by=created_by,
        )
    )
    bump(conn)  # the vendor may now write for this patient
    return pid


def display_name(patient: dict[str, Any]) -> str | None:
    """The patient's name as a person reads it (official name first): "Kari Nordmann"."""
    names = patient.get("name") or []
    official = [n for n in names if n.get("use") == "official"] or names
    if not official:
        return None
    n = official[0]
    if n.get("text"):
        return str(n["text"])
    return " ".join([*n.get("given", []), n.get("family", "")]).strip() or None
