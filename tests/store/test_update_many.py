"""``WriteTx.update_many``: several resources' new versions written together, each exactly as
``update`` writes it (the history keeps the version before, the search indexes follow the new
one, the write hooks see both), and nothing written over a version the caller has not seen."""

from __future__ import annotations

from typing import Any

import pytest

from interop.fhir.outcome import FhirError
from interop.store.context import WriteContext
from interop.store.repository import StoredResource, WriteTx


def _flag(patient: str, status: str = "active") -> dict[str, Any]:
    return {
        "resourceType": "Flag",
        "status": status,
        "code": {"text": f"flag of {patient}"},
        "subject": {"reference": f"Patient/{patient}"},
    }


def _patients(services: Any, n: int) -> list[str]:
    with services.store.write(WriteContext.service()) as tx:
        return [tx.create({"resourceType": "Patient"}, validate=False).res_id for _ in range(n)]


def _matches(client: Any, path: str, **params: str) -> list[dict[str, Any]]:
    r = client.get(path, params=params)
    assert r.status_code == 200, r.text
    return [e["resource"] for e in r.json().get("entry", []) if e["search"]["mode"] == "match"]


def test_update_many_writes_each_version_as_update_does(client, services) -> None:  # type: ignore[no-untyped-def]
    p, q = _patients(services, 2)
    store = services.store
    with store.write(WriteContext.service()) as tx:
        first = tx.create(_flag(p), validate=False)
        second = tx.create(_flag(q), validate=False)
        task = tx.create(
            {
                "resourceType": "Task",
                "status": "requested",
                "intent": "order",
                "for": {"reference": f"Patient/{p}"},
            },
            validate=False,
        )
    heard: list[tuple[str, int, int | None]] = []

    def hook(tx: WriteTx, stored: StoredResource, previous: StoredResource | None) -> None:
        heard.append((stored.reference, stored.version, previous and previous.version))

    store.hooks.append(hook)
    try:
        with store.write(WriteContext.service()) as tx:
            done = tx.update_many(
                [
                    ("Flag", first.res_id, {**_flag(p, "inactive"), "id": first.res_id}, 1),
                    ("Task", task.res_id, {**task.json(), "status": "cancelled"}, None),
                    ("Flag", second.res_id, _flag(q, "inactive"), 1),
                ]
            )
    finally:
        store.hooks.remove(hook)
    assert [(d.reference, d.version) for d in done] == [
        (first.reference, 2),
        (task.reference, 2),
        (second.reference, 2),
    ]
    assert heard == [(d.reference, 2, 1) for d in done]  # each hook saw the version before
    # the search indexes follow the new versions, for each patient, and only them
    for patient, flag in ((p, first), (q, second)):
        assert _matches(client, "/fhir/Flag", patient=patient, status="active") == []
        [found] = _matches(client, "/fhir/Flag", patient=patient, status="inactive")
        assert found["id"] == flag.res_id and found["meta"]["versionId"] == "2"
    assert [t["id"] for t in _matches(client, "/fhir/Task", status="cancelled")] == [task.res_id]
    # the versions before are kept in the history
    old = client.get(f"/fhir/Flag/{first.res_id}/_history/1").json()
    assert old["status"] == "active"
    history = client.get(f"/fhir/Flag/{second.res_id}/_history").json()
    assert [e["resource"]["meta"]["versionId"] for e in history["entry"]] == ["2", "1"]


def test_update_many_never_writes_over_a_version_not_seen(client, services) -> None:  # type: ignore[no-untyped-def]
    """A resource changed since the caller read it (by another transaction) is a 409 and
    nothing of the batch is written — a Task a nurse completed meanwhile is not reopened."""
    [p] = _patients(services, 1)
    store = services.store
    with store.write(WriteContext.service()) as tx:
        one = tx.create(_flag(p), validate=False)
        two = tx.create(_flag(p), validate=False)
    with store.write(WriteContext.service()) as tx:  # someone else's change: version 2
        tx.update("Flag", two.res_id, {**_flag(p, "inactive"), "id": two.res_id}, validate=False)
    with pytest.raises(FhirError) as refused, store.write(WriteContext.service()) as tx:
        tx.update_many(
            [
                ("Flag", one.res_id, _flag(p, "entered-in-error"), 1),
                ("Flag", two.res_id, _flag(p, "active"), 1),  # read at 1, now at 2
            ]
        )
    assert refused.value.status == 409
    assert client.get(f"/fhir/Flag/{one.res_id}").json()["meta"]["versionId"] == "1"
    back = client.get(f"/fhir/Flag/{two.res_id}").json()
    assert back["status"] == "inactive" and back["meta"]["versionId"] == "2"


def test_update_many_takes_only_plain_versions(services) -> None:  # type: ignore[no-untyped-def]
    """What ``update`` checks on its own (Observations' rules, identifiers kept unique,
    immutable types, a resource not there) is refused here, not skipped."""
    [p] = _patients(services, 1)
    with services.store.write(WriteContext.service()) as tx:
        flag = tx.create(_flag(p), validate=False)
    for items in (
        [("Observation", "x", {"resourceType": "Observation"}, None)],
        [("Device", "x", {"resourceType": "Device"}, None)],
        [("Flag", "not-there", _flag(p), None)],
        [("Flag", flag.res_id, _flag(p), None), ("Flag", flag.res_id, _flag(p), None)],
        [("Flag", flag.res_id, {**_flag(p), "id": "another"}, None)],
    ):
        with pytest.raises(ValueError), services.store.write(WriteContext.service()) as tx:
            tx.update_many(items)  # type: ignore[arg-type]
