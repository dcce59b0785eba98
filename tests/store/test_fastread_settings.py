"""The hot read path's own connections carry the engine's settings: the URL's options on
PostgreSQL (``sslmode``, ``application_name`` …) and the pragmas on SQLite."""

from __future__ import annotations

import pytest
from sqlalchemy import make_url

from interop.store.db import create_db_engine
from interop.store.fastread import FastReader


def test_the_urls_options_reach_the_fast_connection(settings) -> None:  # type: ignore[no-untyped-def]
    url = make_url(settings.database_url)
    if url.get_backend_name() != "postgresql":
        pytest.skip("URL options are PostgreSQL's")
    engine = create_db_engine(
        url.update_query_dict({"application_name": "dho-fast-read"}).render_as_string(
            hide_password=False
        )
    )
    try:
        assert FastReader(engine).scalar("SHOW application_name") == "dho-fast-read"
    finally:
        engine.dispose()


def test_the_sqlite_pragmas_reach_the_fast_connection(settings) -> None:  # type: ignore[no-untyped-def]
    if make_url(settings.database_url).get_backend_name() != "sqlite":
        pytest.skip("pragmas are SQLite's")
    engine = create_db_engine(settings.database_url)
    try:
        assert FastReader(engine).scalar("PRAGMA foreign_keys") == 1
    finally:
        engine.dispose()
