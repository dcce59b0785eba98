"""``interop addressbook …``: the address book from Adresseregisteret (and GPs from FLR)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any

import typer
from rich.console import Console

addressbook_app = typer.Typer(help="The address book: kept in step with Adresseregisteret.")
plans_app = typer.Typer(help="Egenbehandlingsplaner and NHN Pasientens planer.")
console = Console()


def run_sync(
    services: object, her_ids: list[str] | None = None, patients: bool = True
) -> dict[str, int] | None:
    """One sync (the worker's periodic job and the command); None when AR is not configured."""
    from interop.national.wiring import address_book_sync

    sync = address_book_sync(services)
    if sync is None:
        return None
    return sync.run(her_ids, patients=patients).summary()


def run_first_contact(services: object) -> dict[str, int] | None:
    """The worker's frequent job: patients without a GP get theirs from FLR (and AR)."""
    from interop.national.wiring import address_book_sync

    sync = address_book_sync(services)
    if sync is None or sync.flr is None:
        return None
    return sync.first_contact().summary()


def _finish(errors: list[str], summary: object) -> None:
    """A job's warnings and summary; exit 1 when there were errors."""
    for line in errors:
        console.print(f"[yellow]warning:[/yellow] {line}")
    console.print(summary)
    if errors:
        raise typer.Exit(1)


@addressbook_app.command("sync")
def sync(
    her_id: Annotated[
        list[str] | None, typer.Option(help="also look up this HER-id (repeat)")
    ] = None,
    patients: Annotated[
        bool, typer.Option(help="ask Fastlegeregisteret for every patient's GP first")
    ] = True,
) -> None:
    """Update Organization/PractitionerRole/Endpoint from Adresseregisteret; patients' GPs from
    Fastlegeregisteret (when configured); HER-ids gone from AR get their Endpoint switched off."""
    from interop.config import get_settings
    from interop.national.ar import ArError
    from interop.national.flr import FlrError
    from interop.national.helseid import HelseIdError
    from interop.national.tenants import TenantConfigError
    from interop.services import build_services

    svc = build_services(get_settings())
    try:
        from interop.national.wiring import address_book_sync

        job = address_book_sync(svc)
        if job is None:
            console.print("[red]error:[/red] INTEROP_AR_BASE_URL is not set")
            raise typer.Exit(2)
        report = job.run(her_id, patients=patients)
    except (TenantConfigError, ArError, FlrError, HelseIdError) as exc:
        console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(1) from None
    _finish(report.errors, report.summary())


def run_plans_poll(services: Any) -> dict[str, int] | None:
    """One poll of NHN Pasientens planer (the worker's job); None when not configured."""
    from interop.national.plans_poll import poll_nhn_plans
    from interop.national.wiring import plans_poll_client

    api = plans_poll_client(services)
    if api is None:
        return None
    return poll_nhn_plans(services, api).summary()


def national_jobs(services: Any) -> list[tuple[str, float, Callable[[], object]]]:
    """The worker's periodic jobs with the national services that are configured: the
    address book with AR (and GPs from FLR), and the poll of NHN Pasientens planer."""
    settings = services.settings
    jobs: list[tuple[str, float, Callable[[], object]]] = []
    if settings.ar_base_url and settings.addressbook_sync_seconds > 0:
        jobs.append(
            ("addressbook-sync", settings.addressbook_sync_seconds, lambda: run_sync(services))
        )
        jobs.append(("gp-first-contact", 60.0, lambda: run_first_contact(services)))
    if settings.nhn_plans_poll_seconds > 0:  # a no-op while nothing is exported to NHN
        jobs.append(
            ("nhn-plans-poll", settings.nhn_plans_poll_seconds, lambda: run_plans_poll(services))
        )
    return jobs


@plans_app.command("poll-nhn")
def poll_nhn() -> None:
    """Read the patients' plans in NHN Pasientens planer and make changes others made there
    visible (a conflict on our plan and a Task for the care team); our plan stays as the GP
    approved it."""
    from interop.config import get_settings
    from interop.national.plans_api import PlansApiError
    from interop.national.plans_poll import poll_nhn_plans
    from interop.national.tenants import TenantConfigError
    from interop.national.wiring import plans_poll_client
    from interop.services import build_services

    svc = build_services(get_settings())
    try:
        api = plans_poll_client(svc)
        if api is None:
            console.print(
                "[red]error:[/red] INTEROP_NHN_PLANS_BASE_URL is not set and no Endpoint "
                "exports plans to NHN (connectionType nhn-plans)"
            )
            raise typer.Exit(2)
        report = poll_nhn_plans(svc, api)
    except (PlansApiError, TenantConfigError) as exc:
        console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(1) from None
    _finish(report.errors, report.summary())


@plans_app.command("import-nhn")
def import_nhn(
    national_id: Annotated[str, typer.Argument(help="the patient's fødselsnummer or D-nummer")],
    nhn_id: Annotated[
        str | None, typer.Option(help="the NHN plan's id, when the patient has several")
    ] = None,
) -> None:
    """Fetch the patient's plan from NHN Pasientens planer and save it as a draft plan (zones
    as text, judging nothing) for a nurse to make computable."""
    from interop.access.actor import cli_actor
    from interop.access.policy import Action
    from interop.config import get_settings
    from interop.fhir.outcome import FhirError
    from interop.national.plans_api import PlansApiError
    from interop.national.plans_import import import_nhn_plan
    from interop.national.tenants import TenantConfigError
    from interop.national.wiring import plans_client
    from interop.services import build_services

    svc = build_services(get_settings())
    actor = cli_actor()
    try:
        api = plans_client(svc.settings)
        if api is None:
            console.print("[red]error:[/red] INTEROP_NHN_PLANS_BASE_URL is not set")
            raise typer.Exit(2)
        svc.policy.require_role(actor, Action.PLAN)
        result = import_nhn_plan(svc, api, national_id, actor, nhn_id=nhn_id)
    except (PlansApiError, TenantConfigError) as exc:
        console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(1) from None
    except FhirError as exc:
        console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(1) from None
    cp = result["carePlan"]
    console.print(
        f"draft CarePlan/{cp['id']} made from the NHN plan (judges nothing until approved)"
    )


@plans_app.command("status-nhn")
def status_nhn(
    national_id: Annotated[str, typer.Argument(help="the patient's fødselsnummer or D-nummer")],
) -> None:
    """Ask NHN's older careplan service (HIT careplan) whether one of our patients has an
    active care plan there and when it last changed (reads nothing else, changes nothing)."""
    from interop.access.actor import cli_actor
    from interop.access.audit.accesses import PatientNotFound, find_patient
    from interop.access.policy import Action
    from interop.config import get_settings
    from interop.national.careplan_status import CareplanStatusError
    from interop.national.tenants import TenantConfigError
    from interop.national.wiring import careplan_status_client
    from interop.services import build_services

    svc = build_services(get_settings())
    svc.policy.require_role(cli_actor(), Action.READ)
    try:
        with svc.store.reader() as conn:
            find_patient(conn, national_id)  # only our patients are asked about
        api = careplan_status_client(svc.settings)
        if api is None:
            console.print("[red]error:[/red] INTEROP_NHN_CAREPLAN_BASE_URL is not set")
            raise typer.Exit(2)
        status = api.status(national_id)
    except (CareplanStatusError, TenantConfigError, PatientNotFound) as exc:
        console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(1) from None
    console.print(status.text(svc.settings.timezone))
