"""The follow-up centre hears the GP's answer to a proposed plan: approving it (API, the GP's
page, a Dialogmelding svar), asking for changes (with the GP's words) or answering unclearly
puts a routine Task on the plan's own patient, on the centre's worklist — through the care
core's domain events — and on no other patient, for no other organisation."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from interop.care.events import PlanAnswered, PlanChanged
from tests.messaging.test_gp_flow import FNR
from tests.plans.test_gp_approval_page import (
    BODY,
    FORM,
    HTML,
    _bearer,
    _fields,
    _key,
    _state,
    _world,
)
from tests.plans.test_plan_lifecycle import _gp_answers, _requests

SECOND_FNR = "13031353453"
"""A second patient of the same GP and the same centre."""
NOTICE_CODES = {
    "plan-approved",
    "plan-changes-requested",
    "plan-answer-unclear",
    "plan-answer-not-the-gp",
}


def _second_patient(client: Any, w: dict[str, Any]) -> tuple[str, str]:
    """The same GP's and centre's second patient, with a proposed plan: (patient id, plan)."""
    r = client.post(
        "/fhir/Patient",
        json={
            "resourceType": "Patient",
            "identifier": [{"system": "urn:oid:2.16.578.1.12.4.1.4.1", "value": SECOND_FNR}],
            "name": [{"family": "Berg", "given": ["Ola"]}],
            "managingOrganization": {"reference": f"Organization/{w['centre']}"},
            "generalPractitioner": [{"reference": f"PractitionerRole/{w['role']}"}],
        },
    )
    assert r.status_code == 201, r.text
    pid = r.json()["id"]
    plan = client.post(f"/api/v1/patients/{SECOND_FNR}/plan/drafts", json=BODY).json()
    plan_id = plan["carePlan"]["id"]
    assert (
        client.post(f"/api/v1/patients/{SECOND_FNR}/plan/drafts/{plan_id}/propose").status_code
        == 200
    )
    return pid, plan_id


def _new_gp(client: Any, w: dict[str, Any]) -> None:
    """The patient changes GP (HPR 1234567): the one who was asked is no longer theirs."""
    other = client.post(
        "/fhir/Practitioner",
        json={
            "resourceType": "Practitioner",
            "identifier": [{"system": "urn:oid:2.16.578.1.12.4.1.4.4", "value": "1234567"}],
        },
    ).json()["id"]
    patient = client.get(f"/fhir/Patient/{w['patient']}").json()
    patient["generalPractitioner"] = [{"reference": f"Practitioner/{other}"}]
    assert client.put(f"/fhir/Patient/{w['patient']}", json=patient).status_code == 200


def _notices(client: Any, patient: str | None = None) -> list[dict[str, Any]]:
    params = {"patient": patient} if patient else {}
    bundle = client.get("/fhir/Task", params={**params, "_count": 100}).json()
    return [
        e["resource"]
        for e in bundle.get("entry", [])
        if e["resource"]["code"].get("coding", [{}])[0].get("code") in NOTICE_CODES
    ]


def _centre_orgnr(client: Any, w: dict[str, Any]) -> str:
    org = client.get(f"/fhir/Organization/{w['centre']}").json()
    return str(org["identifier"][0]["value"])


def _nurse(client: Any, orgnr: str) -> dict[str, str]:
    return _bearer(
        _key(client, {"role": "followup", "organization": {"orgnr": orgnr}, "name": "Siri"})
    )


def _row(client: Any, orgnr: str, fnr: str, headers: dict[str, str]) -> dict[str, Any]:
    r = client.get("/api/v1/worklist", params={"organization": orgnr}, headers=headers)
    assert r.status_code == 200, r.text
    [row] = [x for x in r.json()["rows"] if x["patient"]["nationalId"] == fnr]
    return dict(row)


def test_the_nurse_sees_on_the_worklist_that_the_gp_approved_or_wants_changes(
    client: Any, services: Any, tmp_path: Path
) -> None:
    w = _world(client, tmp_path)
    second, second_plan = _second_patient(client, w)
    heard: list[Any] = []
    services.events.subscribe(PlanAnswered, lambda tx, e: heard.append(e))
    services.events.subscribe(PlanChanged, lambda tx, e: heard.append(e))
    gp = _bearer(w["gp"])
    # the first patient's plan approved on the GP's page
    fields = _fields(client.get(w["page"], headers={**HTML, **gp}).text)
    assert client.post(w["page"], data=fields, headers={**FORM, **gp}).status_code == 200
    # the second's: the GP asks for changes, in their own words
    page2 = f"/api/v1/patients/{SECOND_FNR}/plan/{second_plan}/approval"
    fields2 = _fields(client.get(page2, headers={**HTML, **gp}).text)
    words = "Grønn puls bør være 55–95."
    r = client.post(
        page2, data={**fields2, "decision": "changes", "text": words}, headers={**FORM, **gp}
    )
    assert r.status_code == 200, r.text
    assert _state(client, second_plan) == "draft"

    # through the domain events: the answer and the new active plan version
    answered = [e for e in heard if isinstance(e, PlanAnswered)]
    assert [(e.patient_id, e.care_plan, e.decision, e.door) for e in answered] == [
        (w["patient"], f"CarePlan/{w['plan']}", "approved", "page"),
        (second, f"CarePlan/{second_plan}", "changes", "page"),
    ]
    assert [e.care_plan for e in heard if isinstance(e, PlanChanged)] == [f"CarePlan/{w['plan']}"]

    # one Task per answer, each on the plan's own patient, about the plan, asked by the GP
    [approved] = _notices(client, w["patient"])
    [changes] = _notices(client, second)
    assert approved["for"]["reference"] == f"Patient/{w['patient']}"
    assert approved["focus"]["reference"] == f"CarePlan/{w['plan']}"
    assert approved["code"]["coding"][0]["code"] == "plan-approved"
    assert approved["priority"] == "routine" and approved["status"] == "requested"
    assert approved["requester"]["reference"] == f"Practitioner/{w['practitioner']}"
    assert approved["code"]["text"] == "Plan godkjent av fastlege"
    assert approved["description"].startswith(
        "Fastlege Rita Lin godkjente egenbehandlingsplanen «Egenbehandlingsplan hjertesvikt»"
    )
    assert "på fastlegens godkjenningsside" in approved["description"]
    assert changes["for"]["reference"] == f"Patient/{second}"
    assert changes["focus"]["reference"] == f"CarePlan/{second_plan}"
    assert changes["code"]["text"] == "Fastlegen ber om endringer i planen"
    assert f"«{words}»" in changes["description"] and changes["note"][0]["text"] == words
    assert changes["note"][0]["authorString"] == "Fastlege Rita Lin"
    for task in (approved, changes):  # Norwegian local time, never a code or UTC in the prose
        assert " kl. " in task["description"] and "CarePlan/" not in task["description"]

    # the centre's worklist shows each on its own patient's row, with its words
    orgnr = _centre_orgnr(client, w)
    nurse = _nurse(client, orgnr)
    row1 = _row(client, orgnr, FNR, nurse)
    row2 = _row(client, orgnr, SECOND_FNR, nurse)
    assert [t["id"] for t in row1["tasks"]] == [approved["id"]]
    assert [t["id"] for t in row2["tasks"]] == [changes["id"]]
    assert "routine" in [x["code"] for x in row1["reasons"]]
    assert row1["task"]["type"] == "plan-approved"
    assert words in row2["task"]["description"] and row2["task"]["notes"][0]["text"] == words
    page = client.get(
        "/api/v1/worklist", params={"organization": orgnr}, headers={**nurse, **HTML}
    ).text
    assert "Fastlege Rita Lin ba om endringer i egenbehandlingsplanen" in page and words in page
    assert "Fastlege Rita Lin godkjente egenbehandlingsplanen" in page
    # a nurse completes it like any worklist Task
    done = client.post(
        f"/api/v1/worklist/tasks/{changes['id']}/actions",
        json={"action": "complete", "outcome": "endret-plan"},
        headers=nurse,
    )
    assert done.status_code == 200, done.text
    assert _notices(client, second)[0]["status"] == "completed"


def test_another_organisation_sees_none_of_it(client: Any, services: Any, tmp_path: Path) -> None:
    w = _world(client, tmp_path)
    gp = _bearer(w["gp"])
    assert (
        client.post(f"/api/v1/patients/{FNR}/plan/{w['plan']}/approve", headers=gp).status_code
        == 200
    )
    [task] = _notices(client)
    assert task["for"]["reference"] == f"Patient/{w['patient']}"
    other = "974589095"
    created = client.post(
        "/fhir/Organization",
        json={
            "resourceType": "Organization",
            "name": "Nabo kommune",
            "identifier": [{"system": "urn:oid:2.16.578.1.12.4.1.4.101", "value": other}],
        },
    )
    assert created.status_code == 201, created.text
    other_nurse = _nurse(client, other)
    # its own worklist does not list the patient, the centre's is refused, the Task unreadable
    r = client.get("/api/v1/worklist", params={"organization": other}, headers=other_nurse)
    assert r.status_code == 200 and r.json()["rows"] == []
    r = client.get(
        "/api/v1/worklist", params={"organization": _centre_orgnr(client, w)}, headers=other_nurse
    )
    assert r.status_code == 403
    r = client.get(f"/fhir/Task/{task['id']}", headers=other_nurse)
    assert r.status_code in (403, 404) and "Rita" not in r.text and FNR not in r.text
    r = client.post(
        f"/api/v1/worklist/tasks/{task['id']}/actions",
        json={"action": "complete", "outcome": "ingen-tiltak"},
        headers=other_nurse,
    )
    assert r.status_code == 403
    assert _notices(client)[0]["status"] == "requested"


def test_a_refused_answer_leaves_no_task(client: Any, services: Any, tmp_path: Path) -> None:
    """An approval under another patient's number, by another GP, or of a plan that is not
    proposed changes nothing and tells the centre nothing."""
    w = _world(client, tmp_path)
    second, second_plan = _second_patient(client, w)
    gp = _bearer(w["gp"])
    # the first patient's plan under the second patient's number
    r = client.post(f"/api/v1/patients/{SECOND_FNR}/plan/{w['plan']}/approve", headers=gp)
    assert r.status_code == 404
    other_gp = _bearer(_key(client, {"role": "gp", "hpr": "1234567", "name": "Annen Lege"}))
    r = client.post(f"/api/v1/patients/{FNR}/plan/{w['plan']}/approve", headers=other_gp)
    assert r.status_code == 403
    assert _notices(client) == []
    assert _state(client, w["plan"]) == _state(client, second_plan) == "proposed"
    assert client.post(f"/api/v1/patients/{FNR}/plan/{w['plan']}/approve", headers=gp).is_success
    again = client.post(f"/api/v1/patients/{FNR}/plan/{w['plan']}/approve", headers=gp)
    assert again.status_code == 409
    assert [t["for"]["reference"] for t in _notices(client)] == [f"Patient/{w['patient']}"]


def test_the_gps_svar_is_heard_too(client: Any, services: Any, tmp_path: Path) -> None:
    """A Dialogmelding svar: unclear (the plan stays proposed; the nurse reads the answer),
    then approving — each a Task on the patient whose plan it answers."""
    w = _world(client, tmp_path)
    second, second_plan = _second_patient(client, w)
    requests = {r.patient_id: r for r in _requests(services)}
    _gp_answers(
        services,
        tmp_path,
        requests[second],
        "Ring meg om dette.",
        "4d1f0b8e-0002-4c1a-9d2e-000000000001",
    )
    assert _state(client, second_plan) == "proposed"
    [unclear] = _notices(client, second)
    assert unclear["code"]["coding"][0]["code"] == "plan-answer-unclear"
    assert "svar på dialogmelding" in unclear["description"]
    assert "«Ring meg om dette.»" in unclear["description"]
    _gp_answers(
        services, tmp_path, requests[second], "Godkjent.", "4d1f0b8e-0002-4c1a-9d2e-000000000002"
    )
    assert _state(client, second_plan) == "active"
    kinds = sorted(t["code"]["coding"][0]["code"] for t in _notices(client, second))
    assert kinds == ["plan-answer-unclear", "plan-approved"]
    assert all(t["focus"]["reference"] == f"CarePlan/{second_plan}" for t in _notices(client))
    assert _notices(client, w["patient"]) == [], "the first patient's plan was not answered"
    assert _state(client, w["plan"]) == "proposed"


def test_an_approval_from_someone_not_the_patients_gp_is_told_not_applied(
    client: Any, services: Any, tmp_path: Path
) -> None:
    """The patient changed GP after the plan was proposed: the old GP's approving svar leaves
    the plan proposed, and the nurse is told who answered and why nothing was approved."""
    w = _world(client, tmp_path)
    _new_gp(client, w)
    [request] = _requests(services)
    _gp_answers(services, tmp_path, request, "Godkjent.", "4d1f0b8e-0003-4c1a-9d2e-000000000001")
    assert _state(client, w["plan"]) == "proposed"
    [task] = _notices(client, w["patient"])
    assert task["code"]["coding"][0]["code"] == "plan-answer-not-the-gp"
    assert "ikke registrert som pasientens fastlege" in task["description"]
    assert "planen er ikke godkjent" in task["description"]


def test_events_a_subscriber_raises_are_handed_on_too(
    client: Any, services: Any, tmp_path: Path
) -> None:
    """What a subscriber's own work raises during the dispatch reaches its subscribers in the
    same transaction, not dropped at commit."""
    from interop.care.events import MeasurementJudged, raise_event

    w = _world(client, tmp_path)
    heard: list[Any] = []

    def raise_more(tx: Any, event: PlanAnswered) -> None:
        raise_event(tx, MeasurementJudged(event.patient_id, "Observation/x", "8867-4", "red", ""))

    services.events.subscribe(PlanAnswered, raise_more)
    services.events.subscribe(MeasurementJudged, lambda tx, e: heard.append(e))
    r = client.post(f"/api/v1/patients/{FNR}/plan/{w['plan']}/approve", headers=_bearer(w["gp"]))
    assert r.status_code == 200, r.text
    assert [(e.patient_id, e.observation) for e in heard] == [(w["patient"], "Observation/x")]


def _task(client: Any, task_id: str) -> dict[str, Any]:
    return dict(client.get(f"/fhir/Task/{task_id}").json())


def test_a_later_answer_closes_the_earlier_notice_of_that_plan_and_no_other(
    client: Any, services: Any, tmp_path: Path
) -> None:
    """Unclear, then changes, then (re-proposed) approved: each later answer about the same
    plan cancels the earlier answer's open notice — who, when, why and what replaced it
    recorded, the GP's earlier words kept on the new notice — while the other patient's
    notice and the patient's other Tasks are never touched."""
    w = _world(client, tmp_path)
    second, second_plan = _second_patient(client, w)
    requests = {r.patient_id: r for r in _requests(services)}
    # both patients' GP answers unclearly
    _gp_answers(
        services, tmp_path, requests[w["patient"]], "Hva mener dere?", "4d1f0b8e-0004-0000-0000-01"
    )
    _gp_answers(
        services, tmp_path, requests[second], "Ring meg om dette.", "4d1f0b8e-0004-0000-0000-02"
    )
    [first_unclear] = _notices(client, w["patient"])
    [unclear] = _notices(client, second)
    # the second patient also has a Task of another kind about the same plan
    other = client.post(
        "/fhir/Task",
        json={
            "resourceType": "Task",
            "status": "requested",
            "intent": "order",
            "code": {"text": "Ring pasienten om planen"},
            "for": {"reference": f"Patient/{second}"},
            "focus": {"reference": f"CarePlan/{second_plan}"},
        },
    )
    assert other.status_code == 201, other.text
    untouched = {
        t: _task(client, t)["meta"]["versionId"] for t in (first_unclear["id"], other.json()["id"])
    }

    # the second patient's GP asks for changes on the page: the unclear notice is replaced
    gp = _bearer(w["gp"])
    page2 = f"/api/v1/patients/{SECOND_FNR}/plan/{second_plan}/approval"
    fields2 = _fields(client.get(page2, headers={**HTML, **gp}).text)
    words = "Grønn puls bør være 55–95."
    r = client.post(
        page2, data={**fields2, "decision": "changes", "text": words}, headers={**FORM, **gp}
    )
    assert r.status_code == 200, r.text
    closed = _task(client, unclear["id"])
    [changes] = [t for t in _notices(client, second) if t["status"] == "requested"]
    assert changes["code"]["coding"][0]["code"] == "plan-changes-requested"
    assert closed["status"] == "cancelled"
    assert closed["statusReason"]["coding"][0]["code"] == "superseded"
    assert closed["statusReason"]["text"] == "Erstattet av et nyere svar fra fastlegen"
    assert closed["owner"] == {"display": "DHO Interop (tjenesten)"}
    assert closed["executionPeriod"]["end"] and closed["lastModified"]
    said = closed["note"][-1]
    assert said["authorString"] == "DHO Interop (tjenesten)" and said["time"]
    assert said["text"].startswith("Lukket automatisk ") and " kl. " in said["text"]
    assert "Fastlege Rita Lin har svart på nytt" in said["text"]
    assert "(ber om endringer)" in said["text"]
    assert closed["output"][-1]["valueReference"]["reference"] == f"Task/{changes['id']}"
    assert closed["note"][0]["text"] == "Ring meg om dette."  # the GP's words stay on it
    # the new notice keeps the earlier answer's words, then the GP's new ones
    assert "Forrige svar (" in changes["note"][0]["text"]
    assert "«Ring meg om dette.»" in changes["note"][0]["text"]
    assert changes["note"][-1]["text"] == words
    # nothing else moved: the first patient's notice, the other Task of the same plan
    for task_id, version in untouched.items():
        t = _task(client, task_id)
        assert t["meta"]["versionId"] == version and t["status"] == "requested"
    # the worklist row: only the open notice
    orgnr = _centre_orgnr(client, w)
    nurse = _nurse(client, orgnr)
    row2 = _row(client, orgnr, SECOND_FNR, nurse)
    assert changes["id"] in [t["id"] for t in row2["tasks"]]
    assert unclear["id"] not in [t["id"] for t in row2["tasks"]]
    row1 = _row(client, orgnr, FNR, nurse)
    assert [t["id"] for t in row1["tasks"]] == [first_unclear["id"]]

    # the first patient's nurse takes the unclear notice; the GP then approves through the
    # API: the notice is closed, and the nurse who owned it stays its owner
    took = client.post(
        f"/api/v1/worklist/tasks/{first_unclear['id']}/actions",
        json={"action": "take"},
        headers=nurse,
    )
    assert took.status_code == 200, took.text
    owner = _task(client, first_unclear["id"])["owner"]
    r = client.post(f"/api/v1/patients/{FNR}/plan/{w['plan']}/approve", headers=gp)
    assert r.status_code == 200, r.text
    first_closed = _task(client, first_unclear["id"])
    assert first_closed["status"] == "cancelled" and first_closed["owner"] == owner
    assert "(godkjent)" in first_closed["note"][-1]["text"]
    [approved] = [t for t in _notices(client, w["patient"]) if t["status"] == "requested"]
    assert approved["code"]["coding"][0]["code"] == "plan-approved"
    assert first_closed["output"][-1]["valueReference"]["reference"] == f"Task/{approved['id']}"
    # the second patient's notices did not move
    assert _task(client, changes["id"])["status"] == "requested"

    # the second patient's revised plan proposed again and approved: the changes notice goes
    r = client.post(f"/api/v1/patients/{SECOND_FNR}/plan/drafts/{second_plan}/propose")
    assert r.status_code == 200, r.text
    r = client.post(f"/api/v1/patients/{SECOND_FNR}/plan/{second_plan}/approve", headers=gp)
    assert r.status_code == 200, r.text
    statuses = sorted(
        (t["code"]["coding"][0]["code"], t["status"]) for t in _notices(client, second)
    )
    assert statuses == [
        ("plan-answer-unclear", "cancelled"),
        ("plan-approved", "requested"),
        ("plan-changes-requested", "cancelled"),
    ]
    assert _task(client, other.json()["id"])["status"] == "requested"
    assert _task(client, approved["id"])["status"] == "requested"
    for t in _notices(client):
        assert t["focus"]["reference"] == (
            f"CarePlan/{w['plan']}"
            if t["for"]["reference"] == f"Patient/{w['patient']}"
            else f"CarePlan/{second_plan}"
        )


def test_an_answer_from_someone_not_the_gp_closes_none_of_the_gps_notices(
    client: Any, services: Any, tmp_path: Path
) -> None:
    w = _world(client, tmp_path)
    [request] = _requests(services)
    _gp_answers(services, tmp_path, request, "Ring meg.", "4d1f0b8e-0005-0000-0000-01")
    [unclear] = _notices(client, w["patient"])
    _new_gp(client, w)
    _gp_answers(services, tmp_path, request, "Godkjent.", "4d1f0b8e-0005-0000-0000-02")
    kinds = sorted((t["code"]["coding"][0]["code"], t["status"]) for t in _notices(client))
    assert kinds == [("plan-answer-not-the-gp", "requested"), ("plan-answer-unclear", "requested")]
    assert _task(client, unclear["id"])["meta"]["versionId"] == unclear["meta"]["versionId"]
