"""Composite search on the generic types (the components' rows under the composite's key, one
ordinal per element): each R4 composite kind the generic index follows, the components matched
on the same element only (never one component on one element and the other on another), the
access policy's restriction applied, and migration 0022 backfilling what was stored before it.

The corpus (``../shared/corpus/fhir``) holds no resource with ``characteristic``,
``relatesTo`` or ``useContext``; the resources here follow the R4 examples of their types
(``group-example``, ``documentreference-example``, ``questionnaire-example``,
``molecularsequence-example``)."""

from __future__ import annotations

from typing import Any

from alembic import command
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from interop.api.app import create_app
from interop.store.migrate import alembic_config, upgrade
from interop.store.schema import token_table
from tests.api.test_fhir_crud import patient
from tests.api.test_meta_and_system_search import _world
from tests.api.test_search_breadth import _create, _ids
from tests.conftest import ADMIN_HEADERS

SCT = "http://snomed.info/sct"
UCUM = "http://unitsofmeasure.org"
USAGE = "http://terminology.hl7.org/CodeSystem/usage-context-type"
GENDER = f"{SCT}|263495000"
DIABETES = f"{SCT}|73211009"


def _concept(system: str, code: str) -> dict[str, Any]:
    return {"coding": [{"system": system, "code": code}]}


def _group(gender: str, diabetic: bool) -> dict[str, Any]:
    return {
        "resourceType": "Group",
        "type": "person",
        "actual": False,
        "characteristic": [
            {
                "code": _concept(SCT, "263495000"),
                "valueCodeableConcept": _concept(
                    "http://hl7.org/fhir/administrative-gender", gender
                ),
                "exclude": False,
            },
            {"code": _concept(SCT, "73211009"), "valueBoolean": diabetic, "exclude": False},
        ],
    }


def test_group_characteristic_value(client) -> None:  # type: ignore[no-untyped-def]
    women = _create(client, _group("female", True))
    men = _create(client, _group("male", False))
    assert _ids(client, f"Group?characteristic-value={GENDER}$female") == {women}
    assert _ids(client, "Group?characteristic-value=263495000$male") == {men}
    assert _ids(client, f"Group?characteristic-value={DIABETES}$true") == {women}
    assert _ids(client, f"Group?characteristic-value={DIABETES}$false") == {men}
    # values OR'ed, and a second composite AND'ed
    assert _ids(client, f"Group?characteristic-value={GENDER}$female,{GENDER}$male") == {
        women,
        men,
    }
    assert (
        _ids(
            client,
            f"Group?characteristic-value={GENDER}$female&characteristic-value={DIABETES}$false",
        )
        == set()
    )
    # the women's group has gender and "true", but on two characteristics: no match
    assert _ids(client, f"Group?characteristic-value={GENDER}$true") == set()
    assert _ids(client, f"Group?characteristic-value={DIABETES}$female") == set()


def _document(pid: str, relates: list[tuple[str, str]] | None = None) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "resourceType": "DocumentReference",
        "status": "current",
        "subject": {"reference": f"Patient/{pid}"},
        "content": [{"attachment": {"contentType": "application/pdf", "url": "urn:x:report"}}],
    }
    if relates:
        doc["relatesTo"] = [
            {"code": code, "target": {"reference": f"DocumentReference/{target}"}}
            for code, target in relates
        ]
    return doc


def test_document_reference_relationship(client) -> None:  # type: ignore[no-untyped-def]
    pid = _create(client, patient())
    first = _create(client, _document(pid))
    second = _create(client, _document(pid))
    appends = _create(client, _document(pid, [("appends", first)]))
    both = _create(client, _document(pid, [("replaces", first), ("appends", second)]))
    q = "DocumentReference?relationship="
    assert _ids(client, f"{q}DocumentReference/{first}$appends") == {appends}
    assert _ids(client, f"{q}DocumentReference/{first}$replaces") == {both}
    assert _ids(client, f"{q}DocumentReference/{second}$appends") == {both}
    # "replaces" and the second document are both on ``both``, but not on one relatesTo
    assert _ids(client, f"{q}DocumentReference/{second}$replaces") == set()
    assert _ids(client, f"{q}DocumentReference/{first}$transforms") == set()


def _questionnaire(title: str, low_age: int, focus: str) -> dict[str, Any]:
    return {
        "resourceType": "Questionnaire",
        "status": "active",
        "title": title,
        "useContext": [
            {
                "code": {"system": USAGE, "code": "age"},
                "valueRange": {"low": {"value": low_age, "system": UCUM, "code": "a"}},
            },
            {
                "code": {"system": USAGE, "code": "focus"},
                "valueCodeableConcept": _concept(SCT, focus),
            },
        ],
    }


def test_use_context_value_and_quantity(client) -> None:  # type: ignore[no-untyped-def]
    adults = _create(client, _questionnaire("KOLS", 18, "13645005"))
    children = _create(client, _questionnaire("Astma", 0, "195967001"))
    assert _ids(client, f"Questionnaire?context-type-value={USAGE}|focus${SCT}|13645005") == {
        adults
    }
    assert _ids(client, "Questionnaire?context-type-value=focus$195967001") == {children}
    # "age" and a focus code are on two useContexts: no match
    assert _ids(client, "Questionnaire?context-type-value=age$13645005") == set()
    # the ages are ranges open upwards: both reach above 40, only the children's below 10
    assert _ids(client, "Questionnaire?context-type-quantity=age$gt40") == {adults, children}
    assert _ids(client, f"Questionnaire?context-type-quantity=age$lt10|{UCUM}|a") == {children}
    assert _ids(client, "Questionnaire?context-type-quantity=age$lt10||mo") == set()
    assert _ids(client, "Questionnaire?context-type-quantity=focus$gt40") == set()
    # the same composites on another conformance type
    vs = {**_questionnaire("x", 18, "13645005"), "resourceType": "ValueSet"}
    vs.pop("title")
    vid = _create(client, vs)
    assert _ids(client, "ValueSet?context-type-value=focus$13645005") == {vid}


def test_three_components(client) -> None:  # type: ignore[no-untyped-def]
    seq = {
        "resourceType": "MolecularSequence",
        "coordinateSystem": 0,
        "referenceSeq": {
            "chromosome": _concept("http://terminology.hl7.org/CodeSystem/chromosome-human", "1"),
            "windowStart": 22125500,
            "windowEnd": 22125510,
        },
    }
    sid = _create(client, seq)
    q = "MolecularSequence?chromosome-window-coordinate="
    assert _ids(client, f"{q}1$ge22125500$le22125510") == {sid}
    assert _ids(client, f"{q}2$ge22125500$le22125510") == set()
    assert _ids(client, f"{q}1$gt22125510$le22125520") == set()


def test_bad_composite_values_are_refused_naming_the_parameter(client) -> None:  # type: ignore[no-untyped-def]
    for q in (
        "Group?characteristic-value=263495000",  # one component of two
        "Group?characteristic-value=263495000$male$x",
        "Group?characteristic-value=$male",
        "Questionnaire?context-type-quantity=age$many",
        "MolecularSequence?chromosome-window-coordinate=1$5",
        "Group?characteristic-value:not=263495000$male",
        "Group?characteristic-value:missing=true",
    ):
        r = client.get(f"/fhir/{q}")
        assert r.status_code == 400, (q, r.text)
        body = r.json()
        assert body["resourceType"] == "OperationOutcome"
        assert q.split("?")[1].split("=")[0].split(":")[0] in r.text, (q, r.text)
    # a component value may hold an escaped $
    assert client.get("/fhir/Group?characteristic-value=a\\$b$male").status_code == 200


def test_an_update_and_a_delete_move_the_composite_rows(client) -> None:  # type: ignore[no-untyped-def]
    gid = _create(client, _group("female", True))
    body = {**_group("male", True), "id": gid}
    assert client.put(f"/fhir/Group/{gid}", json=body).status_code == 200
    assert _ids(client, f"Group?characteristic-value={GENDER}$female") == set()
    assert _ids(client, f"Group?characteristic-value={GENDER}$male") == {gid}
    assert client.delete(f"/fhir/Group/{gid}").status_code == 200
    assert _ids(client, f"Group?characteristic-value={GENDER}$male") == set()


def test_a_gp_finds_by_composite_only_what_the_gp_may_read(client) -> None:  # type: ignore[no-untyped-def]
    a, b, _ca, _cb, gp = _world(client)
    target_a = _create(client, _document(a))
    target_b = _create(client, _document(b))
    own = _create(client, _document(a, [("appends", target_a)]))
    _victim = _create(client, _document(b, [("appends", target_b)]))
    r = client.get(
        f"/fhir/DocumentReference?relationship=DocumentReference/{target_b}$appends", headers=gp
    )
    assert r.status_code == 200, r.text
    assert r.json().get("entry", []) == []
    r = client.get(
        f"/fhir/DocumentReference?relationship=DocumentReference/{target_a}$appends", headers=gp
    )
    assert {e["resource"]["id"] for e in r.json()["entry"]} == {own}
    # through a reverse chain, the same
    r = client.get(
        "/fhir/Patient?_has:DocumentReference:subject:relationship="
        f"DocumentReference/{target_b}$appends",
        headers=gp,
    )
    assert r.status_code == 200, r.text
    assert r.json().get("entry", []) == []


def test_0022_backfills_composites_and_meta_stored_before_it(settings: Any, services: Any) -> None:
    def client() -> TestClient:
        return TestClient(create_app(settings, services=services), headers=ADMIN_HEADERS)

    with client() as c:
        gid = _create(c, _group("female", True))
        pid = _create(
            c, {**patient(), "meta": {"tag": [{"system": "urn:test:tags", "code": "old"}]}}
        )
    engine = services.engine
    cfg = alembic_config(engine)
    t = token_table.c
    try:
        with engine.begin() as conn:
            cfg.attributes["connection"] = conn
            command.downgrade(cfg, "0021")  # the store as it was before these rows
        with engine.connect() as conn:
            left = conn.execute(
                select(func.count()).where(t.param.in_(["_tag", "characteristic-value$0#0"]))
            ).scalar_one()
        assert left == 0
    finally:
        upgrade(engine)
    with client() as c:
        assert _ids(c, f"Group?characteristic-value={GENDER}$female") == {gid}
        assert _ids(c, "Patient?_tag=urn:test:tags|old") == {pid}
        meta = c.get("/fhir/Patient/$meta").json()["parameter"][0]["valueMeta"]
        assert meta["tag"] == [{"system": "urn:test:tags", "code": "old"}]
