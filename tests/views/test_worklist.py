"""The follow-up centre's worklist: who is on it and in which order, what a row says, the
actions on a Task (take, note, complete with an outcome), and who may see and act."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

from adapters.base import FNR_OID, LOINC, AdapterResult, Code, IngestMeta, Measurement, PatientRef
from interop.indicators import compute as compute_indicators
from interop.ingest.pipeline import IngestPipeline
from interop.routing.outbox import Outbox, enqueue, mark_dead
from interop.store.context import WriteContext

ORGNR_OID = "urn:oid:2.16.578.1.12.4.1.4.101"
HPR_OID = "urn:oid:2.16.578.1.12.4.1.4.4"
MUNICIPALITY, OTHER = "987789328", "974589095"
GP_HPR = "9144889"
RED, YELLOW, QUIET, CALM, SILENT_GP, ELSEWHERE = (
    "13031353453",
    "02028099471",
    "01034091990",
    "15076500565",
    "29029600013",
    "31129956715",
)
PLAN = {
    "approvedBy": {"hpr": GP_HPR},
    "zones": [
        {
            "code": "2708-6",
            "unit": "%",
            "green": {"low": 94},
            "yellow": {"low": 90},
            "actions": {"yellow": "Ring sykepleier", "red": "Ring fastlegen"},
        }
    ],
}


def _org(client, orgnr: str, name: str) -> str:  # type: ignore[no-untyped-def]
    r = client.post(
        "/fhir/Organization",
        json={
            "resourceType": "Organization",
            "name": name,
            "identifier": [{"system": ORGNR_OID, "value": orgnr}],
        },
    )
    assert r.status_code == 201, r.text
    return str(r.json()["id"])


def _patient(client, fnr: str, given: str, org: str, gp: str) -> str:  # type: ignore[no-untyped-def]
    r = client.post(
        "/fhir/Patient",
        json={
            "resourceType": "Patient",
            "identifier": [{"system": FNR_OID, "value": fnr}],
            "name": [{"use": "official", "family": "Nordmann", "given": [given]}],
            "generalPractitioner": [{"reference": f"Practitioner/{gp}"}],
            "managingOrganization": {"reference": f"Organization/{org}"},
        },
    )
    assert r.status_code == 201, r.text
    return str(r.json()["id"])


def _spo2(fnr: str, value: str, when: datetime, code: str = "2708-6") -> Measurement:
    return Measurement(
        Code(LOINC, code), Decimal(value), "%", when, PatientRef(FNR_OID, fnr), f"spo2-{fnr}"
    )


def _ingest(services, *ms: Measurement) -> None:  # type: ignore[no-untyped-def]
    IngestPipeline(services).ingest_result(
        "test", AdapterResult(measurements=list(ms)), IngestMeta(source="t")
    )


def _world(client, services) -> dict[str, str]:  # type: ignore[no-untyped-def]
    centre = _org(client, MUNICIPALITY, "Fjordvik kommune")
    other = _org(client, OTHER, "Nabo kommune")
    gp = client.post(
        "/fhir/Practitioner",
        json={"resourceType": "Practitioner", "identifier": [{"system": HPR_OID, "value": GP_HPR}]},
    ).json()["id"]
    ids = {
        fnr: _patient(client, fnr, given, org, gp)
        for fnr, given, org in (
            (RED, "Rød", centre),
            (YELLOW, "Gul", centre),
            (QUIET, "Stille", centre),
            (CALM, "Rolig", centre),
            (SILENT_GP, "Melding", centre),
            (ELSEWHERE, "Annen", other),
        )
    }
    for fnr in (RED, YELLOW, CALM, SILENT_GP, ELSEWHERE):
        assert client.put(f"/api/v1/patients/{fnr}/plan", json=PLAN).status_code == 201
    now = datetime.now(UTC)
    _ingest(
        services,
        _spo2(RED, "96", now + timedelta(minutes=1)),
        _spo2(RED, "91", now + timedelta(minutes=2)),  # yellow, then red: one Task, escalated
        _spo2(RED, "86", now + timedelta(minutes=3), code="59408-5"),
        _spo2(YELLOW, "92", now + timedelta(minutes=1)),
        _spo2(CALM, "97", now + timedelta(minutes=1)),
        _spo2(SILENT_GP, "97", now + timedelta(minutes=1)),
        _spo2(ELSEWHERE, "80", now + timedelta(minutes=1)),
        _spo2(QUIET, "97", now - timedelta(days=12)),
    )
    with services.store.write(WriteContext.service()) as tx:
        conn = tx.conn
        row = enqueue(
            conn,
            event="triage.red",
            kind="dialog-helsefaglig",
            destination="Endpoint/x",
            transport="file-drop",
            address="/nowhere",
            content_type="application/xml",
            payload=b"<x/>",
            patient_id=ids[SILENT_GP],
        )
        mark_dead(conn, row, "no such folder")
    return ids


def _key(client, orgnr: str, role: str = "followup") -> dict[str, str]:  # type: ignore[no-untyped-def]
    r = client.post(
        "/api/v1/actors",
        json={"role": role, "organization": {"orgnr": orgnr}, "name": "Sykepleier Siri"},
    )
    assert r.status_code == 201, r.text
    return {"Authorization": f"Bearer {r.json()['key']}"}


def test_worklist_order_rows_and_text(client, services) -> None:  # type: ignore[no-untyped-def]
    ids = _world(client, services)
    nurse = _key(client, MUNICIPALITY)
    r = client.get("/api/v1/worklist", params={"organization": MUNICIPALITY}, headers=nurse)
    assert r.status_code == 200, r.text
    rows = r.json()["rows"]
    order = [row["patient"]["nationalId"] for row in rows]
    # red, yellow, failed message, inactive (by the ordering in mappings/worklist), no calm
    # patient, nobody from another organisation
    assert order == [RED, YELLOW, QUIET, SILENT_GP], order
    red = rows[0]
    assert red["patient"] == {"id": ids[RED], "name": "Rød Nordmann", "nationalId": RED}
    # the red reason first (a GP message about it that could not be sent comes after it)
    assert red["reasons"][0]["code"] == "red"
    assert red["reasons"][0]["text"] == "Rød måling"
    assert red["task"]["priority"] == "asap" and red["owner"] is None
    # SpO2 coded 2708-6 and 59408-5 is one measurement: one latest value, the newest
    [spo2] = red["latest"]
    assert spo2["code"] == "2708-6" and spo2["value"] == 86
    assert spo2["text"] == "86 %" and spo2["zoneText"] == "rød"
    assert " kl. " in spo2["time"]["text"]
    assert rows[1]["reasons"][0]["code"] == "yellow" and rows[1]["task"]["priority"] == "urgent"
    assert rows[2]["reasons"][0]["code"] == "inactive"
    assert rows[2]["reasons"][0]["text"] == "Ingen målinger på 7 døgn"
    assert rows[3]["reasons"][0]["code"] == "message-failed"
    assert rows[3]["messages"][0]["statusText"] == "kunne ikke sendes"
    page = client.get(
        "/api/v1/worklist",
        params={"organization": MUNICIPALITY},
        headers={**nurse, "Accept": "text/html"},
    )
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    body = page.text
    assert "Rød Nordmann" in body and RED in body and "Arbeidsliste – Fjordvik kommune" in body
    assert "86 %" in body and "(red)" not in body and "mm[Hg]" not in body
    assert "<script" not in body and "http://" not in body.replace('xmlns="http://', "")
    # each name leads to that patient's own summary, which the nurse may open
    for fnr in order:
        row_html = body.split(f'<span class="fnr">{fnr}</span>')[0].rsplit("<tr>", 1)[1]
        href = f"/api/v1/patients/{fnr}/summary?view=followup"
        assert f'<a href="{href.replace("&", "&amp;")}">' in row_html
    opened = client.get(href, headers={**nurse, "Accept": "text/html"})
    assert opened.status_code == 200 and f"fødselsnummer {SILENT_GP}" in opened.text


def test_worklist_actions_close_task_and_flag(client, services) -> None:  # type: ignore[no-untyped-def]
    ids = _world(client, services)
    nurse = _key(client, MUNICIPALITY)
    rows = client.get(
        "/api/v1/worklist", params={"organization": MUNICIPALITY}, headers=nurse
    ).json()["rows"]
    task_id = rows[0]["task"]["id"]
    url = f"/api/v1/worklist/tasks/{task_id}/actions"
    r = client.post(url, json={"action": "take"}, headers=nurse)
    assert r.status_code == 200, r.text
    assert r.json()["owner"]["display"] == "Sykepleier Siri" and r.json()["status"] == "accepted"
    r = client.post(url, json={"action": "note", "note": "Ringte, ingen svar"}, headers=nurse)
    assert r.json()["note"][-1]["text"] == "Ringte, ingen svar"
    assert r.json()["note"][-1]["authorString"] == "Sykepleier Siri"
    assert client.post(url, json={"action": "note", "note": " "}, headers=nurse).status_code == 422
    bad = client.post(url, json={"action": "complete", "outcome": "gjettet"}, headers=nurse)
    assert bad.status_code == 422 and "outcome" in bad.text
    # from the HTML page's form: a redirect back to the page
    back = f"/api/v1/worklist?organization={MUNICIPALITY}"
    r = client.post(
        url,
        content=f"action=complete&outcome=kontaktet-pasient&note=Bedre+n%C3%A5&back={back}".replace(
            "?", "%3F"
        ).replace("=" + MUNICIPALITY, "%3D" + MUNICIPALITY),
        headers={**nurse, "Content-Type": "application/x-www-form-urlencoded"},
        follow_redirects=False,
    )
    assert r.status_code == 303 and r.headers["location"] == back
    task = client.get(f"/fhir/Task/{task_id}").json()
    assert task["status"] == "completed" and task["executionPeriod"]["end"]
    [outcome] = task["output"]
    assert outcome["valueCodeableConcept"]["coding"][0]["code"] == "kontaktet-pasient"
    assert (
        "Kontaktet pasient" in task["note"][-1]["text"] and "Bedre nå" in task["note"][-1]["text"]
    )
    flags = client.get("/fhir/Flag", params={"patient": ids[RED], "status": "active"}).json()
    assert flags["total"] == 0
    again = client.post(url, json={"action": "take"}, headers=nurse)
    assert again.status_code == 409
    rows = client.get(
        "/api/v1/worklist", params={"organization": MUNICIPALITY}, headers=nurse
    ).json()["rows"]
    reasons = {row["patient"]["nationalId"]: [x["code"] for x in row["reasons"]] for row in rows}
    assert "red" not in reasons.get(RED, [])
    # the history keeps every step
    history = client.get(f"/fhir/Task/{task_id}/_history").json()
    assert history["total"] >= 4


def test_worklist_access(client, services) -> None:  # type: ignore[no-untyped-def]
    ids = _world(client, services)
    other_nurse = _key(client, OTHER)
    q = {"organization": MUNICIPALITY}
    assert client.get("/api/v1/worklist", params=q, headers=other_nurse).status_code == 403
    epj = _key(client, MUNICIPALITY, role="epj")
    assert client.get("/api/v1/worklist", params=q, headers=epj).status_code == 403
    assert client.get("/api/v1/worklist", params={"organization": "123"}).status_code == 422
    rows = client.get("/api/v1/worklist", params=q, headers=_key(client, MUNICIPALITY)).json()
    task_id = rows["rows"][0]["task"]["id"]
    # another municipality's nurse may not act on this patient's Task
    r = client.post(
        f"/api/v1/worklist/tasks/{task_id}/actions",
        json={"action": "complete", "outcome": "ingen-tiltak"},
        headers=other_nurse,
    )
    assert r.status_code == 403 and RED not in r.text and ids[RED] not in r.text
    assert client.get(f"/fhir/Task/{task_id}").json()["status"] == "requested"


def _to_the_gp(tx, patient_id: str, msg_id: str) -> str:  # type: ignore[no-untyped-def]
    """A red-reading message to the patient's GP that expects an AppRec; its outbox id."""
    return enqueue(
        tx.conn,
        event="triage.red",
        kind="dialog-helsefaglig",
        destination="Endpoint/gp",
        transport="file-drop",
        address="/tmp",
        content_type="application/xml",
        payload=b"<x/>",
        patient_id=patient_id,
        msg_id=msg_id,
        expects_apprec=True,
    )


def test_message_history_for_the_followup_centre(client, services) -> None:  # type: ignore[no-untyped-def]
    ids = _world(client, services)
    with services.store.write(WriteContext.service()) as tx:
        rows = {fnr: _to_the_gp(tx, ids[fnr], f"msg-{fnr}") for fnr in (YELLOW, CALM, ELSEWHERE)}
    outbox = Outbox(services.engine)
    assert outbox.apprec(f"msg-{YELLOW}", "ok", [])
    assert outbox.apprec(
        f"msg-{CALM}", "rejected", [{"code": "E10", "display": "Ukjent pasient", "detail": ""}]
    )
    nurse = _key(client, MUNICIPALITY)
    r = client.get("/api/v1/messages", params={"direction": "out"}, headers=nurse)
    assert r.status_code == 200, r.text
    by_id = {m["id"]: m for m in r.json()}
    assert rows[ELSEWHERE] not in by_id and ids[ELSEWHERE] not in r.text  # not her patient
    assert by_id[rows[YELLOW]]["statusText"] == "mottatt av fastlegen (kvittering OK)"
    assert by_id[rows[CALM]]["statusText"] == "avvist av mottakeren: Ukjent pasient"
    dead = [m for m in r.json() if m["patient"] == f"Patient/{ids[SILENT_GP]}"]
    assert dead and dead[0]["statusText"] == "kunne ikke sendes"
    # one patient's history; another organisation's patient is refused like an unknown one
    one = client.get("/api/v1/messages", params={"patient": YELLOW}, headers=nurse).json()
    assert [m["id"] for m in one if m["direction"] == "out"] == [rows[YELLOW]]
    refused = client.get("/api/v1/messages", params={"patient": ELSEWHERE}, headers=nurse)
    unknown = client.get("/api/v1/messages", params={"patient": "02034198333"}, headers=nurse)
    assert refused.status_code == unknown.status_code == 403
    assert refused.json() == unknown.json()
    gp = client.post("/api/v1/actors", json={"role": "gp", "hpr": GP_HPR}).json()["key"]
    gp_r = client.get("/api/v1/messages", headers={"Authorization": f"Bearer {gp}"})
    assert gp_r.status_code == 403
    # the operator still sees everything
    every = client.get("/api/v1/messages", params={"direction": "out"}).json()
    assert rows[ELSEWHERE] in {m["id"] for m in every}


def test_no_apprec_after_96_hours_is_told_in_words_and_on_the_worklist(client, services) -> None:  # type: ignore[no-untyped-def]
    """The worker's AppRec deadline: a message sent more than 96 h ago without an AppRec is
    «ikke svar etter 96 timer» in the nurse's message history and puts its patient on the
    worklist; one sent 95 h ago, one answered, and another organisation's stay as they were
    (and the other organisation's is never shown to her)."""
    from sqlalchemy import select, update

    from interop.fhir.dates import to_micros
    from interop.store.schema import outbox_table

    ids = _world(client, services)
    now = datetime.now(UTC)
    sent = {YELLOW: 97, CALM: 95, QUIET: 97, ELSEWHERE: 97}
    with services.store.write(WriteContext.service()) as tx:
        rows = {}
        for fnr, hours in sent.items():
            rows[fnr] = _to_the_gp(tx, ids[fnr], f"msg-{fnr}")
            tx.conn.execute(
                update(outbox_table)
                .where(outbox_table.c.id == rows[fnr])
                .values(status="sent", sent_at=to_micros(now - timedelta(hours=hours)))
            )
    outbox = Outbox(services.engine)
    assert outbox.apprec(f"msg-{QUIET}", "ok", [])  # answered: never overdue
    assert outbox.expire_apprecs() == 2  # YELLOW's and the other organisation's
    with services.store.reader() as conn:
        status = dict(conn.execute(select(outbox_table.c.id, outbox_table.c.status)).all())
    assert status[rows[YELLOW]] == status[rows[ELSEWHERE]] == "no-apprec"
    assert status[rows[CALM]] == "sent" and status[rows[QUIET]] == "apprec-ok"
    nurse = _key(client, MUNICIPALITY)
    history = client.get("/api/v1/messages", params={"direction": "out"}, headers=nurse).json()
    words = {m["id"]: m["statusText"] for m in history}
    assert words[rows[YELLOW]] == "ikke svar etter 96 timer"
    assert words[rows[CALM]] == "sendt"
    assert rows[ELSEWHERE] not in words
    # the worklist: the patient whose message got no answer is on it for that reason
    r = client.get("/api/v1/worklist", params={"organization": MUNICIPALITY}, headers=nurse)
    by_fnr = {row["patient"]["nationalId"]: row for row in r.json()["rows"]}
    assert "message-failed" in [x["code"] for x in by_fnr[YELLOW]["reasons"]]
    assert "ikke svar etter 96 timer" in [m["statusText"] for m in by_fnr[YELLOW]["messages"]]
    assert CALM not in by_fnr and ELSEWHERE not in by_fnr


def test_what_the_nurses_do_becomes_indicators(client, services) -> None:  # type: ignore[no-untyped-def]
    _world(client, services)
    nurse = _key(client, MUNICIPALITY)
    rows = client.get(
        "/api/v1/worklist", params={"organization": MUNICIPALITY}, headers=nurse
    ).json()["rows"]
    red_task, yellow_task = rows[0]["task"]["id"], rows[1]["task"]["id"]
    act = "/api/v1/worklist/tasks/{}/actions"
    assert client.post(act.format(red_task), json={"action": "take"}, headers=nurse).is_success
    for task, outcome in ((red_task, "kontaktet-fastlege"), (yellow_task, "kontaktet-pasient")):
        r = client.post(
            act.format(task), json={"action": "complete", "outcome": outcome}, headers=nurse
        )
        assert r.status_code == 200, r.text
    today = datetime.now(UTC).astimezone(ZoneInfo("Europe/Oslo")).date()
    with services.store.reader() as conn:
        ind = compute_indicators(conn, MUNICIPALITY, today, today, suppress_below=1).values
        small = compute_indicators(conn, MUNICIPALITY, today, today, suppress_below=5).values
    contacts = ind["contactsPerPatientMonth"]
    assert (
        contacts["kontaktet-fastlege"]["value"] > 0 and contacts["kontaktet-pasient"]["value"] > 0
    )
    assert contacts["ingen-tiltak"]["value"] == 0
    assert ind["shareHandledWithoutGp"]["value"] == 0.5
    assert ind["redFirstContactHours"]["n"] == 1 and ind["redFirstContactHours"]["median"] >= 0
    assert ind["nurses"] == 1 and ind["patientsPerNurse"]["value"] == ind["activePatients"]["value"]
    # one or two of anything is withheld where the threshold is five
    assert small["contactsPerPatientMonth"]["kontaktet-fastlege"] == {
        "value": None,
        "suppressed": True,
    }
    assert small["redFirstContactHours"]["suppressed"] is True
    csv = client.get(
        "/api/v1/indicators",
        params={"organization": MUNICIPALITY, "period": f"{today}/{today}", "format": "csv"},
    ).text
    assert not any(line.startswith("#") for line in csv.splitlines())
    assert csv.splitlines()[0] == "organization,period_start,period_end,indicator,value,suppressed"


def test_worklist_shows_a_new_red_reading_and_a_moved_patient_at_once(client, services) -> None:  # type: ignore[no-untyped-def]
    """Nothing the worklist keeps between requests (the policy's scope, the written times) can
    show a zone from before the newest reading or a patient the organisation no longer has."""
    ids = _world(client, services)
    nurse, other_nurse = _key(client, MUNICIPALITY), _key(client, OTHER)
    q = {"organization": MUNICIPALITY}

    def rows(headers: dict[str, str], orgnr: str = MUNICIPALITY) -> dict[str, dict]:  # type: ignore[type-arg]
        r = client.get("/api/v1/worklist", params={"organization": orgnr}, headers=headers)
        assert r.status_code == 200, r.text
        return {row["patient"]["nationalId"]: row for row in r.json()["rows"]}

    before = rows(nurse)
    assert CALM not in before and RED in before
    for _ in range(2):  # twice: the second answer is the one any cache would serve
        assert CALM not in rows(nurse)
    _ingest(services, _spo2(CALM, "85", datetime.now(UTC) + timedelta(minutes=5)))
    calm = rows(nurse)[CALM]
    assert calm["reasons"][0]["code"] == "red"
    [spo2] = calm["latest"]
    assert spo2["value"] == 85 and spo2["zone"] == "red" and spo2["zoneText"] == "rød"
    # the RED patient moves to the other organisation: gone from this list, on the other's
    patient = client.get(f"/fhir/Patient/{ids[RED]}").json()
    other_org = client.get("/fhir/Organization", params={"identifier": f"{ORGNR_OID}|{OTHER}"})
    patient["managingOrganization"] = {
        "reference": f"Organization/{other_org.json()['entry'][0]['resource']['id']}"
    }
    assert client.put(f"/fhir/Patient/{ids[RED]}", json=patient).status_code == 200
    after = rows(nurse)
    assert RED not in after and ids[RED] not in str(after)
    page = client.get("/api/v1/worklist", params=q, headers={**nurse, "Accept": "text/html"})
    assert RED not in page.text
    assert RED in rows(other_nurse, OTHER)


def _open_task(client, patient_id: str, words: str) -> str:  # type: ignore[no-untyped-def]
    """A routine open Task on the patient (as a GP's answer would raise); its id."""
    r = client.post(
        "/fhir/Task",
        json={
            "resourceType": "Task",
            "status": "requested",
            "intent": "order",
            "priority": "routine",
            "description": words,
            "for": {"reference": f"Patient/{patient_id}"},
            "authoredOn": datetime.now(UTC).isoformat(timespec="seconds"),
        },
    )
    assert r.status_code == 201, r.text
    return str(r.json()["id"])


def _local_words(instant: str) -> str:
    at = datetime.fromisoformat(instant).astimezone(ZoneInfo("Europe/Oslo"))
    return at.strftime("%d.%m.%Y kl. %H:%M")


def test_a_row_lists_every_open_task_with_its_reason_since_and_owner(client, services) -> None:  # type: ignore[no-untyped-def]
    """A patient with a red reading's Task and another open Task (a GP's answer) has both on
    her own row, most urgent first, each with its reason, since when, owner and forms. «Siden»
    of the red reason is the deviation's first reading (the yellow one), saying when it turned
    red (not when the Task was written, and not moved by a later red reading); no other
    patient's or organisation's Task is on the row."""
    ids = _world(client, services)
    nurse = _key(client, MUNICIPALITY)

    answer = _open_task(client, ids[RED], "Fastlegen har svart på meldingen")
    _open_task(client, ids[YELLOW], "Gul pasients egen oppgave")
    _open_task(client, ids[ELSEWHERE], "Annen kommunes oppgave")

    def rows() -> dict[str, dict]:  # type: ignore[type-arg]
        r = client.get("/api/v1/worklist", params={"organization": MUNICIPALITY}, headers=nurse)
        assert r.status_code == 200, r.text
        return {row["patient"]["nationalId"]: row for row in r.json()["rows"]}

    red_task = rows()[RED]["task"]
    first_red = client.get(f"/fhir/Task/{red_task['id']}").json()
    first_red_obs = client.get(f"/fhir/{first_red['focus']['reference']}").json()
    _ingest(services, _spo2(RED, "85", datetime.now(UTC) + timedelta(minutes=4)))  # still red
    r = client.post(
        f"/api/v1/worklist/tasks/{answer}/actions", json={"action": "take"}, headers=nurse
    )
    assert r.status_code == 200, r.text

    row = rows()[RED]
    # the most urgent Task stays where existing clients read it; every open Task is listed
    assert row["task"]["id"] == red_task["id"]
    assert [t["id"] for t in row["tasks"]] == [red_task["id"], answer]
    red, other = row["tasks"]
    assert red["reason"] == {"code": "red", "text": "Rød måling"} and red["owner"] is None
    assert other["reason"] == {"code": "routine", "text": "Annen oppgave"}
    assert other["owner"] == "Sykepleier Siri" and other["description"].startswith("Fastlegen")
    # since the deviation's first reading (the yellow one), red from the first red reading;
    # the red one after it moves neither
    found = client.get(
        "/fhir/Observation", params={"patient": ids[RED], "code": "2708-6", "_count": "50"}
    ).json()
    [yellow_obs] = [
        e["resource"]
        for e in found.get("entry", [])
        if e["resource"]["valueQuantity"]["value"] == 91
    ]
    since = _local_words(yellow_obs["effectiveDateTime"])
    red_from = _local_words(first_red_obs["effectiveDateTime"])
    assert red["since"] == {
        "time": datetime.fromisoformat(yellow_obs["effectiveDateTime"])
        .astimezone(ZoneInfo("Europe/Oslo"))
        .isoformat(timespec="seconds"),
        "text": f"{since} (rød fra {red_from})",
        "basis": "reading",
    }
    assert [x["since"] for x in row["reasons"] if x["code"] == "red"] == [red["since"]]
    focus = client.get(f"/fhir/Task/{red_task['id']}").json()["focus"]["reference"]
    assert focus != first_red["focus"]["reference"]  # the Task now points at the newest
    # only this patient's own Tasks
    assert all(t["id"] != answer for fnr, x in rows().items() if fnr != RED for t in x["tasks"])
    assert "Gul pasients egen oppgave" not in str(row) and "Annen kommunes" not in str(rows())

    page = client.get(
        "/api/v1/worklist",
        params={"organization": MUNICIPALITY},
        headers={**nurse, "Accept": "text/html"},
    ).text
    group = page.split(f'<span class="fnr">{RED}</span>')[0].rsplit("<tbody>", 1)[1]
    group += page.split(f'<span class="fnr">{RED}</span>')[1].split("</tbody>")[0]
    # a line per open Task and per other reason (the GP message that could not be sent),
    # most urgent first
    assert 'rowspan="3"' in group and group.count("<tr>") == 3
    lines = group.split("<tr>")[1:]
    assert "Rød måling" in lines[0] and since in lines[0]
    assert "Melding til fastlegen ikke mottatt" in lines[1] and "kunne ikke sendes" in lines[1]
    assert "Annen oppgave" in lines[2] and "Sykepleier Siri" in lines[2]
    assert "Fastlegen har svart på meldingen" in group and "Sykepleier Siri" in group
    for task_id in (red_task["id"], answer):  # each Task its own forms
        assert f"/api/v1/worklist/tasks/{task_id}/actions" in group
    assert "Gul pasients egen oppgave" not in group
    assert group.count("Ta ansvar") == 1  # the taken one has no «take» button

    # the red Task done: the GP's answer is the row's Task
    done = client.post(
        f"/api/v1/worklist/tasks/{red_task['id']}/actions",
        json={"action": "complete", "outcome": "kontaktet-pasient"},
        headers=nurse,
    )
    assert done.status_code == 200, done.text
    row = rows()[RED]
    assert row["task"]["id"] == answer and [t["id"] for t in row["tasks"]] == [answer]


def test_the_worklist_costs_the_same_statements_whatever_its_rows(client, services) -> None:  # type: ignore[no-untyped-def]
    """No statement per row or per Task: a second open Task on a row, and another patient's
    red reading, leave the request's statement count as it was."""
    from sqlalchemy import event

    ids = _world(client, services)
    nurse = _key(client, MUNICIPALITY)
    counted: list[str] = []

    def listen(*args: object) -> None:
        counted.append(str(args[2]))

    def statements() -> int:
        counted.clear()
        event.listen(services.engine, "before_cursor_execute", listen)
        try:
            r = client.get("/api/v1/worklist", params={"organization": MUNICIPALITY}, headers=nurse)
        finally:
            event.remove(services.engine, "before_cursor_execute", listen)
        assert r.status_code == 200, r.text
        return len(counted)

    statements()  # the first request reads what later ones keep (the organisation's scope)
    before = statements()
    _open_task(client, ids[RED], "Fastlegen har svart")
    _ingest(services, _spo2(CALM, "85", datetime.now(UTC) + timedelta(minutes=5)))
    statements()
    after = statements()
    print(f"worklist statements on {services.engine.dialect.name}: {before} -> {after}")
    assert after == before
