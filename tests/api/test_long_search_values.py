"""A token or reference value longer than the index column (255 characters) is indexed and
searched whole: two canonicals (or identifiers) with the same first 255 characters are two
values, each search finds its own resource only, on SQLite and PostgreSQL alike; revision
0025 re-indexes the rows stored cut at 255 before it."""

from __future__ import annotations

from typing import Any

from tests.api.test_canonical_references_and_revinclude_targets import _response
from tests.api.test_meta_and_system_search import _post, _world
from tests.api.test_search_breadth import _ids

LONG = "https://dho-interop.no/fhir/Questionnaire/" + "k" * 260
"""Longer than the index column: two canonicals below differ only after it."""


def test_long_canonicals_match_whole_values_only(client) -> None:  # type: ignore[no-untyped-def]
    a, b, _ca, _cb, _gp = _world(client)
    first = _post(client, _response(a, f"{LONG}-a"))
    second = _post(client, _response(b, f"{LONG}-b"))
    versioned = _post(client, _response(b, f"{LONG}-a|1.0"))
    q = "QuestionnaireResponse?questionnaire="
    assert _ids(client, f"{q}{LONG}-a") == {first}
    assert _ids(client, f"{q}{LONG}-b") == {second}
    assert _ids(client, f"{q}{LONG}-a|1.0") == {versioned}
    assert _ids(client, f"{q}{LONG}") == set()
    assert _ids(client, f"{q}{LONG[:255]}") == set()  # the first 255 characters: no value
    # what refers to a Questionnaire by its long canonical
    qa = _post(client, {"resourceType": "Questionnaire", "status": "active", "url": f"{LONG}-a"})
    got = _ids(
        client, f"Questionnaire?_id={qa}&_revinclude=QuestionnaireResponse:questionnaire", "include"
    )
    assert got == {first}


def _with_identifier(pid: str, value: str) -> dict[str, Any]:
    return {
        **_response(pid, "https://dho-interop.no/fhir/Questionnaire/kort"),
        "identifier": {"system": "urn:oid:2.16.578.1.12.4.1.9.9", "value": value},
    }


def test_long_token_values_match_whole_values_only(client) -> None:  # type: ignore[no-untyped-def]
    a, b, _ca, _cb, _gp = _world(client)
    value = "x" * 300
    first = _post(client, _with_identifier(a, value + "1"))
    second = _post(client, _with_identifier(b, value + "2"))
    q = "QuestionnaireResponse?identifier="
    assert _ids(client, f"{q}{value}1") == {first}
    assert _ids(client, f"{q}urn:oid:2.16.578.1.12.4.1.9.9|{value}2") == {second}
    assert _ids(client, f"{q}{value}") == set()
    assert _ids(client, f"{q}{value[:255]}") == set()


def test_0025_reindexes_values_stored_cut(settings: Any, services: Any) -> None:
    """Rows stored as the code before revision 0025 wrote them (cut at 255 characters) are
    replaced by whole-value rows: the search that matched both afterwards finds one."""
    from fastapi.testclient import TestClient
    from sqlalchemy import func, select, update

    from interop.api.app import create_app
    from interop.store.migrate import upgrade
    from interop.store.schema import reference_table
    from tests.conftest import ADMIN_HEADERS

    def client() -> TestClient:
        return TestClient(create_app(settings, services=services), headers=ADMIN_HEADERS)

    with client() as c:
        a, b, _ca, _cb, _gp = _world(c)
        first = _post(c, _response(a, f"{LONG}-a"))
        second = _post(c, _response(b, f"{LONG}-b"))
    engine = services.engine
    ref = reference_table.c
    with engine.begin() as conn:  # the rows as written before 0025
        conn.execute(
            update(reference_table)
            .where(ref.param == "questionnaire", ref.res_id.in_([first, second]))
            .values(target=func.substr(f"{LONG}-a", 1, 255))
        )
        conn.exec_driver_sql("UPDATE alembic_version SET version_num = '0024'")
    with client() as c:  # rows cut at 255 hold no whole value
        assert _ids(c, f"QuestionnaireResponse?questionnaire={LONG}-a") == set()
    upgrade(engine)
    with engine.connect() as conn:
        assert (
            conn.execute(
                select(func.count()).where(
                    ref.param == "questionnaire", func.length(ref.target) != 255
                )
            ).scalar_one()
            == 0
        )
    with client() as c:
        assert _ids(c, f"QuestionnaireResponse?questionnaire={LONG}-a") == {first}
        assert _ids(c, f"QuestionnaireResponse?questionnaire={LONG}-b") == {second}
        assert _ids(c, f"QuestionnaireResponse?questionnaire={LONG[:255]}") == set()


def test_long_observation_codes_match_whole_values_only(client) -> None:  # type: ignore[no-untyped-def]
    """An Observation coding longer than the index column is stored (PostgreSQL answered 500)
    and found by its whole code only; the patient's other readings are not."""
    from tests.api.test_search_breadth import _bp

    a, _b, _ca, _cb, _gp = _world(client)
    code = "c" * 300

    def coded(suffix: str) -> dict[str, Any]:
        obs = _bp(a, 120, 80)
        obs["code"]["coding"].append({"system": "urn:x", "code": code + suffix})
        return obs

    first = _post(client, coded("1"))
    second = _post(client, coded("2"))
    plain = _post(client, _bp(a, 130, 85))
    assert _ids(client, f"Observation?code=urn:x|{code}1") == {first}
    assert _ids(client, f"Observation?patient={a}&code={code}2") == {second}
    assert _ids(client, f"Observation?code={code[:255]}") == set()
    assert plain in _ids(client, f"Observation?patient={a}&code=85354-9")
