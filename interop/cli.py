"""``interop`` command line: serve, migrate, demo data, and operator tools."""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console

from interop.config import get_settings

if TYPE_CHECKING:
    from sqlalchemy import Engine

app = typer.Typer(
    help="DHO Interop: integration layer for Norwegian digital hjemmeoppfølging.",
    no_args_is_help=True,
    add_completion=False,
)
console = Console(stderr=True)


def _fail(message: str, code: int = 1) -> None:
    console.print(f"[red]error:[/red] {message}")
    raise typer.Exit(code)


def _version(value: bool) -> None:
    if value:
        from interop import __version__

        print(f"interop {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_version, is_eager=True, help="print the version and stop"
        ),
    ] = False,
) -> None:
    """DHO Interop: integration layer for Norwegian digital hjemmeoppfølging."""


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

    from interop.observability import logging_config
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
        log_config=logging_config(settings.log_json, log_level.upper()),
        access_log=False,
    )


@app.command()
def demo(
    patients: Annotated[int, typer.Option(help="number of synthetic patients")] = 50,
    days: Annotated[int, typer.Option(help="days of measurements per patient")] = 90,
    seed: Annotated[int, typer.Option(help="random seed (same seed, same data)")] = 42,
) -> None:
    """Load a realistic synthetic data set (organisations, GPs, patients, measurements)."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    from interop.demo_loader import load_demo

    settings = get_settings()
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        console=console,
        transient=True,
    ) as progress:
        task = progress.add_task("demo: patients", total=patients)

        def step(done: int, total: int) -> None:
            progress.update(task, completed=done, total=total)

        report = load_demo(settings, patients=patients, days=days, seed=seed, progress=step)
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
    from interop.ingest.pipeline import IngestPipeline, IngestRejected
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
    from interop.ingest.pipeline import release_quarantine
    from interop.patients import link_patient
    from interop.services import build_services
    from interop.store.context import Door, WriteContext

    svc = build_services(get_settings())
    try:
        with svc.store.write(WriteContext(None, Door.LINK)) as tx:
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

    from interop.ingest.inbox import InboxProcessor
    from interop.routing.outbox import Outbox
    from interop.routing.worker import DeliveryWorker
    from interop.services import build_services

    svc = build_services(get_settings())
    outbox = Outbox(svc.engine)
    from interop.national.tenants import TenantConfigError
    from interop.national.wiring import default_transports

    try:
        transports = default_transports(settings=svc.settings, store=svc.store)
    except TenantConfigError as exc:
        _fail(f"the HelseID tenants file cannot be used: {exc}")
        return
    delivery = DeliveryWorker(outbox, transports, concurrency=concurrency)
    inbox = InboxProcessor(svc)
    inbox.recover()
    delivery.periodic.append(("apprec-deadline", 300.0, outbox.expire_apprecs))
    from interop.routing.heartbeat import beat, worker_name

    heartbeat_name = worker_name()
    delivery.periodic.append(("heartbeat", 5.0, lambda: beat(svc.engine, heartbeat_name)))
    for task, interval, fn in worker_tasks(svc):
        delivery.periodic.append((task, interval, fn))
    from interop.national.cli import national_jobs
    from interop.routing.worker import audit_head_export

    delivery.periodic.extend(national_jobs(svc))
    head_job = audit_head_export(svc.engine, svc.settings)
    if head_job is not None:
        delivery.periodic.append(head_job)
    from interop.runtime import tune_gc

    tune_gc(svc.settings)
    if once:
        processed = inbox.process_pending(limit=1000)
        n = delivery.run_once()
        console.print(f"delivered {n} message(s); processed {processed} inbound message(s)")
        return
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    # received HL7/vendor messages are turned into data continuously, in their own thread
    inbox_thread = threading.Thread(
        target=inbox.run_forever, args=(stop,), daemon=True, name="inbox"
    )
    inbox_thread.start()
    console.print("worker running (Ctrl-C to stop)")
    delivery.run_forever(stop)
    inbox_thread.join(timeout=30)


def worker_tasks(svc: object) -> list[tuple[str, float, Callable[[], object]]]:
    """Periodic jobs other parts of the service register for the worker (see WORKER_TASKS)."""
    return [(name, interval, functools.partial(fn, svc)) for name, interval, fn in WORKER_TASKS]


def _check_missing(svc: object) -> object:
    from interop.care.missing import check_missing

    return check_missing(svc)  # type: ignore[arg-type]


def _poll_kith_file_drop(svc: object) -> object:
    from interop.messaging.filedrop import poll_file_drop

    if svc.settings.kith_schema_dir is None:  # type: ignore[attr-defined]
        return None
    return poll_file_drop(svc)


def _poll_edi2(svc: object) -> object:
    from interop.messaging.edi2 import poll_edi2

    if svc.settings.kith_schema_dir is None or not svc.settings.edi2_base_url:  # type: ignore[attr-defined]
        return None
    return poll_edi2(svc)


def _periodic_status(svc: object) -> object:
    from interop.messaging.status import send_periodic_status

    return send_periodic_status(svc)


WORKER_TASKS: list[tuple[str, float, Callable[[object], object]]] = [
    ("check-missing", 900.0, _check_missing),
    ("kith-file-drop", 1.0, _poll_kith_file_drop),
    ("kith-edi2", 2.0, _poll_edi2),
    ("periodic-status", 3600.0, _periodic_status),
]
"""(name, interval seconds, fn(services)) run by ``interop worker``."""


@app.command("send-status")
def send_status(
    patient: Annotated[
        list[str] | None, typer.Option(help="fødselsnummer/D-nummer (repeat); default: all due")
    ] = None,
    force: Annotated[bool, typer.Option(help="send even if one was sent in the period")] = False,
) -> None:
    """Send the GP status report (PLO Helseopplysninger til lege, Statusrapport) now."""
    from interop.identifiers import person_id_system
    from interop.messaging.status import send_periodic_status
    from interop.patients import patient_by_identifier
    from interop.services import build_services

    svc = build_services(get_settings())
    ids = None
    if patient:
        ids = []
        with svc.store.reader() as conn:
            for national_id in patient:
                system = person_id_system(national_id)
                pid = patient_by_identifier(conn, system, national_id) if system else None
                if pid is None:
                    _fail(f"no Patient with fødselsnummer/D-nummer {national_id}")
                ids.append(str(pid))
    console.print(send_periodic_status(svc, patients=ids, force=force or bool(patient)))


inbox_app = typer.Typer(
    help="Received messages (MLLP, folders) and what became of each.", no_args_is_help=True
)
app.add_typer(inbox_app, name="inbox")


@inbox_app.command("list")
def inbox_list(
    outcome: Annotated[
        str | None,
        typer.Option(help="pending, created, quarantined, duplicate, rejected or skipped"),
    ] = None,
    channel: Annotated[str | None, typer.Option(help="mllp, file-drop, …")] = None,
    limit: Annotated[int, typer.Option(help="at most this many, newest first")] = 50,
) -> None:
    """Received messages, newest first, with their outcome and first reasons."""
    from interop.ingest.received import OUTCOMES, Viewer, received_messages
    from interop.services import build_services

    if outcome is not None and outcome not in OUTCOMES:
        _fail(f"--outcome must be one of {', '.join(OUTCOMES)}")
    svc = build_services(get_settings())
    with svc.store.reader() as conn:
        found = received_messages(
            conn,
            Viewer.everyone(),
            outcome=outcome,  # type: ignore[arg-type]
            channel=channel,
            limit=limit,
        )
    for m in found:
        counts = m["counts"] or {}
        figures = ", ".join(f"{k} {v}" for k, v in counts.items() if v and k != "itemsSeen")
        typer.echo(
            f"{m['received']}  {m['id']}  {m['channel']}  {m['sender']}  {m['messageId']}  "
            f"{m['outcome']}" + (f" ({figures})" if figures else "")
        )
        for reason in m["reasons"]:
            typer.echo(f"    {reason}")
        if m.get("error") and not m["reasons"]:
            typer.echo(f"    {m['error']}")
    console.print(f"{len(found)} message(s)")


@inbox_app.command("show")
def inbox_show(message_id: Annotated[str, typer.Argument(help="the message's id")]) -> None:
    """One received message: its outcome, every per-item diagnostic, what it created."""
    import orjson

    from interop.ingest.received import Viewer, received_message
    from interop.services import build_services

    svc = build_services(get_settings())
    with svc.store.reader() as conn:
        found = received_message(conn, Viewer.everyone(), message_id)
    if found is None:
        _fail(f"no received message {message_id!r}")
        return
    typer.echo(orjson.dumps(found, option=orjson.OPT_INDENT_2).decode())


audit_app = typer.Typer(
    help="The audit log: keys, verification, head export, a patient's accesses."
)
app.add_typer(audit_app, name="audit")


def _audit_keyring() -> Any:
    from interop.access.audit.keys import AuditKeyError, keyring_from

    try:
        return keyring_from(get_settings())
    except AuditKeyError as exc:
        _fail(str(exc))


@audit_app.command("keygen")
def audit_keygen(
    out: Annotated[Path, typer.Option(help="new key file (never overwritten; mode 0600)")],
) -> None:
    """Make a new audit key file; point INTEROP_AUDIT_KEY_FILE at it (keep the old key file in
    INTEROP_AUDIT_KEY_DIR so the links it made still verify)."""
    from interop.access.audit.keys import AuditKeyError, key_id, write_new_key

    try:
        key = write_new_key(out)
    except (AuditKeyError, OSError) as exc:
        _fail(str(exc))
        return
    console.print(f"wrote audit key {out} (key id {key_id(key)})")


@audit_app.command("verify")
def audit_verify(
    heads: Annotated[
        Path | None,
        typer.Option(help="heads file (default INTEROP_AUDIT_HEAD_FILE when it exists)"),
    ] = None,
) -> None:
    """Walk the audit chain (and check the exported heads); exit 1 naming the first bad link."""
    from interop.access.audit.chain import verify
    from interop.access.audit.heads import HeadsFileError, read_heads

    keyring = _audit_keyring()
    settings = get_settings()
    heads_file = heads
    if heads_file is None and settings.audit_head_file and settings.audit_head_file.exists():
        heads_file = settings.audit_head_file
    try:
        exported = list(read_heads(heads_file)) if heads_file is not None else []
    except HeadsFileError as exc:
        _fail(str(exc))
        return
    with _db_engine().connect() as conn:
        result = verify(conn, keyring, exported)
    if not result.ok:
        for problem in result.problems[1:20]:
            console.print(f"  {problem}")
        _fail(result.message)
    checked = f"; {len(exported)} exported head(s) match" if exported else ""
    console.print(result.message + checked)


@audit_app.command("export-head")
def audit_export_head() -> None:
    """Append the chain's head to INTEROP_AUDIT_HEAD_FILE (and print it)."""
    import orjson

    from interop.access.audit.heads import export_head

    settings = get_settings()
    try:
        head = export_head(_db_engine(), settings.audit_head_file)
    except OSError as exc:
        _fail(f"audit head file {settings.audit_head_file}: {exc.strerror or exc}")
        return
    if head is None:
        console.print("the audit chain is empty: nothing to export")
        return
    typer.echo(orjson.dumps(head).decode())
    if settings.audit_head_file is None:
        console.print("[yellow]INTEROP_AUDIT_HEAD_FILE is not set: the head was only printed")


@audit_app.command("patient")
def audit_patient(
    national_id: Annotated[str, typer.Argument(help="fødselsnummer or D-nummer")],
    from_: Annotated[
        str | None, typer.Option("--from", help="first day (YYYY-MM-DD, Norwegian time)")
    ] = None,
    to: Annotated[str | None, typer.Option(help="last day, inclusive (YYYY-MM-DD)")] = None,
    format_: Annotated[str, typer.Option("--format", help="json or html")] = "json",
) -> None:
    """Who has read or changed a patient's data (innsyn i logg), to standard output."""
    from interop.access.audit.accesses import (
        PatientNotFound,
        accesses,
        as_html,
        as_json,
        find_patient,
        period,
    )

    if format_ not in ("json", "html"):
        _fail(f"--format {format_!r}: use json or html")
    settings = get_settings()
    try:
        lo, hi = period(from_, to, settings.timezone)
    except ValueError as exc:
        _fail(str(exc))
        return
    with _db_engine().connect() as conn:
        try:
            pid = find_patient(conn, national_id)
        except PatientNotFound as exc:
            _fail(str(exc))
            return
        items = list(accesses(conn, pid, lo, hi))
    if format_ == "html":
        typer.echo(as_html(national_id, items, from_, to, settings.timezone))
    else:
        typer.echo(as_json(national_id, items, from_, to).decode())


actors_app = typer.Typer(help="API keys (actors): make one, list them, revoke one.")
app.add_typer(actors_app, name="actors")


def _cli_actor() -> Any:
    """Who the audit log names for a key made or revoked here (an admin at the command line)."""
    from interop.access.actor import cli_actor

    return cli_actor()


@actors_app.command("create")
def actors_create(
    role: Annotated[str, typer.Option(help="gp, hospital, epj, followup, vendor or admin")],
    orgnr: Annotated[str | None, typer.Option(help="the organisation's org.nr")] = None,
    herid: Annotated[str | None, typer.Option(help="the organisation's HER-id")] = None,
    hpr: Annotated[str | None, typer.Option(help="a health professional's HPR number")] = None,
    name: Annotated[str | None, typer.Option(help="who it is, as people read it")] = None,
    expires: Annotated[
        str | None, typer.Option(help="ISO 8601 instant with offset, e.g. 2027-01-31T23:59:59Z")
    ] = None,
) -> None:
    """Make an actor with a new API key; the key is printed once (on stdout), never stored."""
    from interop.access.actors import actor_problems, create_key_actor, parse_expiry
    from interop.services import build_services

    problems = [text for text, _where in actor_problems(role, orgnr, herid, hpr)]
    when, expiry_problem = parse_expiry(expires)
    if expiry_problem:
        problems.append(expiry_problem)
    if problems:
        _fail("; ".join(problems), 2)
    services = build_services(get_settings())
    actor_id, key = create_key_actor(
        services.store,
        _cli_actor(),
        role=role,
        orgnr=orgnr,
        herid=herid,
        hpr=hpr,
        name=name,
        expires=when,
    )
    console.print(f"actor {actor_id} ({role}) made; its key (shown once):")
    print(key)


@actors_app.command("list")
def actors_list(
    as_json: Annotated[bool, typer.Option("--json", help="JSON as the actors API")] = False,
) -> None:
    """Every actor with an API key (never the keys)."""
    import orjson
    from rich.table import Table

    from interop.access.actors import list_key_actors

    actors = list_key_actors(_db_engine())
    if as_json:
        print(orjson.dumps(actors, option=orjson.OPT_INDENT_2).decode())
        return
    table = Table()
    for column in ("id", "role", "org.nr", "HER-id", "HPR", "state", "expires"):
        table.add_column(column, no_wrap=True)
    for a in actors:
        table.add_row(
            a["id"],
            a["role"],
            a["organization"]["orgnr"] or "",
            a["organization"]["herid"] or "",
            a["hpr"] or "",
            "revoked" if a["revoked"] else "active",
            a["expires"] or "",
        )
    _stdout().print(table)
    console.print(f"{len(actors)} actor(s)")


@actors_app.command("revoke")
def actors_revoke(actor_id: Annotated[str, typer.Argument(help="the actor's id")]) -> None:
    """Revoke an actor's key (API processes stop taking it within their key cache time)."""
    from interop.access.actors import revoke_key_actor
    from interop.services import build_services

    if not revoke_key_actor(build_services(get_settings()).store, _cli_actor(), actor_id):
        _fail(f"actor {actor_id} is not known", 1)
    console.print(f"actor {actor_id}: key revoked")


outbox_app = typer.Typer(help="The outbox: outgoing messages, dead letters, reprocessing.")
app.add_typer(outbox_app, name="outbox")
from interop.national.cli import addressbook_app, plans_app  # noqa: E402

app.add_typer(addressbook_app, name="addressbook")
app.add_typer(plans_app, name="plans")


def _db_engine() -> Engine:
    """The configured database, as it is (operator commands never migrate it)."""
    from interop.store.db import get_engine

    return get_engine(get_settings().database_url)


def _stdout() -> Console:
    """Tables on stdout: as wide as the terminal; when piped, ``COLUMNS`` wide (240 unless
    set), so ids are never folded."""
    import os
    import sys

    if sys.stdout.isatty():
        return Console(highlight=False)
    return Console(width=int(os.environ.get("COLUMNS") or 240), highlight=False)


def _iso(us: int | None) -> str:
    from interop.fhir.dates import from_micros

    return from_micros(us).isoformat(timespec="seconds") if us is not None else ""


def _outbox_rows(
    status: str | None, destination: str | None, patient: str | None, limit: int
) -> list[Any]:
    from sqlalchemy import select

    from interop.identifiers import person_id_system
    from interop.patients import patient_by_identifier
    from interop.store.schema import outbox_table as o

    stmt = select(o).order_by(o.c.seq.desc()).limit(max(1, limit))
    if status:
        stmt = stmt.where(o.c.status.in_([s.strip() for s in status.split(",") if s.strip()]))
    if destination:
        stmt = stmt.where(o.c.destination == destination)
    with _db_engine().connect() as conn:
        if patient:
            if patient.startswith("Patient/"):
                pid: str | None = patient.split("/", 1)[1]
            else:
                system = person_id_system(patient)
                if system is None:
                    _fail(f"{patient!r} is not a valid fødselsnummer/D-nummer or Patient/id", 2)
                assert system is not None
                pid = patient_by_identifier(conn, system, patient)
                if pid is None:
                    return []
            stmt = stmt.where(o.c.patient_id == pid)
        return list(conn.execute(stmt).all())


def _national_ids(patient_ids: set[str]) -> dict[str, str]:
    """Patient id → fødselsnummer/D-nummer, for the operator's tables."""
    from sqlalchemy import select

    from interop.store.schema import token_table as t

    if not patient_ids:
        return {}
    with _db_engine().connect() as conn:
        rows = conn.execute(
            select(t.c.res_id, t.c.code).where(
                t.c.res_type == "Patient",
                t.c.param == "identifier",
                t.c.system.in_(("urn:oid:2.16.578.1.12.4.1.4.1", "urn:oid:2.16.578.1.12.4.1.4.2")),
                t.c.res_id.in_(sorted(patient_ids)),
            )
        ).all()
    return {rid: code for rid, code in rows}


def _endpoint_names(destinations: set[str]) -> dict[str, str]:
    """``Endpoint/<id>`` → the Endpoint's name (``Elvebakken fastlegekontor (filmottak)``), for
    the operator's tables; a destination that is not a stored, named Endpoint is left out."""
    import orjson
    from sqlalchemy import select

    from interop.store.schema import resource_table as r

    ids = sorted(d.split("/", 1)[1] for d in destinations if d.startswith("Endpoint/"))
    if not ids:
        return {}
    with _db_engine().connect() as conn:
        rows = conn.execute(
            select(r.c.res_id, r.c.content).where(
                r.c.res_type == "Endpoint", r.c.res_id.in_(ids), r.c.deleted.is_(False)
            )
        ).all()
    names = {rid: orjson.loads(content).get("name") for rid, content in rows}
    return {f"Endpoint/{rid}": str(name) for rid, name in names.items() if name}


def _print_outbox(rows: list[Any], as_json: bool) -> None:
    if as_json:
        import orjson

        from interop.api.messages import message_json

        print(orjson.dumps([message_json(r) for r in rows], option=orjson.OPT_INDENT_2).decode())
        return
    from zoneinfo import ZoneInfo

    from rich.table import Table

    from interop.fhir.dates import from_micros

    zone = ZoneInfo(get_settings().timezone)
    fnr = _national_ids({r.patient_id for r in rows if r.patient_id})
    names = _endpoint_names({r.destination for r in rows if r.destination})
    # fits 120 columns: the full id (for show/reprocess/cancel), what it is about (the event,
    # the patient's whole number), how it went and when, and where it goes — only the last
    # column gives way (the receiver's name, else the destination); the message id and the
    # last error are in `outbox show`
    lines = []
    for r in rows:
        status = r.status if not r.attempts else f"{r.status} ×{r.attempts}"
        created = from_micros(r.created).astimezone(zone).strftime("%d.%m %H:%M")
        patient = fnr.get(r.patient_id, r.patient_id or "")
        to = names.get(r.destination, r.destination or "")
        lines.append((r.id, r.event[:18], patient, status, created, to))
    table = Table(show_lines=False, box=None, pad_edge=False, collapse_padding=True)
    for i, name in enumerate(("id", "event", "patient", "status", "created")):
        table.add_column(
            name, no_wrap=True, min_width=max([len(name), *(len(x[i]) for x in lines)])
        )
    table.add_column("to", no_wrap=True, overflow="ellipsis")
    for line in lines:
        table.add_row(*line)
    _stdout().print(table)
    console.print(f"{len(rows)} message(s)")


@outbox_app.command("list")
def outbox_list(
    status: Annotated[
        str | None, typer.Option(help="only these statuses (comma-separated), e.g. queued,dead")
    ] = None,
    destination: Annotated[str | None, typer.Option(help="only this destination")] = None,
    patient: Annotated[
        str | None, typer.Option(help="only this patient: fødselsnummer/D-nummer or Patient/id")
    ] = None,
    limit: Annotated[int, typer.Option(help="at most this many, newest first")] = 100,
    as_json: Annotated[bool, typer.Option("--json", help="JSON as the messages API")] = False,
) -> None:
    """Outgoing messages, newest first."""
    _print_outbox(_outbox_rows(status, destination, patient, limit), as_json)


@outbox_app.command("dead")
def outbox_dead(
    destination: Annotated[str | None, typer.Option(help="only this destination")] = None,
    patient: Annotated[
        str | None, typer.Option(help="only this patient: fødselsnummer/D-nummer or Patient/id")
    ] = None,
    limit: Annotated[int, typer.Option(help="at most this many, newest first")] = 100,
    as_json: Annotated[bool, typer.Option("--json", help="JSON as the messages API")] = False,
) -> None:
    """Dead letters: messages the worker gave up on (reprocess them when the cause is fixed)."""
    _print_outbox(_outbox_rows("dead", destination, patient, limit), as_json)


@outbox_app.command("show")
def outbox_show(
    row_id: Annotated[str, typer.Argument(metavar="ID", help="outbox row id")],
    payload_only: Annotated[
        bool, typer.Option("--payload-only", help="only the payload, byte for byte")
    ] = False,
) -> None:
    """A message's details, then its payload (the XML or JSON as sent)."""
    import sys

    from sqlalchemy import select

    from interop.api.messages import message_json
    from interop.store.schema import outbox_table

    with _db_engine().connect() as conn:
        row = conn.execute(select(outbox_table).where(outbox_table.c.id == row_id)).first()
    if row is None:
        _fail(f"message {row_id} is not known")
    assert row is not None
    payload = bytes(row.payload)
    if payload_only:
        sys.stdout.buffer.write(payload)
        sys.stdout.flush()
        return
    for key, value in message_json(row).items():
        if value not in (None, [], ""):
            print(f"{key + ':':<16}{value}")
    print(f"{'contentType:':<16}{row.content_type}")
    print(f"{'expectsAppRec:':<16}{str(bool(row.expects_apprec)).lower()}")
    print()
    text = payload.decode("utf-8", errors="replace")
    print(text if text.endswith("\n") else text + "\n", end="")


@outbox_app.command("reprocess")
def outbox_reprocess(
    row_id: Annotated[str, typer.Argument(metavar="ID", help="outbox row id to send again")],
    destination: Annotated[
        str | None, typer.Option(help="another destination (Endpoint/… reference)")
    ] = None,
    transport: Annotated[
        str | None, typer.Option(help="its transport: fhir-rest, http, file-drop, edi2")
    ] = None,
    address: Annotated[str | None, typer.Option(help="its address (URL or file:///folder)")] = None,
) -> None:
    """Send a message again as a new message (new MsgId) linked to the original; prints its id."""
    from interop.routing.outbox import Outbox
    from interop.routing.reprocess_guard import CannotReprocess

    dest = {
        k: v
        for k, v in (("destination", destination), ("transport", transport), ("address", address))
        if v
    }
    try:
        new = Outbox(_db_engine()).reprocess(row_id, destination=dest or None)
    except KeyError:
        _fail(f"message {row_id} is not known")
        return
    except CannotReprocess as exc:
        _fail(str(exc))
        return
    print(new)
    console.print(f"queued {new} (reprocess of {row_id})")


@outbox_app.command("cancel")
def outbox_cancel(
    row_id: Annotated[
        str, typer.Argument(metavar="ID", help="outbox row id of a sent PLO message")
    ],
) -> None:
    """Send a cancellation (PLO Forsendelsesstatus C) of a message; prints the new id."""
    from interop.messaging.cancel import CannotCancel, cancel_message
    from interop.services import build_services

    try:
        new = cancel_message(build_services(get_settings(), migrate=False), row_id)
    except KeyError:
        _fail(f"message {row_id} is not known")
        return
    except CannotCancel as exc:
        _fail(str(exc))
        return
    print(new)
    console.print(f"queued {new} (cancels {row_id})")


indicators_app = typer.Typer(help="Management indicators (styringsinformasjon).")
app.add_typer(indicators_app, name="indicators")


@indicators_app.command("export")
def indicators_export(
    organization: Annotated[str, typer.Option(help="org.nr of the organisation")],
    period: Annotated[str, typer.Option(help="inclusive dates: 2026-01-01/2026-03-31")],
    fmt: Annotated[str, typer.Option("--format", help="json, csv or fhir (MeasureReport)")] = (
        "json"
    ),
    out: Annotated[Path | None, typer.Option(help="write to this file instead of stdout")] = None,
) -> None:
    """The indicators the API serves at /api/v1/indicators, as JSON, CSV or a MeasureReport."""
    import orjson

    from interop.fhir.outcome import FhirError
    from interop.identifiers import validate_orgnr
    from interop.indicators import compute, parse_period, to_csv, to_measure_report

    if fmt not in ("json", "csv", "fhir"):
        _fail(f"format {fmt!r}: use json, csv or fhir", 2)
    if not validate_orgnr(organization):
        _fail(f"organization {organization!r} is not a valid org.nr", 2)
    settings = get_settings()
    try:
        start, end = parse_period(period)
        with _db_engine().connect() as conn:
            ind = compute(
                conn,
                organization,
                start,
                end,
                zone_name=settings.timezone,
                suppress_below=settings.suppress_below,
            )
    except FhirError as exc:
        _fail(exc.message, 2 if exc.status == 400 else 1)
        return
    if fmt == "csv":
        data = to_csv(ind).encode()
    else:
        doc = to_measure_report(ind) if fmt == "fhir" else ind.to_json()
        data = orjson.dumps(doc, option=orjson.OPT_INDENT_2) + b"\n"
    if out is None:
        import sys

        sys.stdout.buffer.write(data)
        sys.stdout.flush()
    else:
        out.write_bytes(data)
        console.print(f"wrote {out}")


@app.command()
def prune(
    older_than_days: Annotated[
        int | None,
        typer.Option(
            "--older-than-days",
            min=0,
            help="keep this many days (default: INTEROP_OUTBOX_RETENTION_DAYS, 365)",
        ),
    ] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="count only, delete nothing")] = False,
) -> None:
    """Retention: delete old delivered messages and processed inbound messages.

    Outbox messages are deleted only in a final state (transport-acked with no AppRec expected,
    apprec-ok, apprec-rejected); queued, sending, sent, dead, no-apprec and messages still
    waiting for their AppRec are always kept. Inbound messages only when processed."""
    from datetime import timedelta

    from interop.routing.retention import prune as prune_rows

    days = older_than_days if older_than_days is not None else get_settings().outbox_retention_days
    counts = prune_rows(_db_engine(), timedelta(days=days), dry_run=dry_run)
    verb = "would delete" if dry_run else "deleted"
    print(", ".join(f"{table}: {n}" for table, n in counts.items()))
    console.print(f"{verb} rows older than {days} day(s)")


@app.command("check-missing")
def check_missing_cmd() -> None:
    """Raise Tasks where a plan's scheduled measurements are overdue (idempotent)."""
    from interop.care.missing import check_missing
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
    from interop.observability import configure_logging

    configure_logging(json_logs=get_settings().log_json)
    app()


if __name__ == "__main__":
    main()
