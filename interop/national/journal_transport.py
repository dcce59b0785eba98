"""Journaling the VKP DHO document Bundle into the municipal EPJ, as outbox transports — which
one is the Endpoint's ``connectionType`` (a setting per receiver):

* ``vkp`` — the Velferdsteknologisk knutepunkt (classic): ``POST {address}/bundle`` with a
  HelseID **Bearer** token (API ``vkp``, scope ``nhn:vkp/api/user/bundle.write``; VKP's pages:
  not DPoP). No size limit is published (``INTEROP_VKP_MAX_BYTES``, unset = none).
* ``jft`` — Journalføringstjenesten (2026, VKP's successor): ``POST {address}/v1/Bundle`` with
  HelseID + DPoP (API ``jft``, scope ``nhn:jft/api``); 202 Accepted. A Bundle over
  ``INTEROP_JFT_MAX_BYTES`` (about 1 MB per request) is dead-lettered, never posted.

Any 2xx is delivered. The tenant is the one whose organisation number is the Bundle's author
organisation, else the service's tenant setting, else the only tenant.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import httpx
import orjson

from interop.identifiers import ORGNR_OID
from interop.national.helseid import HelseIdClients, HelseIdError
from interop.routing.outbox import OutboxMessage
from interop.routing.transports import (
    PermanentDeliveryError,
    TransientDeliveryError,
    _classify_http,
)


def _org_numbers(bundle: dict[str, Any]) -> list[str]:
    out = []
    for e in bundle.get("entry") or []:
        res = e.get("resource") or {}
        if res.get("resourceType") == "Organization":
            out += [
                str(i["value"]) for i in res.get("identifier", []) if i.get("system") == ORGNR_OID
            ]
    return out


@dataclass(frozen=True)
class JournalService:
    name: str
    """the ``connectionType`` and the HelseID API"""
    label: str
    path: str
    tenant_setting: str


JFT = JournalService("jft", "JFT", "/v1/Bundle", "INTEROP_JFT_TENANT")
VKP = JournalService("vkp", "VKP", "/bundle", "INTEROP_VKP_TENANT")


class JournalTransport:
    def __init__(
        self,
        service: JournalService,
        helseid: HelseIdClients | None,
        http: httpx.Client,
        *,
        tenant: str | None = None,
        max_bytes: int | None = None,
    ) -> None:
        self.service = service
        self.name = service.name
        self.helseid = helseid
        self.http = http
        self.tenant = tenant
        self.max_bytes = max_bytes

    def deliver(self, message: OutboxMessage) -> bool:
        label = self.service.label
        if self.max_bytes is not None and len(message.payload) > self.max_bytes:
            raise PermanentDeliveryError(
                f"the journal Bundle is {len(message.payload)} bytes, over {label}'s limit of "
                f"{self.max_bytes} bytes per request"
            )
        try:
            bundle = orjson.loads(message.payload)
        except orjson.JSONDecodeError as exc:
            raise PermanentDeliveryError(f"payload is not JSON: {exc}") from None
        if self.helseid is None:
            raise PermanentDeliveryError(f"{label} needs HelseID: set INTEROP_HELSEID_TENANTS_FILE")
        config = self.helseid.config
        tenant = next((t for o in _org_numbers(bundle) if (t := config.for_orgnr(o))), None)
        if tenant is None and self.tenant:
            tenant = next((t for t in config.tenants if t.name == self.tenant), None)
        tenant = tenant or (config.tenants[0] if len(config.tenants) == 1 else None)
        if tenant is None:
            raise PermanentDeliveryError(
                "no HelseID tenant for this journal Bundle: name the organisation number in the "
                f"tenants file or set {self.service.tenant_setting}"
            )
        url = message.address.rstrip("/") + self.service.path
        try:
            r = self.http.post(
                url,
                content=message.payload,
                headers={"Content-Type": "application/fhir+json"},
                auth=self.helseid.for_tenant(tenant).auth(self.service.name),
            )
        except HelseIdError as exc:
            raise TransientDeliveryError(str(exc)) from exc
        except httpx.HTTPError as exc:
            raise TransientDeliveryError(f"{url}: {type(exc).__name__}: {exc}") from exc
        return _classify_http(r, url)
