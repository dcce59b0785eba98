"""Versions and history: the current version lives in the resource table, the versions it
superseded in the history table; vread and _history see them as one list."""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, insert, select

from interop.store.schema import history_table, resource_table

from .test_fhir_crud import observation, patient


def _versions(client: Any, path: str, **params: Any) -> list[tuple[str, str, bool]]:
    r = client.get(f"{path}/_history", params=params)
    assert r.status_code == 200, r.text
    bundle = r.json()
    assert bundle["total"] == len(bundle["entry"])
    return [
        (
            e["response"]["etag"],
            e["request"]["method"],
            "resource" in e,
        )
        for e in bundle["entry"]
    ]


def _archived(services: Any, res_type: str, res_id: str) -> list[int]:
    with services.engine.connect() as conn:
        return [
            v
            for (v,) in conn.execute(
                select(history_table.c.version)
                .where(history_table.c.res_type == res_type, history_table.c.res_id == res_id)
                .order_by(history_table.c.version)
            )
        ]


def test_create_update_delete_and_recreate_make_one_history(client, services) -> None:  # type: ignore[no-untyped-def]
    pid = client.post("/fhir/Patient", json=patient()).json()["id"]
    path = f"/fhir/Patient/{pid}"
    assert _archived(services, "Patient", pid) == []  # a new resource has no past yet

    v1 = client.get(path).json()
    changed = dict(v1, name=[{"family": "Hansen"}])
    assert client.put(path, json=changed).status_code == 200
    assert client.delete(path).status_code == 200
    again = dict(v1, name=[{"family": "Berg"}])
    r = client.put(path, json=again)
    assert r.status_code in (200, 201), r.text
    assert r.json()["meta"]["versionId"] == "4"

    assert _versions(client, path) == [
        ('W/"4"', "PUT", True),
        ('W/"3"', "DELETE", False),
        ('W/"2"', "PUT", True),
        ('W/"1"', "POST", True),
    ]
    assert _archived(services, "Patient", pid) == [1, 2, 3]
    # every version reads back as it was; the deletion is a 410
    assert client.get(f"{path}/_history/1").json()["name"][0]["family"] == "Nordmann"
    assert client.get(f"{path}/_history/2").json()["name"][0]["family"] == "Hansen"
    assert client.get(f"{path}/_history/3").status_code == 410
    current = client.get(f"{path}/_history/4")
    assert current.status_code == 200 and current.json()["name"][0]["family"] == "Berg"
    assert current.headers["etag"] == 'W/"4"'
    assert client.get(f"{path}/_history/5").status_code == 404
    assert client.get(f"{path}/_history/0").status_code == 404

    # _count keeps the newest; _since drops the older ones
    assert [e for e, _, _ in _versions(client, path, _count=2)] == ['W/"4"', 'W/"3"']
    assert len(_versions(client, path, _since="2000-01-01T00:00:00Z")) == 4
    assert _versions(client, path, _since="2999-01-01T00:00:00Z") == []


def test_a_deleted_current_version_is_listed_by_the_history(client, services) -> None:  # type: ignore[no-untyped-def]
    pid = client.post("/fhir/Patient", json=patient()).json()["id"]
    path = f"/fhir/Patient/{pid}"
    assert client.delete(path).status_code == 200
    assert client.get(path).status_code == 410
    assert _versions(client, path) == [('W/"2"', "DELETE", False), ('W/"1"', "POST", True)]
    assert client.get(f"{path}/_history/1").status_code == 200
    assert client.get(f"{path}/_history/2").status_code == 410


def test_an_observation_stored_once_has_no_history_row(client, services) -> None:  # type: ignore[no-untyped-def]
    pid = client.post("/fhir/Patient", json=patient()).json()["id"]
    created = client.post("/fhir/Observation", json=observation(pid)).json()
    oid = created["id"]
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {
                "fullUrl": f"urn:uuid:0000000{i}-0000-4000-8000-000000000000",
                "resource": observation(pid, value=60 + i, ident=f"tx-{i}"),
                "request": {"method": "POST", "url": "Observation"},
            }
            for i in range(3)
        ],
    }
    assert client.post("/fhir", json=bundle).status_code == 200
    with services.engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(history_table)).scalar() == 0
    corrected = dict(created, status="corrected", valueQuantity=dict(created["valueQuantity"]))
    corrected["valueQuantity"]["value"] = 75
    assert client.put(f"/fhir/Observation/{oid}", json=corrected).status_code == 200
    assert _archived(services, "Observation", oid) == [1]
    assert client.get(f"/fhir/Observation/{oid}/_history/1").json()["valueQuantity"]["value"] == 72
    assert [m for _, m, _ in _versions(client, f"/fhir/Observation/{oid}")] == ["PUT", "POST"]


def test_a_database_whose_history_also_holds_the_current_version(client, services) -> None:  # type: ignore[no-untyped-def]
    """Databases written before the history held only superseded versions have a history row
    for the current version as well: it is listed once, and the next update keeps it."""
    pid = client.post("/fhir/Patient", json=patient()).json()["id"]
    path = f"/fhir/Patient/{pid}"
    with services.engine.begin() as conn:
        row = conn.execute(
            select(resource_table).where(
                resource_table.c.res_type == "Patient", resource_table.c.res_id == pid
            )
        ).one()
        conn.execute(
            insert(history_table).values(
                res_type="Patient",
                res_id=pid,
                version=1,
                last_updated=row.last_updated,
                method="POST",
                deleted=False,
                content=row.content,
            )
        )
    assert _versions(client, path) == [('W/"1"', "POST", True)]
    v1 = client.get(path).json()
    assert client.put(path, json=dict(v1, gender="male")).status_code == 200
    assert client.delete(path).status_code == 200
    assert _versions(client, path) == [
        ('W/"3"', "DELETE", False),
        ('W/"2"', "PUT", True),
        ('W/"1"', "POST", True),
    ]
    assert _archived(services, "Patient", pid) == [1, 2]
    assert client.get(f"{path}/_history/1").json()["gender"] == "female"


def test_stored_resources_are_compressed_with_lz4_on_postgresql(client, services) -> None:  # type: ignore[no-untyped-def]
    """Migration 0011: large resource JSON is compressed with lz4 (pglz took three times
    as long); SQLite stores it as it is."""
    pid = client.post("/fhir/Patient", json=patient()).json()["id"]
    big = observation(pid)
    big["note"] = [
        {"text": f"note {i}: " + "the patient measured at home. " * 4} for i in range(20)
    ]
    oid = client.post("/fhir/Observation", json=big).json()["id"]
    assert client.get(f"/fhir/Observation/{oid}").json()["note"] == big["note"]
    if services.engine.dialect.name != "postgresql":
        return
    with services.engine.connect() as conn:
        if not conn.exec_driver_sql(
            "SELECT 'lz4' = ANY(enumvals) FROM pg_settings WHERE name = 'default_toast_compression'"
        ).scalar():
            return  # a server built without lz4 keeps pglz
        methods = conn.exec_driver_sql(
            "SELECT pg_column_compression(content) FROM resource WHERE res_id = %s", (oid,)
        ).scalar()
    assert methods == "lz4"


def test_a_since_that_is_not_an_instant_is_refused(client) -> None:  # type: ignore[no-untyped-def]
    pid = client.post("/fhir/Patient", json=patient()).json()["id"]
    r = client.get(f"/fhir/Patient/{pid}/_history", params={"_since": "yesterday"})
    assert r.status_code == 400 and "_since" in r.text
