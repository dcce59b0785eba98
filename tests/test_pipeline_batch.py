"""The batch entry point (``IngestPipeline.ingest_many``: several messages, one transaction)
gives every message the outcome it gets on its own: the same reports, the same stored data,
Tasks, Flags, quarantine, ingest records and outbox messages (with each message's
correlation id). And the batch look-ups answer as the per-item ones do."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta
from random import Random
from typing import Any

import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select, text

from adapters.base import DNR_OID, FHIR_REFERENCE, FNR_OID, IngestMeta, PatientRef
from interop.identifiers import generate_fnr
from interop.ingest.pipeline import (
    IngestItem,
    IngestPipeline,
    IngestRejected,
    find_identifiers,
    resolve_many,
)
from interop.metrics import correlation_id
from interop.patients import resolve
from interop.store.context import WriteContext
from interop.store.schema import (
    ingest_message_table,
    metadata,
    outbox_table,
    quarantine_table,
    resource_table,
)

KNOWN = generate_fnr(date(1950, 5, 17), rng=Random(1), synthetic=True)
UNKNOWN = generate_fnr(date(1961, 2, 3), rng=Random(2), synthetic=True)
T0 = datetime.now(UTC).replace(microsecond=0) - timedelta(days=2)


def _oru(msg_id: str, fnr: str, minute: int, sys_: int, dia: int, pulse: int) -> bytes:
    ts = (T0 + timedelta(minutes=minute)).strftime("%Y%m%d%H%M%S+0000")
    segs = [
        f"MSH|^~\\&|DEV^0001^EUI-64|HOME|DHO|DHO|{ts}||ORU^R01^ORU_R01|{msg_id}|P|2.6|||NE|AL",
        f"PID|||{fnr}^^^&2.16.578.1.12.4.1.4.1&ISO^FNR",
        f"OBR|1|||182777000^monitoring of patient^SNOMED-CT|||{ts}",
        "OBX|1||528391^MDC_DEV_SPEC_PROFILE_BP^MDC|1|||||||X|||||||0123456789ABCDEF^EUI-64",
        f"OBX|2||150020^MDC_PRESS_BLD_NONINV^MDC|1.0.1|||||||X|||{ts}",
        f"OBX|3|NM|150021^MDC_PRESS_BLD_NONINV_SYS^MDC|1.0.1.1|{sys_}|266016^MDC_DIM_MMHG^MDC|||||R",
        f"OBX|4|NM|150022^MDC_PRESS_BLD_NONINV_DIA^MDC|1.0.1.2|{dia}|266016^MDC_DIM_MMHG^MDC|||||R",
        f"OBX|5|NM|149546^MDC_PULS_RATE_NON_INV^MDC|1.0.2.1|{pulse}|264864^MDC_DIM_BEAT_PER_MIN^MDC|||||R|||{ts}",
    ]
    return ("\r".join(segs) + "\r").encode()


_message = st.builds(
    _oru,
    msg_id=st.sampled_from(["M1", "M2", "M3", "M4", "M5", "M6", "M7", "M8"]),
    fnr=st.sampled_from([KNOWN, KNOWN, KNOWN, UNKNOWN]),
    minute=st.integers(0, 3),
    sys_=st.sampled_from([120, 100, 85]),  # green, yellow, red (default ranges)
    dia=st.sampled_from([70, 80]),
    pulse=st.sampled_from([70, 95, 135]),
) | st.just(b"not an HL7 message")


def _truncate(services: Any) -> None:
    names = [t.name for t in metadata.sorted_tables]
    with services.engine.begin() as conn:
        if services.store.is_postgres:
            conn.execute(
                text("TRUNCATE " + ", ".join(f'"{n}"' for n in names) + " RESTART IDENTITY CASCADE")
            )
        else:
            for n in reversed(names):
                conn.execute(text(f'DELETE FROM "{n}"'))


def _setup(services: Any) -> None:
    _truncate(services)
    with services.store.write(WriteContext.service()) as tx:
        tx.create({"resourceType": "Patient", "identifier": [{"system": FNR_OID, "value": KNOWN}]})


_ID = re.compile(r"(Observation|Task|Flag|Device|Provenance|Patient)/[0-9a-f-]{36}")


def _outcome(out: IngestRejected | Exception | Any) -> Any:
    if isinstance(out, IngestRejected):
        return ("rejected", out.report.rejected, len(out.report.diagnostics))
    if isinstance(out, Exception):
        return ("error", type(out).__name__)
    r = out
    return (
        r.created,
        r.duplicate,
        r.updated,
        r.quarantined,
        r.rejected,
        r.duplicate_message,
        [(d["code"], d.get("location")) for d in r.diagnostics],
        r.provenance is None,
        len(r.resources),
    )


def _state(services: Any) -> dict[str, Any]:
    """The store's content with server-assigned ids and times taken out."""
    out: dict[str, Any] = {}
    with services.engine.connect() as conn:
        resources = [
            (row.res_type, row.version, orjson.loads(row.content))
            for row in conn.execute(
                select(
                    resource_table.c.res_type, resource_table.c.version, resource_table.c.content
                )
            )
        ]
        ident = {
            f"Observation/{r['id']}": r["identifier"][0]["value"]
            for t, _, r in resources
            if t == "Observation"
        }

        def clean(value: Any) -> Any:
            return _ID.sub(
                lambda m: ident.get(m.group(0), m.group(1)), orjson.dumps(value).decode()
            )

        for rtype, version, r in resources:
            for key in ("id", "meta", "issued", "authoredOn", "lastModified", "period", "recorded"):
                r.pop(key, None)
            for note in r.get("note", []):
                note.pop("time", None)
            out.setdefault(rtype, []).append((version, clean(r)))
        for v in out.values():
            v.sort()
        out["quarantine"] = sorted(
            (row.identifier_value, row.status, row.reason_code)
            for row in conn.execute(select(quarantine_table))
        )
        out["ingest_message"] = sorted(
            (row.source, row.message_id, clean(_strip_report(orjson.loads(row.report))))
            for row in conn.execute(select(ingest_message_table))
        )
        out["outbox"] = [
            (row.event, row.correlation_id, row.status, row.patient_id is not None, row.last_error)
            for row in conn.execute(select(outbox_table).order_by(outbox_table.c.seq))
        ]
    return out


def _strip_report(report: dict[str, Any]) -> dict[str, Any]:
    report.pop("provenance", None)
    report["resources"] = len(report.get("resources", []))
    return report


@settings(
    max_examples=15,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(messages=st.lists(_message, min_size=1, max_size=8))
def test_a_batch_gives_each_message_its_own_outcome(services, messages: list[bytes]) -> None:  # type: ignore[no-untyped-def]
    pipe = IngestPipeline(services)
    meta = IngestMeta(source="HOME", default_timezone="Europe/Oslo")

    _setup(services)
    one_by_one: list[Any] = []
    for k, raw in enumerate(messages):
        token = correlation_id.set(f"inbound:{k}")
        try:
            one_by_one.append(pipe.ingest("hl7v2", raw, meta))
        except Exception as exc:  # noqa: BLE001 - compared below
            one_by_one.append(exc)
        finally:
            correlation_id.reset(token)
    expected = _state(services)

    _setup(services)
    runs: list[int] = []
    real_run = pipe._run

    def run(items):  # type: ignore[no-untyped-def]
        runs.append(len(items))
        return real_run(items)

    pipe._run = run  # type: ignore[method-assign]
    batched = pipe.ingest_many(
        [IngestItem("hl7v2", raw, meta, f"inbound:{k}") for k, raw in enumerate(messages)]
    )
    # one shared transaction (no fall-back to one transaction per message)
    assert len(runs) <= 1
    assert [_outcome(o) for o in batched] == [_outcome(o) for o in one_by_one]
    assert _state(services) == expected


def test_a_failing_message_fails_alone(services, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    _setup(services)
    pipe = IngestPipeline(services)
    meta = IngestMeta(source="HOME", default_timezone="Europe/Oslo")
    real = pipe._message_in_tx

    def boom(tx, batch, msg, now):  # type: ignore[no-untyped-def]
        if msg.result.message_id == "BAD":
            raise RuntimeError("boom")
        return real(tx, batch, msg, now)

    monkeypatch.setattr(pipe, "_message_in_tx", boom)
    out = pipe.ingest_many(
        [
            IngestItem("hl7v2", _oru("A", KNOWN, 0, 120, 70, 70), meta),
            IngestItem("hl7v2", _oru("BAD", KNOWN, 1, 120, 70, 70), meta),
            IngestItem("hl7v2", b"garbage", meta),
            IngestItem("hl7v2", _oru("C", KNOWN, 2, 120, 70, 70), meta),
        ]
    )
    assert [type(o).__name__ for o in out] == [
        "IngestReport",
        "RuntimeError",
        "IngestRejected",
        "IngestReport",
    ]
    assert [getattr(o, "created", None) for o in out] == [2, None, None, 2]
    again = pipe.ingest_many([IngestItem("hl7v2", _oru("A", KNOWN, 0, 120, 70, 70), meta)])
    assert getattr(again[0], "duplicate_message", False)


def test_batch_look_ups_answer_as_the_single_ones(services) -> None:  # type: ignore[no-untyped-def]
    _setup(services)
    other = generate_fnr(date(1970, 1, 1), rng=Random(3), synthetic=True)
    with services.store.write(WriteContext.service()) as tx:
        gone = tx.create(
            {"resourceType": "Patient", "identifier": [{"system": FNR_OID, "value": other}]}
        )
        tx.delete("Patient", gone.res_id)
        dev = tx.create(
            {"resourceType": "Device", "identifier": [{"system": "urn:x", "value": "d1"}]}
        )
    refs = [
        PatientRef(FNR_OID, KNOWN),
        PatientRef(FNR_OID, UNKNOWN),
        PatientRef(FNR_OID, other),  # its Patient was deleted
        PatientRef(FNR_OID, "12345678901"),  # bad check digits
        PatientRef(DNR_OID, KNOWN),  # not a D-nummer
        PatientRef(FHIR_REFERENCE, f"Patient/{gone.res_id}"),
        PatientRef("urn:vendor:user", "u-1"),  # not linked
    ]
    with services.engine.connect() as conn:
        assert resolve_many(conn, refs) == {r: resolve(conn, r) for r in refs}
        keys = [
            ("Device", "urn:x", "d1"),
            ("Device", "urn:x", "d2"),
            ("Observation", "urn:x", "d1"),
        ]
        found = find_identifiers(conn, keys)
    assert found == {("Device", "urn:x", "d1"): dev.res_id}
    for rtype, system, value in keys:
        assert found.get((rtype, system, value)) == services.store.find_by_identifier(
            rtype, system, value
        )
