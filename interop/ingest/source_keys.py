"""Idempotency keys of ingested items, scoped to the patient they are about.

A source's own id for a measurement is unique only within that source and patient: Fitbit
documents ``logId`` as unique per user, devices are re-issued between patients, vendors number
their exports. The same source id arriving for another patient is therefore never the same
item — never a duplicate of, and never an update to, the first patient's Observation (whose
subject never changes through ingest) — and it is a **conflict** an operator should see.

Keys, without a schema change (compatible with identifiers already stored):

* The first patient to bring a source id gets the source's own identifier unchanged
  (``system|value``), as before: every Observation stored before this change keeps its key,
  and a re-send of it for the same patient is still recognised.
* That id arriving for a *different* patient gets the patient-scoped form
  ``system|value@<scope>``, ``scope`` being the first 16 hex digits of SHA-256 over the source
  system, the patient's identifier system and value (:func:`scoped_key`). The item is stored on
  its own patient, reported as ``identifier-conflict`` and kept in the operator list
  (``GET /api/v1/quarantine?status=conflict``).
* Items without a source id already have a key over device, patient, code and time.

Whether a stored item belongs to "the same patient" is decided on the resolved Patient (two
ways of naming one patient, e.g. a vendor user id linked to a fødselsnummer, are one patient).
"""

from __future__ import annotations

import hashlib

from adapters.base import PatientRef

DIAG_IDENTIFIER_CONFLICT = "identifier-conflict"
"""Reason code of an item whose source id was used before for another patient."""

CONFLICT_STATUS = "conflict"
"""Quarantine-table status of the operator's record of an identifier conflict (listed by
``GET /api/v1/quarantine?status=conflict``; never released automatically)."""

_MAX_VALUE = 255
"""Longest identifier value the store's identifier claims hold."""


def _scope(system: str, patient: PatientRef) -> str:
    text = "\x1f".join([system, patient.system, patient.value])
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def scoped_key(key: tuple[str, str], patient: PatientRef) -> tuple[str, str]:
    """The patient-scoped form of a source's id ``key`` (system, value) for ``patient``."""
    system, value = key
    scope = _scope(system, patient)
    if len(value) + 1 + len(scope) > _MAX_VALUE:
        value = hashlib.sha256(value.encode()).hexdigest()
    return system, f"{value}@{scope}"


def conflict_message(key: tuple[str, str]) -> str:
    return (
        f"the source id {key[0]}|{key[1]} was used before for another patient: stored as a "
        "measurement of this patient only (the other patient's data is unchanged) and kept "
        "for an operator to check"
    )
