"""Flags and Tasks tell the truth: an escalation changes the Flag's zone coding and the Task's
description and priority to the current worst reading; closing a Task records who, when and
what was done, and raises ``DeviationClosed`` for its subscribers."""

from __future__ import annotations

from typing import Any

from interop.care.events import DeviationClosed
from interop.care.triage import ZONE_SYSTEM
from tests.address_book import patient_with_gp
from tests.plans.test_triage_every_path import FNR, _matches, _recent, spo2


def _post(client: Any, obs: dict[str, Any]) -> str:
    r = client.post("/fhir/Observation", json=obs)
    assert r.status_code == 201, r.text
    return str(r.json()["id"])


def test_escalation_changes_flag_zone_and_task(client) -> None:  # type: ignore[no-untyped-def]
    pid = patient_with_gp(client, FNR)
    _post(client, spo2(pid, 93, when=_recent(30)))  # yellow (default: green ≥ 94, yellow ≥ 92)
    [task] = _matches(client, "/fhir/Task", patient=pid)
    assert task["priority"] == "urgent" and task["description"].startswith("Gul måling")
    assert _matches(client, "/fhir/Flag", code=f"{ZONE_SYSTEM}|yellow")
    red = _post(client, spo2(pid, 85, when=_recent(20)))
    [task] = _matches(client, "/fhir/Task", patient=pid)
    assert task["priority"] == "asap"
    assert task["description"].startswith("Rød måling: Oksygenmetning (SpO2) 85 %")
    assert task["code"]["text"] == "Vurder rød Oksygenmetning (SpO2)"
    assert task["focus"]["reference"] == f"Observation/{red}"
    [flag] = _matches(client, "/fhir/Flag", code=f"{ZONE_SYSTEM}|red")
    # the zone, then the measurement the Flag is about (found by it; the text is words)
    assert flag["code"]["coding"] == [
        {"system": ZONE_SYSTEM, "code": "red"},
        {"system": "http://loinc.org", "code": "2708-6", "display": "Oksygenmetning (SpO2)"},
    ]
    assert "2708-6" not in flag["code"]["text"]
    assert flag["code"]["text"].startswith("Rød sone: Oksygenmetning (SpO2) siden ")
    assert _matches(client, "/fhir/Flag", code=f"{ZONE_SYSTEM}|yellow") == []
    # a milder reading later: the Task stays about the red one, with a note
    _post(client, spo2(pid, 93, when=_recent(10)))
    [task] = _matches(client, "/fhir/Task", patient=pid)
    assert task["priority"] == "asap" and task["focus"]["reference"] == f"Observation/{red}"
    assert len(task["note"]) == 2 and task["note"][-1]["text"].startswith("Gul måling")
    assert len(_matches(client, "/fhir/Flag", code=f"{ZONE_SYSTEM}|red")) == 1


def test_closing_a_task_records_who_when_and_what(client, services) -> None:  # type: ignore[no-untyped-def]
    heard: list[DeviationClosed] = []
    services.events.subscribe(DeviationClosed, lambda tx, e: heard.append(e))
    pid = patient_with_gp(client, FNR)
    _post(client, spo2(pid, 85))
    [task] = _matches(client, "/fhir/Task", patient=pid)
    closed = {**task, "status": "completed"}
    r = client.put(f"/fhir/Task/{task['id']}", json=closed)
    assert r.status_code == 422, r.text
    assert r.json()["issue"][0]["expression"] == ["Task.output"]
    assert heard == []
    closed["output"] = [
        {"type": {"text": "utfall"}, "valueString": "Ringt pasienten, ny måling 96 %"}
    ]
    r = client.put(f"/fhir/Task/{task['id']}", json=closed)
    assert r.status_code == 200, r.text
    done = client.get(f"/fhir/Task/{task['id']}").json()
    assert done["owner"]["display"] and done["executionPeriod"]["end"]
    assert done["lastModified"] == done["executionPeriod"]["end"]
    [event] = heard
    assert event.task == f"Task/{task['id']}" and event.patient_id == pid
    assert event.code == "2708-6" and event.status == "completed"
    assert event.outcome == "Ringt pasienten, ny måling 96 %"
    assert event.closed_at == done["executionPeriod"]["end"] and event.owner == done["owner"]
