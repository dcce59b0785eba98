"""An HL7 v2 message is named by its full sender (MSH-3, MSH-4, every component) and MSH-10,
and a re-send is told from another message reusing that name by what it says.

The Continua samples from IPF all use ``AcmeInc^ACDE48234567ABCD^EUI-64`` and ``MSGID1234``:
a blood pressure, an oximeter, a scale, a thermometer … A second one used to be answered
``AA`` with the first one's ACK and never processed. Now it is refused (``AE``, ERR 205),
kept with status ``conflict`` and listed for an operator; a true re-send (even with a new
MSH-7 and other line ends) is still recognised; another gateway (another EUI-64 in MSH-3.2)
with the same MSH-10 is another message.
"""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import select

from adapters.hl7v2 import message_digest
from adapters.hl7v2_segments import parse
from interop.ingest.inbox import InboxProcessor
from interop.ingest.pipeline import IngestRejected
from interop.store.schema import inbound_message_table
from tests.conftest import CONFORMANCE, SHARED
from tests.test_mllp_listener import (  # the sender, listed for this machine
    _listed_sender,  # noqa: F401
    _listener,
    _send,
    _setup_patient,
)

CONTINUA = CONFORMANCE / "vendor" / "continua-ipf"
BP = (CONTINUA / "valid-bp-continua-wan.hl7v2").read_bytes()
OXIMETER = (CONTINUA / "valid-oximeter-continua-wan.hl7v2").read_bytes()
FITNESS = (
    SHARED / "corpus" / "ingest" / "hl7v2" / "ipf-valid-fitness-continua-wan.hl7v2"
).read_bytes()
FITNESS_AND_ACTIVITY = (
    SHARED / "corpus" / "ingest" / "hl7v2" / "ipf-valid-fitness-and-activity-continua-wan.hl7v2"
).read_bytes()


def _resent(raw: bytes) -> bytes:
    """The same message as a sender might send it again: a new MSH-7, CRLF line ends."""
    return raw.replace(b"20090713090030+0000", b"20260101120000+0100").replace(b"\r", b"\r\n")


def _other_gateway(raw: bytes) -> bytes:
    return raw.replace(b"ACDE48234567ABCD^EUI-64", b"ACDE48234567FFFF^EUI-64", 1)


def _observations(client, pid: str) -> list[dict[str, Any]]:  # type: ignore[no-untyped-def]
    b = client.get("/fhir/Observation", params={"patient": pid, "_count": 200}).json()
    return [e["resource"] for e in b.get("entry", []) if e["search"]["mode"] == "match"]


def _loinc_codes(client, pid: str) -> set[str]:  # type: ignore[no-untyped-def]
    return {
        c["code"]
        for o in _observations(client, pid)
        for c in o["code"]["coding"]
        if c["system"] == "http://loinc.org"
    }


def test_the_digest_ignores_only_what_a_resend_may_change() -> None:
    assert message_digest(BP) == message_digest(_resent(BP))
    assert message_digest(BP) == message_digest(BP + b"\r\r")
    assert message_digest(BP) != message_digest(OXIMETER)
    assert message_digest(BP) != message_digest(BP.replace(b"|120|", b"|121|"))
    assert message_digest(BP) != message_digest(BP.replace(b"789567", b"789568"))
    assert message_digest(FITNESS) != message_digest(FITNESS_AND_ACTIVITY)


def test_mllp_refuses_another_message_reusing_the_id(client, services) -> None:  # type: ignore[no-untyped-def]
    pid = _setup_patient(client, services)
    processor = InboxProcessor(services)
    with _listener(services, processor) as port:
        first = parse(_send(port, BP))
        assert first[1][1] == "AA"
        other = parse(_send(port, OXIMETER))
        assert other[1][1] == "AE", other
        assert other[1][2] == "MSGID1234"
        err = next(s for s in other if s.name == "ERR")
        assert err.component(3, 1) == "205" and "different content" in err.text(8)
        # the refused message, sent again, is refused again; the first one, re-sent with a
        # new MSH-7 and CRLF line ends, is a re-send (its first ACK, nothing processed twice)
        assert parse(_send(port, OXIMETER))[1][1] == "AE"
        again = parse(_send(port, _resent(BP)))
        assert again[1][1] == "AA" and again[0].text(10) == first[0].text(10)
        # another gateway of the same vendor (another EUI-64 in MSH-3.2): another message
        assert parse(_send(port, _other_gateway(OXIMETER)))[1][1] == "AA"
        while processor.process_pending():
            pass
    codes = _loinc_codes(client, pid)
    assert "85354-9" in codes  # the blood pressure
    assert "2708-6" in codes  # the oximeter, from the other gateway only
    spo2 = [
        o
        for o in _observations(client, pid)
        if o["code"]["coding"][0]["code"] == "2708-6"
        or any(c["code"] == "2708-6" for c in o["code"]["coding"])
    ]
    assert len(spo2) == 1
    with services.store.reader() as conn:
        rows = conn.execute(
            select(inbound_message_table.c.status, inbound_message_table.c.raw)
        ).all()
    kept = [bytes(r.raw) for r in rows if r.status == "conflict"]
    assert kept == [OXIMETER]
    assert sorted(r.status for r in rows) == ["conflict", "processed", "processed"]
    listed = client.get("/api/v1/messages", params={"direction": "in", "status": "conflict"})
    assert listed.status_code == 200
    [item] = listed.json()
    assert item["channel"] == "mllp" and "AcmeInc^ACDE48234567ABCD^EUI-64" in item["sender"]
    assert "different content" in item["errors"]


def test_http_ingest_refuses_another_message_reusing_the_id(client, services) -> None:  # type: ignore[no-untyped-def]
    pid = _setup_patient(client, services)
    headers = {"Content-Type": "application/hl7-v2"}
    first = client.post("/ingest/hl7v2", content=BP, headers=headers)
    assert first.status_code == 200 and first.json()["created"] >= 1, first.text
    other = client.post("/ingest/hl7v2", content=OXIMETER, headers=headers)
    assert other.status_code == 422, other.text
    body = other.json()
    assert [d["code"] for d in body["diagnostics"]] == ["message-id-conflict"]
    assert body["rejected"] >= 1 and body["created"] == 0 and not body["duplicate_message"]
    assert "2708-6" not in _loinc_codes(client, pid)
    resent = client.post("/ingest/hl7v2", content=_resent(BP), headers=headers)
    assert resent.status_code == 200 and resent.json()["duplicate_message"] is True
    gateway = client.post("/ingest/hl7v2", content=_other_gateway(OXIMETER), headers=headers)
    assert gateway.status_code == 200 and gateway.json()["created"] >= 1, gateway.text
    assert "2708-6" in _loinc_codes(client, pid)
    listed = client.get("/api/v1/messages", params={"direction": "in", "status": "conflict"})
    [item] = listed.json()
    assert item["channel"] == "ingest"
    # the same refused message again: refused again, kept once
    assert client.post("/ingest/hl7v2", content=OXIMETER, headers=headers).status_code == 422
    assert (
        len(client.get("/api/v1/messages", params={"direction": "in", "status": "conflict"}).json())
        == 1
    )


def test_a_message_recorded_before_digests_were_kept_is_processed_again(client, services) -> None:  # type: ignore[no-untyped-def]
    """A record from before this change has no digest: a message under its name is processed
    (a true re-send then changes nothing: every item is idempotent), never lost."""
    import orjson

    from adapters.base import IngestMeta
    from interop.ingest.pipeline import IngestPipeline
    from interop.store.schema import ingest_message_table

    pid = _setup_patient(client, services)
    meta = IngestMeta(source="lab")
    pipe = IngestPipeline(services)
    assert pipe.ingest("hl7v2", BP, meta).created >= 1
    with services.engine.begin() as conn:
        t = ingest_message_table
        conn.execute(t.update().values(report=orjson.dumps({"adapter": "hl7v2"})))
    report = pipe.ingest("hl7v2", OXIMETER, meta)
    assert report.created >= 1 and not report.duplicate_message
    assert "2708-6" in _loinc_codes(client, pid)
    # the record now carries the digest of the message processed last: from here on a message
    # under this name that says something else is refused
    with pytest.raises(IngestRejected):
        pipe.ingest("hl7v2", BP, meta)
