"""The operator commands (``interop outbox …``, ``indicators export``, ``prune``) run in-process
against the real test databases (SQLite and PostgreSQL)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
from sqlalchemy import select
from typer.testing import CliRunner

from interop.cli import app
from interop.fhir.dates import now_utc, to_micros
from interop.routing.outbox import enqueue
from interop.store.context import WriteContext
from interop.store.repository import new_id
from interop.store.schema import inbound_message_table, outbox_table

runner = CliRunner()


@pytest.fixture
def cli(settings, services, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:  # type: ignore[no-untyped-def]
    """Invoke ``interop …`` with the test database configured through the environment."""
    from interop.config import reset_settings_cache

    monkeypatch.setenv("INTEROP_DATABASE_URL", settings.database_url)
    # tables are as wide as COLUMNS says when piped: a fixed width, whatever the test
    # runner's own terminal left in the environment
    monkeypatch.setenv("COLUMNS", "240")
    reset_settings_cache()

    def invoke(*args: str) -> Any:
        return runner.invoke(app, list(args), catch_exceptions=False)

    yield invoke
    reset_settings_cache()


def _enqueue(
    services: Any,
    *,
    destination: str = "Endpoint/gp",
    status: str = "queued",
    expects_apprec: bool = False,
    age_days: float = 0,
    payload: bytes = b'{"resourceType": "Communication"}',
    content_type: str = "application/fhir+json",
    patient_id: str | None = None,
    last_error: str | None = None,
    event: str = "test",
) -> str:
    with services.store.write(WriteContext.service()) as tx:
        row_id = enqueue(
            tx.conn,
            event=event,
            kind="fhir-resource",
            destination=destination,
            transport="http",
            address="http://127.0.0.1:9/hook",
            content_type=content_type,
            payload=payload,
            patient_id=patient_id,
            expects_apprec=expects_apprec,
        )
        created = to_micros(now_utc() - timedelta(days=age_days))
        tx.conn.execute(
            outbox_table.update()
            .where(outbox_table.c.id == row_id)
            .values(status=status, created=created, last_error=last_error)
        )
    return row_id


def _rows(services: Any) -> dict[str, Any]:
    with services.store.reader() as conn:
        return {r.id: r for r in conn.execute(select(outbox_table))}


def test_list_shows_enqueued_messages_and_filters(cli, services) -> None:  # type: ignore[no-untyped-def]
    a = _enqueue(services, destination="Endpoint/gp")
    b = _enqueue(services, destination="Endpoint/hospital")
    dead = _enqueue(services, status="dead", last_error="HTTP 400: " + "x" * 300)
    rows = _rows(services)

    result = cli("outbox", "list")
    assert result.exit_code == 0, result.output
    for row_id in (a, b, dead):
        assert row_id in result.stdout and rows[row_id].event in result.stdout
    assert "Endpoint/hospital" in result.stdout and "queued" in result.stdout
    assert "x" * 100 not in result.stdout  # the error is in `outbox show`, not the list

    listed = orjson.loads(cli("outbox", "list", "--json").stdout)
    assert [m["id"] for m in listed] == [dead, b, a]  # newest first
    assert {"id", "msgId", "type", "destination", "transport", "status", "attempts"} <= set(
        listed[0]
    )

    only = orjson.loads(
        cli("outbox", "list", "--destination", "Endpoint/hospital", "--json").stdout
    )
    assert [m["id"] for m in only] == [b]
    assert len(orjson.loads(cli("outbox", "list", "--limit", "1", "--json").stdout)) == 1
    queued = orjson.loads(cli("outbox", "list", "--status", "queued", "--json").stdout)
    assert {m["id"] for m in queued} == {a, b}

    dead_out = cli("outbox", "dead")
    assert dead_out.exit_code == 0
    assert dead in dead_out.stdout and a not in dead_out.stdout and b not in dead_out.stdout
    assert [m["id"] for m in orjson.loads(cli("outbox", "dead", "--json").stdout)] == [dead]


def test_list_by_patient(cli, client, services) -> None:  # type: ignore[no-untyped-def]
    fnr = "13031353453"
    pid = client.post(
        "/fhir/Patient",
        json={
            "resourceType": "Patient",
            "identifier": [{"system": "urn:oid:2.16.578.1.12.4.1.4.1", "value": fnr}],
        },
    ).json()["id"]
    # as the worker writes them: a long event name, a stored Endpoint with a long name,
    # retried (status with its attempts)
    endpoint = client.post(
        "/fhir/Endpoint",
        json={
            "resourceType": "Endpoint",
            "status": "active",
            "name": "Elvebakken fastlegekontor, fastlege Rita Lin (filmottak, sikker sone)",
            "connectionType": {"code": "file-drop"},
            "payloadType": [{"text": "PLO"}],
            "address": "file:///tmp/x",
        },
    )
    assert endpoint.status_code == 201, endpoint.text
    mine = _enqueue(
        services,
        patient_id=pid,
        event="status.periodic",
        destination=f"Endpoint/{endpoint.json()['id']}",
        status="apprec-rejected",
    )
    with services.store.write(WriteContext.service()) as tx:
        tx.conn.execute(outbox_table.update().where(outbox_table.c.id == mine).values(attempts=12))
    _enqueue(services)
    for who in (fnr, f"Patient/{pid}"):
        listed = orjson.loads(cli("outbox", "list", "--patient", who, "--json").stdout)
        assert [m["id"] for m in listed] == [mine]
    # readable in a 120-column terminal: every line fits, the patient's number and the id
    # are whole
    narrow = runner.invoke(app, ["outbox", "list"], env={"COLUMNS": "120"})
    assert narrow.exit_code == 0, narrow.output
    assert max(len(line) for line in narrow.stdout.splitlines()) <= 120
    assert mine in narrow.stdout and fnr in narrow.stdout and "test" in narrow.stdout
    [line] = [x for x in narrow.stdout.splitlines() if mine in x]
    assert "status.periodic" in line and "apprec-rejected ×12" in line
    assert "Elvebakken fastlege" in line
    assert "…" not in line.split("Elvebakken")[0]  # only the receiver's name gives way
    bad = cli("outbox", "list", "--patient", "123")
    assert bad.exit_code == 2 and "fødselsnummer" in bad.stderr


def test_show_prints_details_and_payload(cli, services) -> None:  # type: ignore[no-untyped-def]
    xml = b'<?xml version="1.0" encoding="UTF-8"?>\n<MsgHead><MsgInfo/></MsgHead>'
    row_id = _enqueue(services, payload=xml, content_type="application/xml")
    result = cli("outbox", "show", row_id)
    assert result.exit_code == 0
    assert row_id in result.stdout and _rows(services)[row_id].msg_id in result.stdout
    assert result.stdout.rstrip().endswith("<MsgHead><MsgInfo/></MsgHead>")
    assert cli("outbox", "show", row_id, "--payload-only").stdout_bytes == xml
    missing = cli("outbox", "show", "no-such-id")
    assert missing.exit_code == 1 and "no-such-id" in missing.stderr


def test_reprocess_creates_linked_row(cli, services) -> None:  # type: ignore[no-untyped-def]
    dead = _enqueue(services, status="dead")
    result = cli("outbox", "reprocess", dead)
    assert result.exit_code == 0, result.output
    again = result.stdout.strip()
    rows = _rows(services)
    assert rows[again].reprocess_of == dead and rows[again].status == "queued"
    assert rows[again].msg_id != rows[dead].msg_id
    assert rows[again].destination == "Endpoint/gp" and rows[dead].status == "dead"

    moved = cli(
        "outbox",
        "reprocess",
        dead,
        "--destination",
        "Endpoint/other",
        "--transport",
        "file-drop",
        "--address",
        "file:///tmp/elsewhere",
    ).stdout.strip()
    row = _rows(services)[moved]
    assert (row.destination, row.transport, row.address, row.reprocess_of) == (
        "Endpoint/other",
        "file-drop",
        "file:///tmp/elsewhere",
        dead,
    )


def test_reprocess_unknown_id_exits_1(cli, services) -> None:  # type: ignore[no-untyped-def]
    before = len(_rows(services))
    result = cli("outbox", "reprocess", "does-not-exist")
    assert result.exit_code == 1
    assert "does-not-exist" in result.stderr and "not known" in result.stderr
    assert result.stdout == ""
    assert len(_rows(services)) == before


def _inbound(services: Any, status: str, age_days: float) -> str:
    row_id = new_id()
    with services.engine.begin() as conn:
        conn.execute(
            inbound_message_table.insert().values(
                id=row_id,
                channel="mllp",
                sender="lab",
                message_id=row_id,
                received=to_micros(now_utc() - timedelta(days=age_days)),
                adapter="hl7v2",
                raw=b"MSH|...",
                status=status,
                attempts=1,
                processed=to_micros(now_utc()) if status == "processed" else None,
            )
        )
    return row_id


def test_prune_deletes_only_final_rows(cli, services) -> None:  # type: ignore[no-untyped-def]
    old = 400
    final = {
        "acked-no-apprec": _enqueue(services, status="transport-acked", age_days=old),
        "apprec-ok": _enqueue(services, status="apprec-ok", expects_apprec=True, age_days=old),
        "apprec-rejected": _enqueue(
            services, status="apprec-rejected", expects_apprec=True, age_days=old
        ),
    }
    kept = {
        status: _enqueue(services, status=status, age_days=old)
        for status in ("queued", "sending", "sent", "dead", "no-apprec")
    }
    kept["acked-awaiting-apprec"] = _enqueue(
        services, status="transport-acked", expects_apprec=True, age_days=old
    )
    kept["recent-apprec-ok"] = _enqueue(
        services, status="apprec-ok", expects_apprec=True, age_days=10
    )
    kept["recent-acked"] = _enqueue(services, status="transport-acked", age_days=364)
    inbound_old = _inbound(services, "processed", old)
    inbound_kept = [
        _inbound(services, "processed", 10),
        _inbound(services, "failed", old),
        _inbound(services, "received", old),
        _inbound(services, "processing", old),
    ]

    dry = cli("prune", "--older-than-days", "365", "--dry-run")
    assert dry.exit_code == 0, dry.output
    assert "outbox: 3" in dry.stdout and "inbound_message: 1" in dry.stdout
    assert len(_rows(services)) == len(final) + len(kept)  # dry run deleted nothing

    result = cli("prune")  # default: INTEROP_OUTBOX_RETENTION_DAYS = 365
    assert result.exit_code == 0, result.output
    assert "outbox: 3" in result.stdout and "inbound_message: 1" in result.stdout
    remaining = _rows(services)
    assert set(remaining) == set(kept.values()), {
        name: row_id in remaining for name, row_id in {**final, **kept}.items()
    }
    with services.store.reader() as conn:
        inbound = {r[0] for r in conn.execute(select(inbound_message_table.c.id))}
    assert inbound == set(inbound_kept) and inbound_old not in inbound

    again = cli("prune", "--older-than-days", "365")
    assert "outbox: 0" in again.stdout and "inbound_message: 0" in again.stdout


def test_prune_respects_retention_setting(cli, services, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from interop.config import reset_settings_cache

    row = _enqueue(services, status="transport-acked", age_days=40)
    monkeypatch.setenv("INTEROP_OUTBOX_RETENTION_DAYS", "60")
    reset_settings_cache()
    assert "outbox: 0" in cli("prune").stdout and row in _rows(services)
    monkeypatch.setenv("INTEROP_OUTBOX_RETENTION_DAYS", "30")
    reset_settings_cache()
    assert "outbox: 1" in cli("prune").stdout and row not in _rows(services)


def test_indicators_export_csv_and_json(cli, client, services, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from interop.indicators import compute, to_csv
    from tests.api.test_indicators import _setup

    orgnr = _setup(client)
    out = tmp_path / "indicators.csv"
    result = cli(
        "indicators",
        "export",
        "--organization",
        orgnr,
        "--period",
        "2026-03-01/2026-03-31",
        "--format",
        "csv",
        "--out",
        str(out),
    )
    assert result.exit_code == 0, result.output
    text = out.read_text()
    from datetime import date

    with services.store.reader() as conn:
        expected = compute(conn, orgnr, date(2026, 3, 1), date(2026, 3, 31))
    assert text == to_csv(expected)
    lines = text.splitlines()
    # no comment lines: what the figures are about is in columns of every row
    assert lines[0] == "organization,period_start,period_end,indicator,value,suppressed"
    assert not any(line.startswith("#") for line in lines)
    about = f"{orgnr},2026-03-01,2026-03-31"
    assert f"{about},activePatients,6,false" in lines
    assert f"{about},measurementsReceived,60,false" in lines

    as_json = cli(
        "indicators", "export", "--organization", orgnr, "--period", "2026-03-01/2026-03-31"
    )
    assert as_json.exit_code == 0
    doc = orjson.loads(as_json.stdout)
    assert doc["organization"]["orgnr"] == orgnr
    assert doc["indicators"]["activePatients"] == {"value": 6, "suppressed": False}

    report = orjson.loads(
        cli(
            "indicators",
            "export",
            "--organization",
            orgnr,
            "--period",
            "2026-03-01/2026-03-31",
            "--format",
            "fhir",
        ).stdout
    )
    assert report["resourceType"] == "MeasureReport"

    bad = cli("indicators", "export", "--organization", orgnr, "--period", "2026-03-31/2026-03-01")
    assert bad.exit_code == 2 and "before it starts" in bad.stderr
    unknown = cli(
        "indicators", "export", "--organization", "974760673", "--period", "2026-03-01/2026-03-31"
    )
    assert unknown.exit_code == 1 and "974760673" in unknown.stderr


def test_version_and_actors(cli) -> None:  # type: ignore[no-untyped-def]
    from interop import __version__

    v = cli("--version")
    assert v.exit_code == 0 and v.stdout.strip() == f"interop {__version__}"
    made = cli("actors", "create", "--role", "followup", "--orgnr", "974760673", "--name", "Siri")
    assert made.exit_code == 0, made.output
    key = made.stdout.strip()
    assert len(key) > 30 and "\n" not in key
    listed = orjson.loads(cli("actors", "list", "--json").stdout)
    [actor] = [a for a in listed if a["organization"]["orgnr"] == "974760673"]
    assert actor["role"] == "followup" and not actor["revoked"] and key not in str(listed)
    table = cli("actors", "list")
    assert actor["id"] in table.stdout and "active" in table.stdout
    bad = cli("actors", "create", "--role", "nurse", "--orgnr", "123")
    assert bad.exit_code == 2 and "role 'nurse'" in bad.stderr and "mod-11" in bad.stderr
    assert cli("actors", "revoke", actor["id"]).exit_code == 0
    assert orjson.loads(cli("actors", "list", "--json").stdout)[-1]["revoked"] is True
    assert cli("actors", "revoke", "no-such-actor").exit_code == 1
