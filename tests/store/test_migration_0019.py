"""Migration 0019 backfills what the search index now holds for data stored before it: open
effectivePeriods and the as-written rows that ``:exact`` searches (SQLite and PostgreSQL)."""

from __future__ import annotations

from typing import Any

from alembic import command
from fastapi.testclient import TestClient

from interop.api.app import create_app
from interop.store.migrate import alembic_config, upgrade
from tests.api.test_fhir_crud import observation, patient
from tests.conftest import ADMIN_HEADERS


def _ids(client: TestClient, path: str, params: dict[str, str]) -> list[str]:
    r = client.get(path, params=params)
    assert r.status_code == 200, r.text
    return [e["resource"]["id"] for e in r.json().get("entry", [])]


def _revision_before(revision: str, cfg: Any) -> str:
    from alembic.script import ScriptDirectory

    down = ScriptDirectory.from_config(cfg).get_revision(revision).down_revision
    assert isinstance(down, str)
    return down


def test_0019_backfills_open_periods_and_exact_strings(settings: Any, services: Any) -> None:
    def client() -> TestClient:
        return TestClient(create_app(settings, services=services), headers=ADMIN_HEADERS)

    with client() as c:
        pid = c.post("/fhir/Patient", json=patient(family="Åse")).json()["id"]
        obs = observation(pid)
        obs.pop("effectiveDateTime")
        obs["effectivePeriod"] = {"start": "2019-06-01T08:00:00+02:00"}
        oid = c.post("/fhir/Observation", json=obs).json()["id"]
    engine = services.engine
    cfg = alembic_config(engine)
    try:
        with engine.begin() as conn:
            cfg.attributes["connection"] = conn
            # the index as a store written before 0019 has it
            command.downgrade(cfg, _revision_before("0019", cfg))
        with client() as c:
            assert _ids(c, "/fhir/Patient", {"family:exact": "Åse"}) == []
            assert _ids(c, "/fhir/Observation", {"date": "ge2020"}) == []
    finally:
        upgrade(engine)
    with client() as c:
        assert _ids(c, "/fhir/Patient", {"family:exact": "Åse"}) == [pid]
        assert _ids(c, "/fhir/Patient", {"family:exact": "åse"}) == []
        assert _ids(c, "/fhir/Observation", {"date": "ge2020"}) == [oid]
        assert _ids(c, "/fhir/Observation", {"date": "eb2020"}) == []
