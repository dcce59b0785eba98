"""Current resources of one type for several patients at once (what a batch's hooks read)."""

from __future__ import annotations

from typing import Any

import orjson

from interop.store.value_lists import one_of_sql

CHUNK = 500
"""Patients per statement."""


def of_patients(
    conn: Any, res_type: str, patient_ids: list[str]
) -> dict[str, list[dict[str, Any]]]:
    """patient id → the patient's current (not deleted) ``res_type`` resources, in the order
    the database returns them; one statement per :data:`CHUNK` patients."""
    out: dict[str, list[dict[str, Any]]] = {pid: [] for pid in patient_ids}
    for i in range(0, len(patient_ids), CHUNK):
        is_one_of, values = one_of_sql(conn, patient_ids[i : i + CHUNK])
        mark = "%s" if conn.dialect.name == "postgresql" else "?"
        rows = conn.exec_driver_sql(
            "SELECT patient_id, content FROM resource WHERE res_type = "
            f"{mark} AND patient_id {is_one_of} AND NOT deleted",
            (res_type, values),
        )
        for pid, content in rows:
            if pid in out:
                out[pid].append(orjson.loads(content))
    return out
