"""Build the national clients from the settings (one place, for the CLI and the worker)."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import httpx

from interop.national.addressbook_sync import AddressBookSync
from interop.national.ar import ArClient
from interop.national.flr import FlrClient
from interop.national.helseid import HelseIdClients
from interop.national.plans_api import PlansApiClient, plans_auth
from interop.national.tenants import TenantConfigError, load_tenants

_shared: dict[tuple[str, int], HelseIdClients] = {}
_shared_lock = threading.RLock()  # helseid_clients takes it, then shared_http again
_http: httpx.Client | None = None


def shared_http() -> httpx.Client:
    """One HTTP client (connection pool) for the national services in this process."""
    global _http
    with _shared_lock:
        if _http is None:
            _http = httpx.Client(timeout=30.0)
        return _http


def helseid_clients(settings: Any, http: httpx.Client | None = None) -> HelseIdClients | None:
    """The tenants' HelseID clients, shared in the process so their tokens are cached across
    polls and deliveries; read again when the tenants file changes."""
    path = settings.helseid_tenants_file
    if path is None:
        return None
    try:
        key = (str(path), Path(path).stat().st_mtime_ns)
    except OSError:
        key = (str(path), 0)
    with _shared_lock:
        clients = _shared.get(key)
        if clients is None:
            for old in [k for k in _shared if k[0] == key[0]]:
                del _shared[old]
            clients = _shared[key] = HelseIdClients(load_tenants(path), http or shared_http())
        return clients


def address_book_sync(
    services: Any, *, http: httpx.Client | None = None, helseid: HelseIdClients | None = None
) -> AddressBookSync | None:
    """None when AR is not configured; :class:`TenantConfigError` when it cannot be called."""
    settings = services.settings
    if not settings.ar_base_url:
        return None
    if not settings.edi2_base_url:
        raise TenantConfigError(
            "INTEROP_AR_BASE_URL is set but INTEROP_EDI2_BASE_URL is not: the address book's "
            "EDI 2.0 Endpoints need the Meldingstjener's address"
        )
    http = http or shared_http()
    helseid = helseid or helseid_clients(settings, http)
    if helseid is None:
        raise TenantConfigError("Adresseregisteret needs HelseID: set INTEROP_HELSEID_TENANTS_FILE")
    tenants = helseid.config.tenants
    tenant = next((t for t in tenants if t.name == settings.ar_tenant), None)
    if settings.ar_tenant and tenant is None:
        raise TenantConfigError(
            f"INTEROP_AR_TENANT {settings.ar_tenant!r} is not in the tenants file"
        )
    auth = helseid.for_tenant(tenant or tenants[0]).auth("ar")
    flr = None
    if settings.flr_url:
        if not settings.flr_username or settings.flr_password is None:
            raise TenantConfigError("INTEROP_FLR_URL needs INTEROP_FLR_USERNAME and _PASSWORD")
        flr = FlrClient(
            settings.flr_url,
            username=settings.flr_username,
            password=settings.flr_password.get_secret_value(),
            http=http,
        )
    return AddressBookSync(
        services,
        ArClient(settings.ar_base_url, auth=auth, http=http),
        edi2_address=settings.edi2_base_url,
        flr=flr,
    )


def plans_client(
    settings: Any, *, http: httpx.Client | None = None, helseid: HelseIdClients | None = None
) -> PlansApiClient | None:
    """Pasientens planer for imports (``INTEROP_NHN_PLANS_BASE_URL``); None when not set,
    :class:`~interop.national.plans_api.PlansApiError` when HelseID is asked for but missing."""
    if not settings.nhn_plans_base_url:
        return None
    http = http or shared_http()
    if helseid is None and settings.nhn_plans_helseid:
        helseid = helseid_clients(settings, http)
    auth = plans_auth(
        helseid, use_helseid=settings.nhn_plans_helseid, tenant=settings.nhn_plans_tenant
    )
    return PlansApiClient(
        settings.nhn_plans_base_url, http=http, auth=auth, path=settings.nhn_plans_path
    )
