"""Reference parameters that hold a canonical (``QuestionnaireResponse?questionnaire=url|1.0``):
with a version only that version, without one every version; ``_revinclude`` finds what refers
to a page's resources by their canonical too. ``_revinclude`` of an Observation's Group subject
is served; a ``_revinclude`` whose parameter never points at the searched type is refused
(400), never answered as if nothing referred to the page."""

from __future__ import annotations

from typing import Any

from tests.api.test_meta_and_system_search import _post, _world
from tests.api.test_search_breadth import _bp, _ids

KOLS = "https://dho-interop.no/fhir/Questionnaire/kols-symptomer"


def _questionnaire(version: str) -> dict[str, Any]:
    return {"resourceType": "Questionnaire", "status": "active", "url": KOLS, "version": version}


def _response(pid: str, questionnaire: str) -> dict[str, Any]:
    return {
        "resourceType": "QuestionnaireResponse",
        "status": "completed",
        "questionnaire": questionnaire,
        "subject": {"reference": f"Patient/{pid}"},
        "authored": "2026-01-05T08:30:00+01:00",
    }


def test_versioned_canonicals_in_reference_parameters(client) -> None:  # type: ignore[no-untyped-def]
    a, b, _ca, _cb, gp = _world(client)
    q1 = _post(client, _questionnaire("1.0"))
    _post(client, _questionnaire("2.0"))
    r1 = _post(client, _response(a, f"{KOLS}|1.0"))
    r2 = _post(client, _response(a, f"{KOLS}|2.0"))
    r_any = _post(client, _response(b, KOLS))
    other = _post(client, _response(a, f"{KOLS}-kort|1.0"))
    urn = _post(client, _response(a, "urn:uuid:8f1c4a52-3d0e-4c55-9a55-6a3c1b1f0e11"))
    q = "QuestionnaireResponse?questionnaire="
    assert _ids(client, f"{q}{KOLS}|1.0") == {r1}
    assert _ids(client, f"{q}{KOLS}|2.0") == {r2}
    assert _ids(client, f"{q}{KOLS}|3.0") == set()
    assert _ids(client, f"{q}{KOLS}") == {r1, r2, r_any}  # every version
    assert _ids(client, f"{q}{KOLS}-kort") == {other}
    assert _ids(client, f"{q}{KOLS[:-3]}") == set()  # a canonical is never a prefix
    assert _ids(client, f"{q}urn:uuid:8f1c4a52-3d0e-4c55-9a55-6a3c1b1f0e11") == {urn}
    assert _ids(client, f"{q}{KOLS}|1.0,{KOLS}|2.0") == {r1, r2}
    assert _ids(client, f"{q}{KOLS}&patient={b}") == {r_any}
    # what refers to Questionnaire 1.0 by its canonical: that version, and no version
    got = _ids(
        client, f"Questionnaire?_id={q1}&_revinclude=QuestionnaireResponse:questionnaire", "include"
    )
    assert got == {r1, r_any}
    # a GP: its own patients' responses only
    r = client.get(f"/fhir/{q}{KOLS}", headers=gp)
    assert r.status_code == 200, r.text
    assert {e["resource"]["id"] for e in r.json()["entry"]} == {r1, r2}
    assert r_any not in r.text and b not in str(r.json()["entry"])


def test_revinclude_of_an_observation_group_subject(client) -> None:  # type: ignore[no-untyped-def]
    a, _b, _ca, _cb, gp = _world(client)
    group = _post(
        client,
        {
            "resourceType": "Group",
            "type": "person",
            "actual": True,
            "member": [{"entity": {"reference": f"Patient/{a}"}}],
        },
    )
    of_group = _post(client, {**_bp(a, 120, 80), "subject": {"reference": f"Group/{group}"}})
    _post(client, _bp(a, 130, 85))
    assert _ids(client, f"Group?_id={group}&_revinclude=Observation:subject", "include") == {
        of_group
    }
    assert _ids(client, "Group?_has:Observation:subject:code=85354-9") == {group}
    assert _ids(client, f"Observation?subject=Group/{group}") == {of_group}
    # an Observation about a Group is in no patient's compartment: not shown to a GP
    r = client.get(f"/fhir/Group?_id={group}&_revinclude=Observation:subject", headers=gp)
    assert r.status_code == 200, r.text
    assert of_group not in r.text
    # the parameter never points at the searched type: refused, naming it
    for query in (
        "Organization?_revinclude=Observation:subject",
        "Group?_revinclude=Observation:patient",
        "Patient?_revinclude=Observation:subject:Group",
        "Patient?_revinclude=Condition:encounter",
    ):
        r = client.get(f"/fhir/{query}")
        assert r.status_code == 400, (query, r.text)
        assert r.json()["resourceType"] == "OperationOutcome" and "_revinclude" in r.text
    # as :iterate it is for what the rounds include: no refusal on the page's type
    r = client.get(f"/fhir/Patient?_id={a}&_revinclude:iterate=Observation:subject:Group")
    assert r.status_code == 200, r.text


def test_0024_backfills_what_was_stored_before_it(settings: Any, services: Any) -> None:
    """Observation values, a Patient's link and a canonical stored before migration 0024 are
    found after it (and the downgrade takes exactly those rows away)."""
    from alembic import command
    from fastapi.testclient import TestClient
    from sqlalchemy import func, select

    from interop.api.app import create_app
    from interop.store.migrate import alembic_config, upgrade
    from interop.store.schema import reference_table, token_table
    from tests.conftest import ADMIN_HEADERS

    def client() -> TestClient:
        return TestClient(create_app(settings, services=services), headers=ADMIN_HEADERS)

    with client() as c:
        a = _post(c, {"resourceType": "Patient", "name": [{"family": "Nordmann"}]})
        positive = {"coding": [{"system": "http://snomed.info/sct", "code": "10828004"}]}
        plain = {k: v for k, v in _bp(a, 120, 80).items() if k != "component"}
        obs = _post(c, {**plain, "valueCodeableConcept": positive})
        bp = _post(c, _bp(a, 150, 95))
        linked = _post(
            c,
            {
                "resourceType": "Patient",
                "link": [{"other": {"reference": f"Patient/{a}"}, "type": "seealso"}],
            },
        )
        qr = _post(c, _response(a, f"{KOLS}|1.0"))
    engine = services.engine
    cfg = alembic_config(engine)
    t, ref = token_table.c, reference_table.c
    try:
        with engine.begin() as conn:
            cfg.attributes["connection"] = conn
            command.downgrade(cfg, "0023")
        with engine.connect() as conn:
            assert (
                conn.execute(select(func.count()).where(t.param == "value-concept")).scalar_one()
                == 0
            )
            assert (
                conn.execute(
                    select(func.count()).where(ref.param.in_(["link", "questionnaire"]))
                ).scalar_one()
                == 0
            )
            # what was indexed before stays
            assert (
                conn.execute(
                    select(func.count()).where(t.res_id == bp, t.param == "status")
                ).scalar_one()
                == 1
            )
    finally:
        upgrade(engine)
    with client() as c:
        assert _ids(c, "Observation?value-concept=10828004") == {obs}
        assert _ids(c, "Observation?code-value-concept=85354-9$10828004") == {obs}
        assert _ids(c, f"QuestionnaireResponse?questionnaire={KOLS}") == {qr}
        assert _ids(c, f"Patient?link=Patient/{a}") == {linked}
        assert _ids(c, f"Observation?status=final&patient={a}") == {obs, bp}
