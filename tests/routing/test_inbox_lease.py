"""Inbound message leases: a processor that starts (``recover``) or claims never takes a row
another live processor holds, takes back one whose holder died (its lease ran out), and the
late holder can then neither process nor settle it. KITH rows are never the pipeline's.

Runs on SQLite and PostgreSQL (the ``services`` fixture)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from interop.fhir.dates import now_utc, to_micros
from interop.ingest.inbox import InboxProcessor, accept
from interop.messaging.inbound import KITH_ADAPTER
from interop.store.schema import inbound_message_table as inbox

LIVE = 60.0
SHORT = 0.3


class _Report:
    def to_json(self) -> dict[str, Any]:
        return {"created": 1}


class RecordingPipeline:
    """Stands in for the ingest pipeline: records which messages it was given."""

    def __init__(self) -> None:
        self.seen: list[bytes] = []

    def ingest(self, adapter: str, raw: bytes, meta: Any, **_: Any) -> _Report:
        self.seen.append(raw)
        return _Report()

    def ingest_many(self, items: list[Any]) -> list[_Report]:
        return [self.ingest(i.adapter, i.data, i.meta) for i in items]


@pytest.fixture(autouse=True)
def _listed_sender(services, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """The rows' sender, listed (the processor runs only listed senders' messages)."""
    path = tmp_path / "mllp-senders.yaml"
    path.write_text(
        "senders:\n  - {application: AcmeInc, facility: '', peers: [127.0.0.1], role: followup}\n"
    )
    services.settings.mllp_senders = path


def _processor(services: Any, pipeline: RecordingPipeline, **kw: Any) -> InboxProcessor:
    return InboxProcessor(services, pipeline, **kw)  # type: ignore[arg-type]


def _row(services: Any, row_id: str) -> Any:
    with services.store.reader() as conn:
        return conn.execute(select(inbox).where(inbox.c.id == row_id)).one()


def _accept(services: Any, n: int) -> str:
    return accept(
        services,
        channel="mllp",
        sender="AcmeInc|",
        message_id=f"MSG{n}",
        adapter="hl7v2",
        raw=f"message {n}".encode(),
    ).id


def test_recover_leaves_a_live_lease_alone(services) -> None:  # type: ignore[no-untyped-def]
    row_id = _accept(services, 1)
    a_pipe, b_pipe = RecordingPipeline(), RecordingPipeline()
    a = _processor(services, a_pipe, lease_seconds=LIVE)
    [held] = a._claim(10)  # A holds the row and is (say) still working on it
    row = _row(services, row_id)
    assert row.status == "processing" and row.lease_until == held.lease_until
    assert row.lease_until > to_micros(now_utc()) + int((LIVE - 5) * 1_000_000)

    b = _processor(services, b_pipe, lease_seconds=LIVE)  # another worker (re)starts
    assert b.recover() == 0
    assert b.process_pending() == 0
    assert b_pipe.seen == []
    row = _row(services, row_id)
    assert (row.status, row.lease_until, row.attempts) == ("processing", held.lease_until, 1)

    assert a.process(held) is True  # A finishes and records the outcome
    row = _row(services, row_id)
    assert (row.status, row.lease_until) == ("processed", None)
    assert a_pipe.seen == [b"message 1"] and b_pipe.seen == []
    assert b.recover() == 0 and b.process_pending() == 0


def test_an_expired_lease_is_taken_back(services) -> None:  # type: ignore[no-untyped-def]
    first, second = _accept(services, 1), _accept(services, 2)
    a_pipe, b_pipe = RecordingPipeline(), RecordingPipeline()
    a = _processor(services, a_pipe, lease_seconds=SHORT)
    held = a._claim(10)
    assert [h.id for h in held] == [first, second]
    time.sleep(SHORT + 0.2)  # A died (or hung) and its lease ran out

    b = _processor(services, b_pipe, lease_seconds=LIVE)
    assert b.recover() == 2  # at start
    assert {_row(services, i).status for i in (first, second)} == {"received"}
    assert b.process_pending() == 2
    assert b_pipe.seen == [b"message 1", b"message 2"]
    for i in (first, second):
        row = _row(services, i)
        assert (row.status, row.attempts, row.lease_until) == ("processed", 2, None)

    # A comes back: it neither processes nor settles rows it no longer holds
    assert [a.process(h) for h in held] == [False, False]
    assert a_pipe.seen == []
    assert {_row(services, i).status for i in (first, second)} == {"processed"}


def test_claim_takes_back_expired_leases_without_a_restart(services) -> None:  # type: ignore[no-untyped-def]
    row_id = _accept(services, 1)
    a = _processor(services, RecordingPipeline(), lease_seconds=SHORT)
    assert len(a._claim(10)) == 1
    b_pipe = RecordingPipeline()
    b = _processor(services, b_pipe, lease_seconds=LIVE)
    assert b.process_pending() == 0  # still A's
    time.sleep(SHORT + 0.2)
    assert b.process_pending() == 1  # the periodic claim takes it back, no recover() needed
    assert b_pipe.seen == [b"message 1"]
    assert _row(services, row_id).status == "processed"


def test_a_row_that_keeps_killing_its_processor_is_given_up(services) -> None:  # type: ignore[no-untyped-def]
    row_id = _accept(services, 1)
    pipe = RecordingPipeline()
    for _ in range(2):
        assert len(_processor(services, pipe, lease_seconds=0.05, max_attempts=2)._claim(10)) == 1
        time.sleep(0.15)  # the processor dies with the row
    assert _processor(services, pipe, max_attempts=2).process_pending() == 0
    row = _row(services, row_id)
    assert (row.status, row.attempts, row.lease_until) == ("failed", 2, None)
    assert "given up" in row.error
    assert pipe.seen == []


def test_kith_rows_are_never_claimed(services) -> None:  # type: ignore[no-untyped-def]
    """The KITH inbox stores its rows processed or failed at once; even a KITH row in another
    state (which it never writes) is not the pipeline's to claim or take back."""
    now = to_micros(now_utc())
    with services.engine.begin() as conn:
        for n, status in enumerate(("processed", "failed", "received", "processing")):
            conn.execute(
                inbox.insert().values(
                    id=f"kith-{n}",
                    channel="file-drop",
                    sender="8142519",
                    message_id=f"kith-msg-{n}",
                    received=now - 1_000_000,
                    adapter=KITH_ADAPTER,
                    raw=b"<MsgHead/>",
                    status=status,
                    attempts=1,
                    processed=now if status in ("processed", "failed") else None,
                )
            )
    pipe = RecordingPipeline()
    p = _processor(services, pipe, lease_seconds=LIVE)
    assert p.recover() == 0
    assert p.process_pending() == 0
    assert pipe.seen == []
    with services.store.reader() as conn:
        states = dict(conn.execute(select(inbox.c.id, inbox.c.status)).all())
    assert states == {
        "kith-0": "processed",
        "kith-1": "failed",
        "kith-2": "received",
        "kith-3": "processing",
    }
    # an MLLP message beside them is processed as usual
    row_id = _accept(services, 1)
    assert p.process_pending() == 1
    assert pipe.seen == [b"message 1"] and _row(services, row_id).status == "processed"
