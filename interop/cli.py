"""``interop`` command line: serve, migrate, demo data, and operator tools."""

from __future__ import annotations

import logging
import sys
from typing import Annotated

import typer
from rich.console import Console

from interop.config import get_settings

app = typer.Typer(
    help="DHO Interop: integration layer for Norwegian digital hjemmeoppfølging.",
    no_args_is_help=True,
    add_completion=False,
)
console = Console(stderr=True)


def _fail(message: str, code: int = 1) -> None:
    console.print(f"[red]error:[/red] {message}")
    raise typer.Exit(code)


@app.command()
def migrate() -> None:
    """Create or upgrade the database schema (safe to run from several processes)."""
    from interop.store.db import get_engine
    from interop.store.migrate import current_revision, upgrade

    settings = get_settings()
    engine = get_engine(settings.database_url)
    try:
        upgrade(engine)
    except Exception as exc:  # noqa: BLE001 - an operator needs the message, not a trace
        _fail(f"migration failed on {engine.url.render_as_string(hide_password=True)}: {exc}")
    console.print(
        f"database {engine.url.render_as_string(hide_password=True)} at revision "
        f"{current_revision(engine)}"
    )


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="Interface to listen on")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="HTTP port")] = 8000,
    workers: Annotated[int, typer.Option(help="uvicorn worker processes")] = 1,
    log_level: Annotated[str, typer.Option(help="uvicorn log level")] = "info",
) -> None:
    """Run the HTTP API (FHIR at /fhir)."""
    import uvicorn

    from interop.store.db import get_engine
    from interop.store.migrate import upgrade

    settings = get_settings()
    upgrade(get_engine(settings.database_url))
    console.print(f"DHO Interop listening on http://{host}:{port}  (FHIR: /fhir/metadata)")
    uvicorn.run(
        "interop.api.app:create_app",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        log_level=log_level,
        access_log=False,
    )


@app.command()
def demo(
    patients: Annotated[int, typer.Option(help="number of synthetic patients")] = 50,
    days: Annotated[int, typer.Option(help="days of measurements per patient")] = 90,
    seed: Annotated[int, typer.Option(help="random seed (same seed, same data)")] = 42,
) -> None:
    """Load a realistic synthetic data set (organisations, GPs, patients, measurements)."""
    from interop.demo_loader import load_demo

    settings = get_settings()
    report = load_demo(settings, patients=patients, days=days, seed=seed)
    console.print(report)


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    app()


if __name__ == "__main__":
    sys.exit(main())
