"""Pasientens måledata (PMD 2.0) as an outbox transport (``connectionType`` ``pmd``): the
VkpObservation upload Bundle is POSTed to the Endpoint's address with HelseID + DPoP (API
``pmd`` in the tenants file); the ``batch-response`` is read entry by entry — a refused entry
dead-letters the upload with the reasons per entry, a server error on an entry retries it (the
entries are conditional creates, so those that went through create nothing new), every entry
answered 2xx is delivered. The Bundle type (``batch``/``collection``) is
``INTEROP_PMD_BUNDLE_TYPE``.

The tenant is the one whose organisation number is the upload's performer, else
``INTEROP_PMD_TENANT``, else the only tenant.
"""

from __future__ import annotations

import logging
from typing import Any

import httpx
import orjson

from interop.identifiers import ORGNR_OID
from interop.national.helseid import HelseIdClients, HelseIdError
from interop.routing.outbox import OutboxMessage
from interop.routing.transports import (
    PermanentDeliveryError,
    TransientDeliveryError,
    _check_batch_response,
    _classify_http,
)

log = logging.getLogger("interop.national")


def _performer_orgnrs(bundle: dict[str, Any]) -> list[str]:
    out = []
    for e in bundle.get("entry") or []:
        for p in (e.get("resource") or {}).get("performer") or []:
            ident = p.get("identifier") or {}
            if ident.get("system") == ORGNR_OID and ident.get("value"):
                out.append(str(ident["value"]))
    return out


class PmdTransport:
    name = "pmd"

    def __init__(
        self, helseid: HelseIdClients | None, http: httpx.Client, *, tenant: str | None = None
    ) -> None:
        self.helseid = helseid
        self.http = http
        self.tenant = tenant

    def _auth(self, bundle: dict[str, Any]) -> httpx.Auth:
        if self.helseid is None:
            raise PermanentDeliveryError(
                "PMD needs HelseID with DPoP: set INTEROP_HELSEID_TENANTS_FILE"
            )
        config = self.helseid.config
        tenant = next(
            (t for o in _performer_orgnrs(bundle) if (t := config.for_orgnr(o)) is not None), None
        )
        if tenant is None and self.tenant:
            tenant = next((t for t in config.tenants if t.name == self.tenant), None)
        tenant = tenant or (config.tenants[0] if len(config.tenants) == 1 else None)
        if tenant is None:
            raise PermanentDeliveryError(
                "no HelseID tenant for this PMD upload: name the organisation number in the "
                "tenants file or set INTEROP_PMD_TENANT"
            )
        return self.helseid.for_tenant(tenant).auth("pmd")

    def deliver(self, message: OutboxMessage) -> bool:
        try:
            bundle = orjson.loads(message.payload)
        except orjson.JSONDecodeError as exc:
            raise PermanentDeliveryError(f"payload is not JSON: {exc}") from None
        url = message.address
        headers = {"Content-Type": "application/fhir+json", "Accept": "application/fhir+json"}
        try:
            r = self.http.post(
                url, content=message.payload, headers=headers, auth=self._auth(bundle)
            )
        except HelseIdError as exc:
            raise TransientDeliveryError(str(exc)) from exc
        except httpx.HTTPError as exc:
            raise TransientDeliveryError(f"{url}: {type(exc).__name__}: {exc}") from exc
        acked = _classify_http(r, url)
        _check_batch_response(r, url)
        answered = len((r.json() or {}).get("entry") or [])
        sent = len(bundle.get("entry") or [])
        if answered != sent:
            raise TransientDeliveryError(
                f"{url}: PMD answered {answered} of {sent} entries; sent again (conditional creates)"
            )
        log.info("PMD took all %d entries of %s", sent, message.msg_id)
        return acked
