"""A questionnaire the source's own flow judged red (OpenTele severity) raises a Task for the
follow-up centre and goes to the GP like a red measurement."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import orjson

from adapters.base import FNR_OID, IngestMeta, PatientRef
from interop.ingest.pipeline import IngestPipeline
from interop.messaging.runtime import kith_for
from tests.adapters.test_opentele_results import copd_upload
from tests.messaging.test_gp_flow import FNR, _outbox, address_book


def test_red_questionnaire_raises_a_task_and_a_gp_message(client, services, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    ids = address_book(client, tmp_path)
    upload = copd_upload(date=datetime.now(UTC).isoformat(timespec="seconds"))
    meta = IngestMeta(source="opentele-rh", patient=PatientRef(FNR_OID, FNR))
    report = IngestPipeline(services).ingest("opentele", orjson.dumps(upload), meta)
    assert report.created == 5, report.diagnostics
    tasks = client.get("/fhir/Task", params={"patient": ids["patient"]}).json()["entry"]
    kinds = {t["resource"]["code"]["coding"][0]["code"]: t["resource"] for t in tasks}
    task = kinds["assess-questionnaire"]
    assert task["priority"] == "asap"
    assert task["focus"]["reference"].startswith("QuestionnaireResponse/")
    rows = [r for r in _outbox(services) if r.focus == f"Task/{task['id']}"]
    assert [r.event for r in rows] == ["triage.red"]
    kith = kith_for(services.settings)
    assert kith is not None
    sent = kith.read(bytes(rows[0].payload))
    assert "Spørreskjema «KOL - daglige målinger og spørgsmål» besvart, rød alvorlighet" in (
        sent.content.notes[0].text  # type: ignore[union-attr]
    )
    # the same upload again: no new Task, no new message
    before = len(_outbox(services))
    IngestPipeline(services).ingest("opentele", orjson.dumps(upload), meta)
    assert len(_outbox(services)) == before
