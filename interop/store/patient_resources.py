"""Current resources of one type for several patients at once (what a batch's hooks read)."""

from __future__ import annotations

from typing import Any

import orjson
from sqlalchemy import select

from interop.store.schema import resource_table

CHUNK = 500
"""Patients per statement."""


def of_patients(
    conn: Any, res_type: str, patient_ids: list[str]
) -> dict[str, list[dict[str, Any]]]:
    """patient id → the patient's current (not deleted) ``res_type`` resources, in the order
    the database returns them; one statement per :data:`CHUNK` patients."""
    out: dict[str, list[dict[str, Any]]] = {pid: [] for pid in patient_ids}
    r = resource_table.c
    for i in range(0, len(patient_ids), CHUNK):
        rows = conn.execute(
            select(r.patient_id, r.content).where(
                r.res_type == res_type,
                r.patient_id.in_(patient_ids[i : i + CHUNK]),
                r.deleted.is_(False),
            )
        )
        for pid, content in rows:
            if pid in out:
                out[pid].append(orjson.loads(content))
    return out
