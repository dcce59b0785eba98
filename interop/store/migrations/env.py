"""Alembic environment: runs against the engine handed in by ``interop.store.migrate``."""

from __future__ import annotations

from alembic import context

from interop.store.schema import metadata

config = context.config


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is None:
        from interop.store.db import get_engine

        engine = get_engine(config.get_main_option("sqlalchemy.url") or "")
        with engine.connect() as conn:
            context.configure(connection=conn, target_metadata=metadata, render_as_batch=True)
            with context.begin_transaction():
                context.run_migrations()
        return
    context.configure(connection=connection, target_metadata=metadata, render_as_batch=True)
    with context.begin_transaction():
        context.run_migrations()


run_migrations_online()
