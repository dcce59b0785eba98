"""``interop`` command line: serve, migrate, demo data, and operator tools."""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from pathlib import Path
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
    mllp_port: Annotated[
        int | None, typer.Option(help="also listen for HL7 v2 over MLLP on this port")
    ] = None,
) -> None:
    """Run the HTTP API (FHIR at /fhir), and an MLLP listener with --mllp-port."""
    import os

    import uvicorn

    if mllp_port:
        if workers > 1:
            _fail(
                "--mllp-port needs --workers 1 (one listener per port); run more API workers separately",
                2,
            )
        os.environ["INTEROP_MLLP_PORT"] = str(mllp_port)
        os.environ["INTEROP_MLLP_HOST"] = host
        from interop.config import reset_settings_cache

        reset_settings_cache()

    from interop.store.db import get_engine
    from interop.store.migrate import upgrade

    settings = get_settings()
    upgrade(get_engine(settings.database_url))
    console.print(f"DHO Interop listening on http://{host}:{port}  (FHIR: /fhir/metadata)")
    if mllp_port:
        console.print(f"HL7 v2 MLLP listener on {host}:{mllp_port}")
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


@app.command()
def ingest(
    paths: Annotated[list[Path], typer.Argument(help="files or folders to ingest")],
    adapter: Annotated[
        str, typer.Option("--adapter", "-a", help="adapter name (see `interop adapters`)")
    ],
    source: Annotated[str, typer.Option(help="who sent the data (scopes vendor user ids)")] = "cli",
    profile: Annotated[
        str | None, typer.Option(help="mapping profile for mapped-json/mapped-csv")
    ] = None,
    patient: Annotated[
        str | None, typer.Option(help="fødselsnummer/D-nummer for files without a patient")
    ] = None,
    pattern: Annotated[str, typer.Option(help="glob for files inside folders")] = "*",
) -> None:
    """Ingest files through an adapter; prints a report, exits non-zero when anything was rejected."""
    from rich.progress import Progress

    from adapters.base import IngestMeta, PatientRef
    from interop.identifiers import person_id_system
    from interop.pipeline import IngestPipeline, IngestRejected
    from interop.services import build_services

    settings = get_settings()
    files: list[Path] = []
    for p in paths:
        if p.is_dir():
            files.extend(sorted(f for f in p.rglob(pattern) if f.is_file()))
        elif p.is_file():
            files.append(p)
        else:
            _fail(f"{p}: no such file or folder", 2)
    if not files:
        _fail("nothing to ingest", 2)
    pref = None
    if patient:
        system = person_id_system(patient)
        if system is None:
            _fail(f"{patient!r} is not a valid fødselsnummer/D-nummer", 2)
        assert system is not None
        pref = PatientRef(system, patient)
    pipe = IngestPipeline(build_services(settings))
    options = {"profile": profile} if profile else {}
    totals = {"created": 0, "updated": 0, "duplicate": 0, "quarantined": 0, "rejected": 0}
    failed_files = 0
    with Progress(console=console, transient=True) as progress:
        task = progress.add_task("ingesting", total=len(files))
        for f in files:
            meta = IngestMeta(
                source=source,
                filename=f.name,
                default_timezone=settings.timezone,
                patient=pref,
                options=options,
            )
            try:
                report = pipe.ingest(adapter, f.read_bytes(), meta)
            except IngestRejected as exc:
                failed_files += 1
                totals["rejected"] += max(1, exc.report.rejected)
                for d in exc.report.diagnostics:
                    console.print(f"[red]{f}[/red]: {d.get('code')}: {d.get('message')}")
                progress.advance(task)
                continue
            for k in totals:
                totals[k] += getattr(report, k)
            for d in report.diagnostics:
                if d.get("severity") in ("error", "fatal", "warning"):
                    loc = f" ({d['location']})" if d.get("location") else ""
                    console.print(f"[yellow]{f}{loc}[/yellow]: {d.get('code')}: {d.get('message')}")
            progress.advance(task)
    summary = ", ".join(f"{k} {v}" for k, v in totals.items())
    console.print(
        f"{len(files)} file(s): {summary}"
        + (f"; {failed_files} file(s) unreadable" if failed_files else "")
    )
    if totals["rejected"] or failed_files:
        raise typer.Exit(1)


@app.command("link-patient")
def link_patient_cmd(
    source: Annotated[str, typer.Option(help="vendor/source name")],
    user_id: Annotated[str, typer.Option("--user-id", help="the vendor's user id")],
    national_id: Annotated[str, typer.Option("--national-id", help="fødselsnummer or D-nummer")],
) -> None:
    """Link a vendor user id to a patient, then release matching quarantined measurements."""
    from adapters.base import vendor_user_system
    from interop.fhir.outcome import FhirError
    from interop.patients import link_patient
    from interop.pipeline import release_quarantine
    from interop.services import build_services

    svc = build_services(get_settings())
    try:
        with svc.store.write() as tx:
            pid = link_patient(
                tx.conn, vendor_user_system(source), user_id, national_id, created_by="cli"
            )
    except FhirError as exc:
        _fail(exc.message)
        return
    counts = release_quarantine(svc)
    console.print(f"linked {source}:{user_id} → Patient/{pid}; quarantine: {counts}")


@app.command()
def worker(
    once: Annotated[bool, typer.Option(help="one round, then exit")] = False,
    concurrency: Annotated[int, typer.Option(help="parallel deliveries")] = 4,
) -> None:
    """Deliver the outbox, process received messages, run scheduled checks."""
    import signal
    import threading

    from interop.inbox import InboxProcessor
    from interop.routing.outbox import Outbox
    from interop.routing.worker import DeliveryWorker
    from interop.services import build_services

    svc = build_services(get_settings())
    outbox = Outbox(svc.engine)
    delivery = DeliveryWorker(outbox, concurrency=concurrency)
    inbox = InboxProcessor(svc)
    inbox.recover()
    delivery.periodic.append(("inbox", 0.5, inbox.process_pending))
    delivery.periodic.append(("apprec-deadline", 300.0, outbox.expire_apprecs))
    for name, interval, fn in worker_tasks(svc):
        delivery.periodic.append((name, interval, fn))
    if once:
        n = delivery.run_once()
        console.print(f"delivered {n} message(s)")
        return
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    console.print("worker running (Ctrl-C to stop)")
    delivery.run_forever(stop)


def worker_tasks(svc: object) -> list[tuple[str, float, Callable[[], object]]]:
    """Periodic jobs other parts of the service register for the worker (see WORKER_TASKS)."""
    return [(name, interval, functools.partial(fn, svc)) for name, interval, fn in WORKER_TASKS]


def _check_missing(svc: object) -> object:
    from interop.missing import check_missing

    return check_missing(svc)  # type: ignore[arg-type]


WORKER_TASKS: list[tuple[str, float, Callable[[object], object]]] = [
    ("check-missing", 900.0, _check_missing),
]
"""(name, interval seconds, fn(services)) run by ``interop worker``."""


audit_app = typer.Typer(help="The hash-chained audit log.")
app.add_typer(audit_app, name="audit")


@audit_app.command("verify")
def audit_verify() -> None:
    """Walk the audit chain; exit 1 naming the first broken link."""
    from interop.access.audit import verify
    from interop.services import build_services

    svc = build_services(get_settings())
    with svc.store.reader() as conn:
        ok, message = verify(conn)
    if not ok:
        _fail(message)
    console.print(message)


@app.command("check-missing")
def check_missing_cmd() -> None:
    """Raise Tasks where a plan's scheduled measurements are overdue (idempotent)."""
    from interop.missing import check_missing
    from interop.services import build_services

    n = check_missing(build_services(get_settings()))
    console.print(f"{n} missing-measurement task(s) raised")


@app.command()
def adapters() -> None:
    """List the installed adapters (built-in and plug-ins)."""
    from adapters.registry import available

    for name in available():
        print(name)


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    app()


if __name__ == "__main__":
    main()
