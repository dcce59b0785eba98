"""Audit events stored lean (one chain row per event, one row per patient it names): the
columns hold what the generic FHIR index held for the same event, and the FHIR API still
reads and searches them (by patient, resource, actor, action, outcome and time)."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from sqlalchemy import text

from interop.access.actor import Actor
from interop.access.audit import (
    GENESIS,
    HASH_URL,
    KEY_URL,
    PREV_URL,
    Keyring,
    audit_log,
    build_event,
    verify,
)
from interop.access.audit.accesses import accesses
from interop.access.audit.chain import keyed_link
from interop.store import audit_rows
from interop.store.audit_rows import event_columns, recorded_micros
from interop.store.db import create_db_engine
from interop.store.indexer import index_entries
from interop.store.migrate import upgrade

GP = Actor(id="gp-1", role="gp", hpr="9144889", name="Kari Lege", orgnr="974703300")
NURSE = Actor(id="nurse-1", role="followup", orgnr="974760673", purpose="TREAT")
EMERGENCY = Actor(id="gp-2", role="gp", hpr="1234567", purpose="ETREAT")


def _events() -> list[dict[str, Any]]:
    return [
        build_event(GP, "read", "Observation/o1", ["p1"]),
        build_event(GP, "search", "Observation?code=8867-4", ["p1", "p2", "p3", "p2"]),
        build_event(NURSE, "read", "Patient/p9", ["p9"], "4", detail="not a patient of yours"),
        build_event(EMERGENCY, "read", "Observation/o7", ["p7"]),
        build_event(GP, "create", "Observation/o8", ["p8"]),
        build_event(NURSE, "search", "Organization?name=x", []),
    ]


@pytest.mark.parametrize("n", range(6))
def test_columns_hold_what_the_generic_index_held(n: int) -> None:
    event = _events()[n]
    generic = index_entries(event, "Europe/Oslo")
    action, outcome, actor_id, what, patients = event_columns(event)
    tokens = {(p, c) for p, _s, c in generic.tokens}
    assert ("action", action) in tokens and ("outcome", outcome) in tokens
    assert ("altid", actor_id) in tokens
    named = [t for p, t in generic.references if p == "patient"]
    assert list(dict.fromkeys(named)) == [f"Patient/{p}" for p in patients]
    entity = [t for p, t in generic.references if p == "entity"]
    if "?" in event["entity"][0]["what"].get("display", ""):
        assert what == event["entity"][0]["what"]["display"]  # a query: no reference
    else:
        assert entity[0] == what
    [(param, start, _end)] = generic.dates
    assert param == "date" and recorded_micros(event) == start


def _record(services: Any) -> list[str]:
    log = audit_log(services.store)
    events = _events()
    log.record_now(*events)
    return [e["entity"][0]["what"].get("reference") for e in events]


def _ids(client: Any, **params: str) -> list[str]:
    r = client.get("/fhir/AuditEvent", params=params)
    assert r.status_code == 200, r.text
    return [e["resource"]["entity"][0]["what"].get("reference") for e in r.json().get("entry", [])]


def test_search_by_patient_resource_actor_action_outcome(services, client) -> None:  # type: ignore[no-untyped-def]
    _record(services)
    # a search names every patient it returned: it is listed for each of them
    assert _ids(client, patient="Patient/p2") == [None] == _ids(client, patient="p3")
    assert _ids(client, entity="Observation/o1") == ["Observation/o1"]
    assert _ids(client, altid="gp-1", action="C") == ["Observation/o8"]
    assert _ids(client, outcome="4") == ["Patient/p9"]
    assert _ids(client, patient="Patient/p7,Patient/p8", _sort="-_lastUpdated") == [
        "Observation/o8",
        "Observation/o7",
    ]
    assert _ids(client, patient="p1", date="gt2000-01-01") != []
    assert _ids(client, patient="p1", date="lt2000-01-01") == []
    count = client.get("/fhir/AuditEvent", params={"patient": "p1", "_summary": "count"})
    assert count.json()["total"] == 2


def test_read_by_id_paging_and_refused_parameters(services, client) -> None:  # type: ignore[no-untyped-def]
    _record(services)
    page = client.get("/fhir/AuditEvent", params={"_count": "4", "_sort": "-_lastUpdated"}).json()
    assert len(page["entry"]) == 4 and page["total"] == 6
    seen = [e["resource"]["id"] for e in page["entry"]]
    nxt = next(link["url"] for link in page["link"] if link["relation"] == "next")
    rest = client.get(nxt[nxt.index("/fhir/") :]).json()
    seen += [e["resource"]["id"] for e in rest["entry"]]
    assert len(seen) == len(set(seen)) == 6
    one = client.get(f"/fhir/AuditEvent/{seen[0]}")
    assert one.status_code == 200 and one.json()["id"] == seen[0]
    assert one.json()["meta"]["versionId"] == "1"
    assert client.get(f"/fhir/AuditEvent/{seen[0]}/_history").status_code == 200
    assert client.get("/fhir/AuditEvent/not-an-event").status_code == 404
    # a parameter the log cannot answer is refused, never ignored (that would widen it)
    r = client.get("/fhir/AuditEvent", params={"agent": "Practitioner/x"})
    assert r.status_code == 400 and "agent" in r.text


def test_batched_reads_by_id_come_from_the_chain(services) -> None:  # type: ignore[no-untyped-def]
    _record(services)
    with services.engine.connect() as conn:
        ids = [r[0] for r in conn.execute(text("SELECT res_id FROM audit_chain ORDER BY seq"))]
    found = services.store.fast.get_many("AuditEvent", [*ids, "missing"])
    assert sorted(found) == sorted(ids)
    assert all(orjson.loads(row[3])["id"] == rid for rid, row in found.items())


def test_events_stored_before_revision_0020_are_moved_and_still_verify(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """An audit log written as FHIR resources (revision 0016) keeps its chain intact when the
    events move into the chain table, and the patient's access list still finds them."""
    engine = create_db_engine(f"sqlite:///{tmp_path / 'old.db'}")
    upgrade(engine, "0016")
    keyring = Keyring.of(bytes(range(32)))
    prev = GENESIS
    events = [
        build_event(GP, "read", "Observation/o1", ["p1"]),
        build_event(GP, "search", "Observation?code=x", ["p1", "p2"]),
    ]
    with engine.begin() as conn:
        for seq, event in enumerate(events, 1):
            link = keyed_link(keyring.current, prev, event)
            stored = {
                "resourceType": "AuditEvent",
                "id": f"ae{seq}",
                "meta": {"versionId": "1", "lastUpdated": event["recorded"]},
                **{k: v for k, v in event.items() if k != "resourceType"},
            }
            stored["extension"] = [
                {"url": PREV_URL, "valueString": prev},
                {"url": HASH_URL, "valueString": link},
                {"url": KEY_URL, "valueString": keyring.current_id},
            ]
            conn.execute(
                text(
                    "INSERT INTO resource (res_type, res_id, version, patient_id, last_updated, "
                    "deleted, content) VALUES ('AuditEvent', :i, 1, 'p1', 0, false, :c)"
                ),
                {"i": f"ae{seq}", "c": orjson.dumps(stored)},
            )
            conn.execute(
                text(
                    "INSERT INTO search_reference (res_type, res_id, param, target) "
                    "VALUES ('AuditEvent', :i, 'patient', 'Patient/p1')"
                ),
                {"i": f"ae{seq}"},
            )
            conn.execute(
                text(
                    "INSERT INTO audit_chain (seq, res_id, prev_hash, hash, key_id) "
                    "VALUES (:s, :i, :p, :h, :k)"
                ),
                {"s": seq, "i": f"ae{seq}", "p": prev, "h": link, "k": keyring.current_id},
            )
            prev = link
    upgrade(engine)
    with engine.connect() as conn:
        result = verify(conn, keyring)
        assert result.ok and result.links == 2, result.problems
        left = conn.execute(
            text("SELECT count(*) FROM search_reference WHERE res_type='AuditEvent'")
        ).scalar()
        assert left == 0
        assert [a.event for a in accesses(conn, "p1")] == ["AuditEvent/ae1", "AuditEvent/ae2"]
        assert [a.event for a in accesses(conn, "p2")] == ["AuditEvent/ae2"]
        assert audit_rows.get(conn, "ae2") is not None
    engine.dispose()
