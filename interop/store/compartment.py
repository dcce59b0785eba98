"""The Patient compartment of a search (``Patient/{id}/{type}``, ``Patient/{id}/*``): every
resource that refers to the patient through one of the links the R4 Patient
CompartmentDefinition names for its type (``fhir_profiles/r4/compartment-patient.json``:
Condition ``patient`` and ``asserter``, Encounter ``subject``, Observation ``subject`` and
``performer`` …), not only through ``patient``/``subject``.

Which links a type has is data; which resources an actor sees of what they find is not
decided here: the access policy restricts and filters every compartment search on each
resource's *own* patient (``resource.patient_id``: the first link that holds a Patient), so a
Condition of patient B asserted by patient A is in A's compartment, yet shown only to whom may
read B's data.
"""

from __future__ import annotations

from functools import lru_cache

from sqlalchemy import ColumnElement, Connection, or_, select

from interop.fhir.r4_definitions import patient_compartment_params
from interop.fhir.searchparams import definitions
from interop.store.schema import reference_table, resource_table

PATIENT = "Patient"


@lru_cache(maxsize=256)
def links(rtype: str) -> tuple[str, ...]:
    """The reference parameters through which a resource of ``rtype`` is in a Patient's
    compartment: the CompartmentDefinition's, as the type defines them, then those the
    project's parameters mark as compartment links (R4 lists Device in the compartment with
    no parameter; the project's ``Device.patient`` is its link, as the policy and
    ``$everything`` already hold)."""
    defs = definitions(rtype)
    named = [
        name
        for name in patient_compartment_params().get(rtype, ())
        if name in defs and defs[name].type == "reference"
    ]
    own = [n for n, p in defs.items() if p.compartment and p.type == "reference" and n not in named]
    return (*named, *own)


def in_compartment(rtype: str) -> bool:
    return rtype == PATIENT or bool(links(rtype))


@lru_cache(maxsize=256)
def own_link(rtype: str) -> tuple[str, str] | None:
    """(parameter, value prefix) that names the patient a resource is *about* (``_id`` of a
    Patient, else ``patient``, else ``subject``), or None (a Group's members, an
    Appointment's actors: only links)."""
    if rtype == PATIENT:
        return ("_id", "")
    defs = definitions(rtype)
    for name in ("patient", "subject"):
        if name in defs and defs[name].type == "reference":
            return (name, "Patient/")
    return None


@lru_cache(maxsize=256)
def _other_links(rtype: str) -> tuple[str, ...]:
    """The links besides the own one (or one on the same element: MedicationRequest
    ``subject`` beside ``patient``) whose Patient references the generic reference table holds
    (an Observation's ``subject`` Patient is its ``patient``, in the observation index)."""
    own = own_link(rtype)
    defs = definitions(rtype)
    own_paths = defs[own[0]].paths if own is not None and own[0] in defs else None
    return tuple(
        name
        for name in links(rtype)
        if defs[name].paths != own_paths and defs[name].index != "observation"
    )


def _referring(rtype: str, names: tuple[str, ...], pid: str) -> ColumnElement[bool]:
    t = reference_table.c
    return resource_table.c.res_id.in_(
        select(t.res_id).where(
            t.res_type == rtype, t.param.in_(names), t.target == f"{PATIENT}/{pid}"
        )
    )


def own_link_alone(conn: Connection, rtype: str, pid: str) -> tuple[str, str] | None:
    """The own link as a search parameter (``patient=Patient/{pid}``) when nothing of the
    type refers to the patient through another link (the common case: the search is the one
    it always was, and the policy narrows it to the patient as it does a type search), else
    None (then :func:`condition`)."""
    own = own_link(rtype)
    if own is None:
        return None
    others = _other_links(rtype)
    if others:
        t = reference_table.c
        linked = conn.execute(
            select(t.res_id)
            .where(t.res_type == rtype, t.param.in_(others), t.target == f"{PATIENT}/{pid}")
            .limit(1)
        ).first()
        if linked is not None:
            return None
    return (own[0], own[1] + pid)


def condition(rtype: str, pid: str) -> ColumnElement[bool]:
    """In the patient's compartment through any link: the own patient's
    (``resource.patient_id``, which holds an Observation's Patient subject too), or any
    link's reference to the patient."""
    r = resource_table.c
    return or_(r.patient_id == pid, _referring(rtype, links(rtype), pid))
