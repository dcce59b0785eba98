"""Migration 0019 backfills what the search index now holds for data stored before it: open
effectivePeriods and the as-written rows that ``:exact`` searches."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from fastapi.testclient import TestClient

from interop.api.app import create_app
from interop.config import Settings
from interop.services import build_services
from interop.store.db import get_engine
from interop.store.migrate import alembic_config, upgrade
from tests.api.test_fhir_crud import observation, patient
from tests.conftest import ADMIN_HEADERS, KITH_SCHEMAS


def _ids(client: TestClient, path: str, params: dict[str, str]) -> list[str]:
    r = client.get(path, params=params)
    assert r.status_code == 200, r.text
    return [e["resource"]["id"] for e in r.json().get("entry", [])]


def test_0019_backfills_open_periods_and_exact_strings(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'm.db'}"
    settings = Settings(database_url=url, admin_key="test-admin-key", kith_schema_dir=KITH_SCHEMAS)
    with TestClient(create_app(settings), headers=ADMIN_HEADERS) as client:
        pid = client.post("/fhir/Patient", json=patient(family="Åse")).json()["id"]
        obs = observation(pid)
        obs.pop("effectiveDateTime")
        obs["effectivePeriod"] = {"start": "2019-06-01T08:00:00+02:00"}
        oid = client.post("/fhir/Observation", json=obs).json()["id"]
    engine = get_engine(url)
    cfg = alembic_config(engine)
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.downgrade(cfg, "0016")  # as a store written before 0019 indexes it
    before = build_services(settings, migrate=False)
    with TestClient(create_app(settings, services=before), headers=ADMIN_HEADERS) as client:
        assert _ids(client, "/fhir/Patient", {"family:exact": "Åse"}) == []
        assert _ids(client, "/fhir/Observation", {"date": "ge2020"}) == []
    before.engine.dispose()
    upgrade(engine)
    with TestClient(create_app(settings), headers=ADMIN_HEADERS) as client:
        assert _ids(client, "/fhir/Patient", {"family:exact": "Åse"}) == [pid]
        assert _ids(client, "/fhir/Patient", {"family:exact": "åse"}) == []
        assert _ids(client, "/fhir/Observation", {"date": "ge2020"}) == [oid]
        assert _ids(client, "/fhir/Observation", {"date": "eb2020"}) == []
    engine.dispose()
