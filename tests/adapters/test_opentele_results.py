"""OpenTele completed-questionnaire uploads through the ``opentele`` adapter and the pipeline.

The payloads below are our own, written in the upload format the OpenTele app posts to
``POST /rest/questionnaire/listing`` (``QuestionnaireId``, ``version``, ``date``, ``output``
variables named ``<node id>.<VAR>[#FIELD][#SEVERITY|#CANCEL|#NOTE]``). The format was learned
from the public OpenTele sources (read, nothing copied): silverbullet-dk/opentele-citizen-server
@ 370b42cb3c9663842f22925745ac69d2b1f0b1e6 (QuestionnaireMobileController.groovy,
CompletedQuestionnaireService.groovy, QuestionnaireOutputBuilder.groovy and
QuestionnaireMobileControllerTests.groovy), silverbullet-dk/opentele-server-core-plugin
@ 0b3bad26979d434dda8980db688401f2a3a1e954 (MeasurementNode.groovy, Severity.groovy),
silverbullet-dk/opentele-client-android @ 0302f8519168d66e709247f387a733b6210243bb
(OutputSkema.java, VariableAdapter.java) and silverbullet-dk/opentele-client-html
@ e6a1009d045d970875ae041a90ab0dc2c2db75e1 (questionnaires.js). See adapters/opentele_results.py.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import orjson
import pytest

from adapters.base import FNR_OID, AdapterError, IngestMeta, PatientRef, vendor_user_system
from adapters.opentele import OpenTeleAdapter
from adapters.opentele_results import CODE_SYSTEM, CPR_SYSTEM, NODE_RESULT_SYSTEM, UPLOAD_SYSTEM
from interop.ingest.pipeline import IngestPipeline, IngestRejected, release_quarantine
from interop.mapping import MappingSet
from interop.mapping.build import SEVERITY_URL, ZONE_SYSTEM, build_questionnaire_response
from interop.patients import link_patient
from interop.store.context import WriteContext

FNR = "13031353453"
USER = "NancyAnn"
SOURCE = "opentele-rh"
META = IngestMeta(source=SOURCE, options={"user": USER})


def _var(name: str, type_: str, value: Any) -> dict[str, Any]:
    return {"name": name, "type": type_, "value": value}


def copd_upload(**changes: Any) -> dict[str, Any]:
    """A COPD questionnaire: BP + pulse, SpO2 + pulse, three yes/no questions, a free-text
    answer and a decision; the breathlessness answer's branch is RED."""
    doc: dict[str, Any] = {
        "name": "KOL - daglige målinger og spørgsmål",
        "version": "1.2",
        "QuestionnaireId": 27,
        "date": "2025-11-03T07:45:00Z",
        "output": [
            _var("45.BP#SYSTOLIC", "Integer", 152),
            _var("45.BP#DIASTOLIC", "Integer", 94),
            {"name": "45.BP#MEAN_ARTERIAL_PRESSURE", "type": "Integer"},
            _var("45.BP#PULSE", "Integer", 88),
            _var("45.BP#DEVICE_ID", "String", "5130851"),
            _var("45.BP##SEVERITY", "String", "GREEN"),
            _var("47.SAT#SATURATION", "Integer", 89),
            _var("47.SAT#PULSE", "Integer", 92),
            _var("47.SAT#DEVICE_ID", "String", "501234"),
            _var("47.SAT##SEVERITY", "String", "YELLOW"),
            _var("49.FIELD", "Boolean", True),
            _var("49.FIELD#SEVERITY", "String", "RED"),
            _var("51.FIELD", "Boolean", False),
            _var("51.FIELD#SEVERITY", "String", "GREEN"),
            _var("53.FIELD", "Boolean", True),
            _var("53.FIELD#SEVERITY", "String", "YELLOW"),
            _var("55.FIELD", "String", "Mere slim om morgenen"),
            _var("57.DECISION", "Boolean", True),
        ],
    }
    doc.update(changes)
    return doc


def _parse(doc: Any, meta: IngestMeta = META) -> Any:
    return OpenTeleAdapter().parse(orjson.dumps(doc), meta)


def test_copd_upload_measurements_answers_and_red_severity() -> None:
    r = _parse(copd_upload())
    assert r.items_seen == 7
    bp, bp_pulse, spo2, sat_pulse = r.measurements
    patient = PatientRef(vendor_user_system(SOURCE), USER)
    assert all(m.patient == patient for m in r.measurements)
    assert bp.code.system == CODE_SYSTEM and bp.code.code == "BLOOD_PRESSURE" and bp.value is None
    assert [(c.code.code, c.value, c.unit) for c in bp.components] == [
        ("SYSTOLIC", Decimal(152), "mm[Hg]"),
        ("DIASTOLIC", Decimal(94), "mm[Hg]"),
    ]
    assert bp.effective.isoformat() == "2025-11-03T07:45:00+00:00" and not bp.timezone_assumed
    assert bp.device is not None and bp.device.serial == "5130851"
    assert (bp_pulse.code.code, bp_pulse.value, bp_pulse.unit) == ("PULSE", Decimal(88), "/min")
    assert (spo2.code.code, spo2.value, spo2.unit) == ("SATURATION", Decimal(89), "%")
    assert spo2.attributes["opentele.severity"] == "yellow"
    assert (sat_pulse.code.code, sat_pulse.value) == ("PULSE", Decimal(92))
    # the two pulses share code and time: the node keeps their keys apart
    assert bp_pulse.source_id != sat_pulse.source_id
    assert all(m.source_id and m.source_id[0] == NODE_RESULT_SYSTEM for m in r.measurements)
    assert [m.location for m in r.measurements] == [
        "$.output[0]",
        "$.output[3]",
        "$.output[6]",
        "$.output[7]",
    ]

    [q] = r.questionnaires
    assert q.questionnaire == f"urn:dho-interop:opentele:{SOURCE}:questionnaire:27|1.2"
    assert q.title == "KOL - daglige målinger og spørgsmål"
    assert q.severity == "red" and q.patient == patient
    assert q.source_id is not None and q.source_id[0] == UPLOAD_SYSTEM
    answers = {a.link_id: a for a in q.answers}
    assert [a.link_id for a in q.answers] == ["45", "47", "49", "51", "53", "55", "57"]
    assert (answers["49"].value, answers["49"].severity) == (True, "red")
    assert (answers["51"].value, answers["51"].severity) == (False, "green")
    assert (answers["53"].value, answers["53"].severity) == (True, "yellow")
    assert answers["55"].value == "Mere slim om morgenen" and answers["55"].severity is None
    assert answers["57"].value is True
    assert answers["45"].value == "152/94 mm[Hg], Pulse 88 /min"
    assert answers["47"].severity == "yellow"

    sev = [d for d in r.diagnostics if d.code == "questionnaire-severity"]
    assert len(sev) == 1 and sev[0].severity == "warning"
    assert "RED" in sev[0].message and "node 49 FIELD" in sev[0].message
    # the one empty variable (mean arterial pressure) is accounted for
    assert any(d.code == "missing-value" and "1 output" in d.message for d in r.diagnostics)
    assert not [d for d in r.diagnostics if d.severity == "error"]


def test_questionnaire_response_carries_zone_extension() -> None:
    [q] = _parse(copd_upload()).questionnaires
    qr = build_questionnaire_response(q, patient_reference="Patient/p1", identifier=q.source_id)
    assert qr["extension"] == [
        {
            "url": SEVERITY_URL,
            "valueCoding": {"system": ZONE_SYSTEM, "code": "red", "display": "red"},
        }
    ]
    item = next(i for i in qr["item"] if i["linkId"] == "49")
    assert item["answer"] == [{"valueBoolean": True}]
    assert item["extension"][0]["valueCoding"]["code"] == "red"
    assert qr["questionnaire"].endswith(":questionnaire:27|1.2")
    assert qr["_questionnaire"]["extension"][0]["valueString"].startswith("KOL")
    from fhir.resources.R4B.questionnaireresponse import QuestionnaireResponse

    QuestionnaireResponse.model_validate(qr)


def test_unknown_node_types_and_bad_variables_are_reported() -> None:
    doc = copd_upload(
        output=[
            _var("45.BP#SYSTOLIC", "Integer", 141),
            _var("45.BP#DIASTOLIC", "Integer", 85),
            _var("60.ECG#LEAD_I", "Float[]", [0.1, 0.2]),
            _var("60.ECG##SEVERITY", "String", "YELLOW"),
            _var("61.CTG#FHRX", "Float[]", [120.0, 122.0]),
            _var("aInteger", "Integer", 100),
            "not an object",
            _var("62.FIELD", "Integer", "many"),
            _var("63.URINE", "Integer", 9),
            _var("64.WEIGHT", "Float", 81.5),
            _var("64.WEIGHT#CANCEL", "Boolean", True),
            _var("65.CRP", "Integer", 0),
        ]
    )
    r = _parse(doc)
    by_location = {d.location: d for d in r.diagnostics}
    assert by_location["$.output[2]"].code == "unsupported"
    assert "'ECG' is not known" in by_location["$.output[2]"].message
    assert (
        by_location["$.output[4]"].code == "unsupported"
        and "CTG" in by_location["$.output[4]"].message
    )
    assert by_location["$.output[5]"].code == "invalid"
    assert by_location["$.output[6]"].code == "invalid"
    assert by_location["$.output[7]"].code == "invalid"
    assert by_location["$.output[8]"].code == "invalid"
    assert "skipped" in by_location["$.output[9]"].message
    assert {d.severity for d in r.diagnostics if d.location in ("$.output[2]", "$.output[4]")} == {
        "error"
    }
    # what could be read is still there; the unknown node's severity still counts
    assert [m.code.code for m in r.measurements] == ["BLOOD_PRESSURE", "CRP"]
    crp = r.measurements[1]
    assert crp.value == 0 and crp.note and "under 5 mg/L" in crp.note
    [q] = r.questionnaires
    assert q.severity == "yellow"
    assert {a.link_id: a.text for a in q.answers}["64"] == "Weight (skipped)"


def test_blood_sugar_readings_keep_their_own_times_and_skip_control_tests() -> None:
    readings = {
        "serialNumber": "AC-1234",
        "transferTime": "2025-11-03T07:40:00Z",
        "measurements": [
            {"timeOfMeasurement": "2025-11-02T21:10:00Z", "result": 7.4, "isAfterMeal": True},
            {"timeOfMeasurement": "2025-11-03T06:55:00Z", "result": 5.1, "isBeforeMeal": True},
            {
                "timeOfMeasurement": "2025-11-03T07:00:00Z",
                "result": 10.0,
                "isControlMeasurement": True,
            },
        ],
    }
    r = _parse(
        copd_upload(
            output=[_var("70.BS#BLOODSUGARMEASUREMENTS", "BloodSugarMeasurements", readings)]
        )
    )
    assert [(m.code.code, m.value, m.effective.hour) for m in r.measurements] == [
        ("BLOODSUGAR", Decimal("7.4"), 21),
        ("BLOODSUGAR", Decimal("5.1"), 6),
    ]
    # readings are keyed on their content: the app re-sends a meter's memory
    assert all(
        m.source_id is None and m.device and m.device.serial == "AC-1234" for m in r.measurements
    )
    [control] = [d for d in r.diagnostics if d.code == "not-a-measurement"]
    assert control.location == "$.output[0].value.measurements[2]"
    assert r.questionnaires[0].answers[0].value == "2 reading(s)"


def test_patient_comes_from_the_upload_or_the_transport_never_guessed() -> None:
    r = _parse(copd_upload(PatientId="42"), IngestMeta(source=SOURCE))
    assert r.questionnaires[0].patient == PatientRef(vendor_user_system(SOURCE), "42")
    r = _parse(copd_upload(), IngestMeta(source=SOURCE, options={"cpr": "2512484916"}))
    assert r.questionnaires[0].patient == PatientRef(CPR_SYSTEM, "2512484916")
    r = _parse(copd_upload(), IngestMeta(source=SOURCE, patient=PatientRef(FNR_OID, FNR)))
    assert r.measurements[0].patient == PatientRef(FNR_OID, FNR)
    with pytest.raises(AdapterError) as info:
        _parse(copd_upload(), IngestMeta(source=SOURCE))
    assert info.value.code == "missing-patient" and info.value.location == "$.PatientId"


def test_malformed_uploads_are_refused_with_a_location() -> None:
    text = orjson.dumps(copd_upload())[:-40]
    with pytest.raises(AdapterError) as info:
        OpenTeleAdapter().parse(text, META)
    assert info.value.code == "parse-error" and info.value.location
    assert info.value.location.startswith("line 1 column ")
    with pytest.raises(AdapterError) as info:
        OpenTeleAdapter().parse(b'{"QuestionnaireId": 27,\n "date": 2025,,\n}', META)
    assert info.value.location == "line 2 column 15"
    for changes, where in (
        ({"date": "yesterday"}, "$.date"),
        ({"date": None}, "$.date"),
        ({"QuestionnaireId": None}, "$.QuestionnaireId"),
        ({"output": {"45.BP#SYSTOLIC": 150}}, "$.output"),
        ({"output": []}, "$.output"),
    ):
        with pytest.raises(AdapterError) as info:
            _parse(copd_upload(**changes))
        assert info.value.location == where, changes
    # in an array of uploads, a bad one is reported and the others are read
    r = _parse([copd_upload(), copd_upload(date="soon"), {"x": 1}])
    assert len(r.questionnaires) == 1 and len(r.measurements) == 4
    assert {d.location for d in r.diagnostics if d.severity == "error"} == {"$[1].date", "$[2]"}


def test_mapping_codes_for_the_node_types() -> None:
    mappings = MappingSet.load()
    for code, loinc in (
        ("BLOOD_PRESSURE", "85354-9"),
        ("SYSTOLIC", "8480-6"),
        ("DIASTOLIC", "8462-4"),
        ("PULSE", "8867-4"),
        ("SATURATION", "2708-6"),
        ("WEIGHT", "29463-7"),
        ("TEMPERATURE", "8310-5"),
        ("BLOODSUGAR", "14743-9"),
    ):
        from adapters.base import Code

        concept = mappings.concept_for(Code(CODE_SYSTEM, code), ())
        assert concept is not None and concept.loinc.code == loinc, code


# ---- end to end through the ingest pipeline --------------------------------------------------
def _patient(client) -> str:  # type: ignore[no-untyped-def]
    return client.post(
        "/fhir/Patient",
        json={"resourceType": "Patient", "identifier": [{"system": FNR_OID, "value": FNR}]},
    ).json()["id"]


def test_ingest_quarantine_link_release_and_resend(client, services) -> None:  # type: ignore[no-untyped-def]
    pid = _patient(client)
    pipe = IngestPipeline(services)
    data = orjson.dumps(copd_upload())
    first = pipe.ingest("opentele", data, META)
    # the OpenTele user is not linked yet: everything waits, nothing is guessed
    assert (first.created, first.quarantined, first.rejected) == (0, 5, 0), first.diagnostics
    assert any(
        d["code"] == "questionnaire-severity" and "RED" in d["message"] for d in first.diagnostics
    )
    with services.store.write(WriteContext.service()) as tx:
        assert link_patient(tx.conn, vendor_user_system(SOURCE), USER, FNR) == pid
    assert release_quarantine(services, pipe.mappings)["released"] == 5

    [entry] = client.get("/fhir/QuestionnaireResponse", params={"patient": pid}).json()["entry"]
    qr = entry["resource"]
    assert qr["subject"] == {"reference": f"Patient/{pid}"}
    assert qr["questionnaire"] == f"urn:dho-interop:opentele:{SOURCE}:questionnaire:27|1.2"
    assert qr["authored"].startswith("2025-11-03T07:45:00")
    assert qr["extension"][0]["url"] == SEVERITY_URL
    assert qr["extension"][0]["valueCoding"] == {
        "system": ZONE_SYSTEM,
        "code": "red",
        "display": "red",
    }
    items = {i["linkId"]: i for i in qr["item"]}
    assert items["49"]["answer"] == [{"valueBoolean": True}]
    assert items["51"]["answer"] == [{"valueBoolean": False}]
    assert items["55"]["answer"] == [{"valueString": "Mere slim om morgenen"}]

    found = client.get("/fhir/Observation", params={"patient": pid}).json()
    codes = sorted(e["resource"]["code"]["coding"][0]["code"] for e in found["entry"])
    assert codes == ["2708-6", "85354-9", "8867-4", "8867-4"]
    bp = next(
        e["resource"]
        for e in found["entry"]
        if e["resource"]["code"]["coding"][0]["code"] == "85354-9"
    )
    assert [c["valueQuantity"]["value"] for c in bp["component"]] == [152, 94]
    assert bp["effectiveDateTime"].startswith("2025-11-03T07:45:00")

    # the same upload again, now that the user is linked: nothing new
    again = pipe.ingest("opentele", data, META)
    assert (again.created, again.updated, again.quarantined, again.duplicate) == (0, 0, 0, 5)
    assert (
        client.get("/fhir/Observation", params={"patient": pid, "_summary": "count"}).json()[
            "total"
        ]
        == 4
    )
    assert (
        client.get(
            "/fhir/QuestionnaireResponse", params={"patient": pid, "_summary": "count"}
        ).json()["total"]
        == 1
    )


def test_ingest_over_http_with_the_user_option(client, services) -> None:  # type: ignore[no-untyped-def]
    pid = _patient(client)
    with services.store.write(WriteContext.service()) as tx:
        link_patient(tx.conn, vendor_user_system(SOURCE), USER, FNR)
    doc = copd_upload(
        output=[
            _var("45.BP#SYSTOLIC", "Integer", 131),
            _var("45.BP#DIASTOLIC", "Integer", 82),
            _var("45.BP##SEVERITY", "String", "GREEN"),
            _var("46.TEMPERATURE", "Float", 37.2),
            _var("49.FIELD", "Boolean", False),
            _var("49.FIELD#SEVERITY", "String", "GREEN"),
            _var("60.ECG#LEAD_I", "Float[]", [0.1]),
        ]
    )
    r = client.post(
        "/ingest/opentele",
        params={"source": SOURCE, "user": USER},
        content=orjson.dumps(doc),
        headers={"content-type": "application/json"},
    )
    assert r.status_code == 200, r.text
    report = r.json()
    assert (report["created"], report["rejected"]) == (3, 1), report["diagnostics"]
    assert {d["code"] for d in report["diagnostics"]} >= {"questionnaire-severity", "unsupported"}
    qr = client.get("/fhir/QuestionnaireResponse", params={"patient": pid}).json()["entry"][0]
    assert qr["resource"]["extension"][0]["valueCoding"]["code"] == "green"
    again = client.post(
        "/ingest/opentele", params={"source": SOURCE, "user": USER}, content=orjson.dumps(doc)
    ).json()
    assert (again["created"], again["duplicate"]) == (0, 3)


def test_a_refused_upload_stores_nothing(services) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(IngestRejected) as info:
        IngestPipeline(services).ingest("opentele", b'{"QuestionnaireId": 27, "output": [', META)
    [d] = info.value.report.diagnostics
    assert d["code"] == "parse-error" and d["location"].startswith("line 1 column")


def test_lab_and_lung_function_readings_become_observations(client, services) -> None:  # type: ignore[no-untyped-def]
    pid = _patient(client)
    with services.store.write(WriteContext.service()) as tx:
        link_patient(tx.conn, vendor_user_system(SOURCE), USER, FNR)
    doc = copd_upload(
        output=[
            _var("70.CRP", "Integer", 42),
            _var("71.HEMOGLOBIN", "Float", 12.4),
            _var("72.LF#FEV1", "Float", 1.87),
            _var("72.LF#FEV6", "Float", 2.9),
            _var("73.URINE", "Integer", 2),
        ]
    )
    report = IngestPipeline(services).ingest("opentele", orjson.dumps(doc), META)
    assert report.created == 4, report.diagnostics  # three Observations + the answers
    unmapped = sorted(d["message"] for d in report.diagnostics if "is not mapped" in d["message"])
    assert len(unmapped) == 2 and "|FEV6" in unmapped[0] and "|URINE" in unmapped[1], unmapped

    found = client.get("/fhir/Observation", params={"patient": pid}).json()["entry"]
    by_code = {e["resource"]["code"]["coding"][0]["code"]: e["resource"] for e in found}
    assert by_code["1988-5"]["valueQuantity"] == {
        "value": 42,
        "unit": "mg/L",
        "system": "http://unitsofmeasure.org",
        "code": "mg/L",
    }
    assert by_code["1988-5"]["category"][0]["coding"][0]["code"] == "laboratory"
    assert by_code["718-7"]["valueQuantity"]["value"] == 12.4
    assert by_code["718-7"]["valueQuantity"]["code"] == "g/dL"
    assert by_code["20150-9"]["valueQuantity"]["value"] == 1.87
    assert by_code["20150-9"]["valueQuantity"]["code"] == "L"
    assert by_code["20150-9"]["category"][0]["coding"][0]["code"] == "exam"
    # each keeps the source's own code beside the LOINC one
    sources = {
        c["code"]
        for r in by_code.values()
        for c in r["code"]["coding"]
        if c["system"] == "urn:dho-interop:code:opentele"
    }
    assert sources == {"CRP", "HEMOGLOBIN", "FEV1"}
