"""``interop addressbook …``: the address book from Adresseregisteret (and GPs from FLR)."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.console import Console

addressbook_app = typer.Typer(help="The address book: kept in step with Adresseregisteret.")
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
    for line in report.errors:
        console.print(f"[yellow]warning:[/yellow] {line}")
    console.print(report.summary())
    if report.errors:
        raise typer.Exit(1)
