"""Build the national clients from the settings (one place, for the CLI and the worker)."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import httpx

from interop.config import Settings, get_settings
from interop.national.addressbook_sync import AddressBookSync
from interop.national.ar import ArClient
from interop.national.careplan_status import (
    CareplanStatusClient,
    CareplanStatusError,
    careplan_tenant,
    variant,
)
from interop.national.cppa import CppaClient
from interop.national.edi2_transport import Edi2AppRecTransport, Edi2Clients, Edi2Transport
from interop.national.flr import FlrClient
from interop.national.helseid import HelseIdClients
from interop.national.journal_transport import JFT, VKP, JournalTransport
from interop.national.plans_api import PlansApiClient, plans_auth
from interop.national.plans_transport import PlansTransport
from interop.national.pmd_transport import PmdTransport
from interop.national.tenants import TenantConfigError, load_tenants
from interop.routing.transports import (
    FhirRestTransport,
    FileDropTransport,
    HttpTransport,
    Transport,
)
from interop.store.repository import FhirStore

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
    settings: Any,
    *,
    http: httpx.Client | None = None,
    helseid: HelseIdClients | None = None,
    base_url: str | None = None,
) -> PlansApiClient | None:
    """Pasientens planer for imports (``INTEROP_NHN_PLANS_BASE_URL``, or ``base_url``); None
    when neither is set, :class:`~interop.national.plans_api.PlansApiError` when HelseID is
    asked for but missing."""
    base_url = settings.nhn_plans_base_url or base_url
    if not base_url:
        return None
    http = http or shared_http()
    if helseid is None and settings.nhn_plans_helseid:
        helseid = helseid_clients(settings, http)
    auth = plans_auth(
        helseid, use_helseid=settings.nhn_plans_helseid, tenant=settings.nhn_plans_tenant
    )
    return PlansApiClient(base_url, http=http, auth=auth, path=settings.nhn_plans_path)


def careplan_status_client(
    settings: Any, *, http: httpx.Client | None = None, helseid: HelseIdClients | None = None
) -> CareplanStatusClient | None:
    """NHN's older careplan service's status endpoint (``INTEROP_NHN_CAREPLAN_BASE_URL``); None
    when unset, :class:`~interop.national.careplan_status.CareplanStatusError` when it cannot be
    called (no HelseID, an unknown variant or tenant)."""
    if not settings.nhn_careplan_base_url:
        return None
    chosen = variant(settings.nhn_careplan_variant)
    http = http or shared_http()
    helseid = helseid or helseid_clients(settings, http)
    if helseid is None:
        raise CareplanStatusError(
            "the careplan service needs HelseID: set INTEROP_HELSEID_TENANTS_FILE"
        )
    tenant = careplan_tenant(helseid, settings.nhn_careplan_tenant)
    return CareplanStatusClient(
        settings.nhn_careplan_base_url,
        http=http,
        auth=helseid.for_tenant(tenant).auth(chosen.api),
        variant=chosen,
        source_system=settings.edi2_source_system,
        test_environment=settings.environment == "test",
    )


def plans_poll_client(services: Any) -> PlansApiClient | None:
    """Pasientens planer for the poll: ``INTEROP_NHN_PLANS_BASE_URL``, else the address of the
    one active Endpoint the plans are exported to (``connectionType`` ``nhn-plans``), so a
    service that exports also hears of changes made there. None when there is neither;
    :class:`~interop.national.plans_api.PlansApiError` when several Endpoints leave it open."""
    from interop.messaging.addressbook import endpoints_of_type
    from interop.national.plans_api import PlansApiError

    settings = services.settings
    if settings.nhn_plans_base_url:
        return plans_client(settings)
    with services.store.reader() as conn:
        addresses = sorted({a for _ref, a in endpoints_of_type(services.store, conn, "nhn-plans")})
    if len(addresses) > 1:
        raise PlansApiError(
            f"{len(addresses)} nhn-plans Endpoints: set INTEROP_NHN_PLANS_BASE_URL to the one "
            "to poll"
        )
    return plans_client(settings, base_url=addresses[0]) if addresses else None


def default_transports(
    client: httpx.Client | None = None,
    settings: Settings | None = None,
    store: FhirStore | None = None,
) -> dict[str, Transport]:
    """Every transport; EDI 2.0 (``edi2``, ``edi2-apprec``) with HelseID and DPoP per the
    settings (see :mod:`interop.national.edi2_transport`); ``store`` for the transports that
    record what the receiver answered (``nhn-plans``)."""
    shared = client or httpx.Client(timeout=30.0)
    transports: dict[str, Transport] = {
        "http": HttpTransport(shared),
        "fhir-rest": FhirRestTransport(shared),
        "file-drop": FileDropTransport(),
    }
    transports.update(national_transports(settings or get_settings(), shared, store=store))
    return transports


def national_transports(
    settings: Any,
    http: httpx.Client | None = None,
    helseid: HelseIdClients | None = None,
    *,
    store: Any = None,
) -> dict[str, Any]:
    """The transports to NHN (EDI 2.0's two, PMD, VKP, JFT, Pasientens planer), with HelseID when ``INTEROP_HELSEID_TENANTS_FILE``
    is set."""
    shared = http or httpx.Client(timeout=30.0)
    if helseid is None:
        helseid = helseid_clients(settings)
    clients = Edi2Clients(
        helseid,
        shared,
        api_version=settings.edi2_api_version,
        source_system=settings.edi2_source_system,
        max_post_bytes=settings.edi2_max_post_bytes,
    )
    cppa = None
    if settings.cppa_base_url and helseid is not None:
        # asked with the sender's tenant's client (Edi2Transport)
        cppa = CppaClient(settings.cppa_base_url, http=shared)
    return {
        "edi2": Edi2Transport(clients, cppa, settings.cppa_fallback),
        "edi2-apprec": Edi2AppRecTransport(clients),
        "pmd": PmdTransport(helseid, shared, tenant=settings.pmd_tenant),
        "jft": JournalTransport(
            JFT, helseid, shared, tenant=settings.jft_tenant, max_bytes=settings.jft_max_bytes
        ),
        "vkp": JournalTransport(
            VKP, helseid, shared, tenant=settings.vkp_tenant, max_bytes=settings.vkp_max_bytes
        ),
        "nhn-plans": PlansTransport(
            store,
            helseid,
            shared,
            use_helseid=settings.nhn_plans_helseid,
            tenant=settings.nhn_plans_tenant,
            path=settings.nhn_plans_path,
        ),
    }
