"""The store's bulk writer (``interop.store.backends``): what goes in comes back, on either
side of PostgreSQL's small-write size (one statement below it, COPY above), and every index
row a batch writes is its own resource's, on its own patient."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from interop.store.backends.postgresql import SMALL_VERSIONS_ROWS, SMALL_WRITE_ROWS
from interop.store.context import WriteContext
from interop.store.schema import (
    code_set_table,
    observation_table,
    reference_table,
    resource_table,
    string_table,
    unique_identifier_table,
)

CLAIM = ("res_type", "system", "value", "res_id")
ODD = ["tab\there", "line\nbreak", "back\\slash", "\\N", "ø æ å ✓", "quote\"'", "{a,b}", "NULL"]


def _claims(n: int, tag: str) -> list[tuple[str, str, str, str]]:
    return [("Device", f"urn:{tag}", f"{ODD[i % len(ODD)]}-{i}", f"d{i}") for i in range(n)]


def _all(services: Any, table: Any, *where: Any) -> list[tuple[Any, ...]]:
    with services.engine.connect() as conn:
        return [tuple(r) for r in conn.execute(select(table).where(*where))]


@pytest.mark.parametrize("n", [1, SMALL_WRITE_ROWS - 3, SMALL_WRITE_ROWS + 1])
def test_rows_come_back_as_written(services: Any, n: int) -> None:
    """With the code sets' 3 rows: one statement, the most one statement takes, COPY."""
    rows = _claims(n, f"odd{n}")
    sets = [(i, 0, f"urn:s{n}", ODD[i % len(ODD)]) for i in range(3)]
    with services.store.write(WriteContext.service()) as tx:
        tx.bulk.insert_rows(unique_identifier_table, CLAIM, rows)
        tx.bulk.insert_rows(code_set_table, ("set_id", "ord", "system", "code"), sets)
        assert tx.bulk.flush().skipped == []
    got = _all(services, unique_identifier_table, unique_identifier_table.c.system == f"urn:odd{n}")
    assert sorted(got) == sorted(rows)
    assert sorted(_all(services, code_set_table, code_set_table.c.system == f"urn:s{n}")) == sets


@pytest.mark.parametrize("n", [3, SMALL_WRITE_ROWS + 1])
def test_a_taken_key_is_an_error_skipped_or_reported_as_asked(services: Any, n: int) -> None:
    rows = _claims(n, f"taken{n}")
    with services.store.write(WriteContext.service()) as tx:
        tx.bulk.insert_rows(unique_identifier_table, CLAIM, rows[1:2])
        tx.bulk.flush()
    again = [(*r[:3], "another") for r in rows]
    with pytest.raises(IntegrityError), services.store.write(WriteContext.service()) as tx:
        tx.bulk.insert_rows(unique_identifier_table, CLAIM, again)
        tx.bulk.flush()
    with services.store.write(WriteContext.service()) as tx:
        tx.bulk.insert_rows(unique_identifier_table, CLAIM, again, on_conflict="report")
        assert tx.bulk.flush().skipped == [again[1]]
    with services.store.write(WriteContext.service()) as tx:
        tx.bulk.insert_rows(unique_identifier_table, CLAIM, again, on_conflict="ignore")
        assert tx.bulk.flush().skipped == []
    got = _all(
        services, unique_identifier_table, unique_identifier_table.c.system == f"urn:taken{n}"
    )
    # the holder kept its claim; the others went in with the first of the two that wrote
    assert sorted(got) == sorted([rows[1], *again[:1], *again[2:]])


@pytest.mark.parametrize("n", [2, SMALL_VERSIONS_ROWS + 1])
def test_deletes_and_a_counted_update_in_one_flush(services: Any, n: int) -> None:
    strings = [("Flag", f"f{i}", "code", f"text {i}") for i in range(n)]
    with services.store.write(WriteContext.service()) as tx:
        tx.bulk.insert_rows(string_table, ("res_type", "res_id", "param", "value"), strings)
        tx.bulk.insert_rows(
            resource_table,
            ("res_type", "res_id", "version", "patient_id", "last_updated", "deleted", "content"),
            [("Flag", f"f{i}", 1, f"p{i}", 1, False, b"{}") for i in range(n)],
        )
        tx.bulk.flush()
    with services.store.write(WriteContext.service()) as tx:
        tx.bulk.delete_rows(
            string_table, "res_id", [f"f{i}" for i in range(0, n, 2)], where={"res_type": "Flag"}
        )
        # every row moves on to version 2, but the last is named at a version it is not at
        updates = [(2, f"q{i}", "Flag", f"f{i}", 1) for i in range(n - 1)]
        updates.append((2, "q-last", "Flag", f"f{n - 1}", 7))
        tx.bulk.update_rows(
            resource_table, ("version", "patient_id"), ("res_type", "res_id", "version"), updates
        )
        assert tx.bulk.flush().updated == n - 1
    with services.engine.connect() as conn:
        left = set(
            conn.execute(
                select(string_table.c.res_id).where(string_table.c.res_type == "Flag")
            ).scalars()
        )
    assert left == {f"f{i}" for i in range(1, n, 2)}
    rows = {
        r.res_id: (r.version, r.patient_id)
        for r in _all_rows(services, resource_table.c.res_type == "Flag")
    }
    assert rows == {
        **{f"f{i}": (2, f"q{i}") for i in range(n - 1)},
        f"f{n - 1}": (1, f"p{n - 1}"),
    }


def _all_rows(services: Any, *where: Any) -> list[Any]:
    with services.engine.connect() as conn:
        return list(conn.execute(select(resource_table).where(*where)))


# ---- every index row on its own resource's patient ---------------------------------------
_CODES = [
    ("8867-4", "/min", None),
    ("29463-7", "kg", None),
    ("85354-9", None, ("8480-6", "8462-4")),
]


def _observation(patient: str, code: int, value: int, minute: int) -> dict[str, Any]:
    loinc, unit, parts = _CODES[code]
    obs: dict[str, Any] = {
        "resourceType": "Observation",
        "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": loinc}]},
        "subject": {"reference": f"Patient/{patient}"},
        "effectiveDateTime": f"2026-01-05T08:{minute:02d}:00+01:00",
    }
    if parts:
        obs["component"] = [
            {
                "code": {"coding": [{"system": "http://loinc.org", "code": c}]},
                "valueQuantity": {"value": value + k, "unit": "mm[Hg]"},
            }
            for k, c in enumerate(parts)
        ]
    else:
        obs["valueQuantity"] = {"value": value, "unit": unit}
    return obs


@pytest.fixture
def patients(services: Any) -> list[str]:
    with services.store.write(WriteContext.service()) as tx:
        return [tx.create({"resourceType": "Patient"}, validate=False).res_id for _ in range(4)]


@settings(
    max_examples=12,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    batch=st.lists(
        st.tuples(st.integers(0, 3), st.integers(0, 2), st.integers(60, 180), st.integers(0, 59)),
        min_size=1,
        # up to ~100 rows past the small-write size: PostgreSQL writes these by COPY
        max_size=SMALL_WRITE_ROWS // 5 + 20,
    ),
    flags=st.lists(st.tuples(st.integers(0, 3), st.integers(0, 3)), min_size=1, max_size=30),
)
def test_every_index_row_of_a_batch_is_on_its_own_resources_patient(
    services: Any, patients: list[str], batch: list[tuple[int, int, int, int]], flags: Any
) -> None:
    items = [(_observation(patients[p], c, v, m), None) for p, c, v, m in batch]
    with services.store.write(WriteContext.service()) as tx:
        stored = tx.create_many(items, validate=False)
        created = tx.create_many(
            [
                (
                    {
                        "resourceType": "Flag",
                        "status": "active",
                        "code": {"text": "x"},
                        "subject": {"reference": f"Patient/{patients[p]}"},
                    },
                    None,
                )
                for p, _ in flags
            ],
            validate=False,
        )
    # new versions of the Flags, each moved to another patient, written together
    with services.store.write(WriteContext.service()) as tx:
        moved = tx.update_many(
            [
                (
                    "Flag",
                    s.res_id,
                    {**s.json(), "subject": {"reference": f"Patient/{patients[q]}"}},
                    s.version,
                )
                for s, (_, q) in zip(created, flags, strict=True)
            ]
        )
    owner = {s.res_id: s.json()["subject"]["reference"] for s in [*stored, *moved]}
    ids = list(owner)
    with services.engine.connect() as conn:
        rows = conn.execute(
            select(resource_table.c.res_id, resource_table.c.patient_id).where(
                resource_table.c.res_id.in_(ids)
            )
        ).all()
        assert {r: f"Patient/{p}" for r, p in rows} == owner
        index = conn.execute(
            select(observation_table.c.res_id, observation_table.c.patient_id).where(
                observation_table.c.res_id.in_(ids)
            )
        ).all()
        # one row per code: the Observation's, and each component's
        assert len(index) == sum(1 + 2 * (c == 2) for _, c, _, _ in batch)
        assert all(owner[r] == f"Patient/{p}" for r, p in index)
        # the Flags' subject references (an Observation's patient is its index row's)
        subjects = conn.execute(
            select(reference_table.c.res_id, reference_table.c.target).where(
                reference_table.c.res_id.in_(ids), reference_table.c.param == "subject"
            )
        ).all()
        assert sorted(subjects) == sorted((s.res_id, owner[s.res_id]) for s in moved)
