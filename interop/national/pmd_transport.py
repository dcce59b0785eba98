"""Pasientens måledata (PMD 2.0) as an outbox transport (``connectionType`` ``pmd``): the
VkpObservation upload Bundle is POSTed to the Endpoint's address with HelseID + DPoP (API
``pmd`` in the tenants file); the ``batch-response`` is read entry by entry — a refused entry
dead-letters the upload with the reasons per entry, a server error on an entry retries it (the
entries are conditional creates, so those that went through create nothing new), every entry
answered 2xx is delivered. The Bundle type (``batch``/``collection``) is
``INTEROP_PMD_BUNDLE_TYPE``.

Each entry's answer is kept on the outbox row (``answers``: the message API, ``outbox show``):
the entry's ``fullUrl`` and Observation identifier, the status, ``accepted`` with PMD's
``location`` (and ``etag``, ``lastModified``) where the answer gives them, or ``refused`` /
``error`` with the reason. An answer is tied to its entry by ``PmdBundleResponseEntryIdExtension``
(the profile requires it), else by position (NHN's examples give none); an answer for an entry
not in the upload, or two for one entry, dead-letters the upload (which entry it means is not
known).

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
    Delivered,
    DeliveryError,
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


ENTRY_ID = "http://hl7.no/fhir/vkpobservation/StructureDefinition/PmdBundleResponseEntryIdExtension"
"""On each ``batch-response`` entry's ``response``: the ``fullUrl`` of the entry it answers."""


def _identifier(resource: dict[str, Any]) -> str | None:
    for i in resource.get("identifier") or []:
        if i.get("system") and i.get("value"):
            return f"{i['system']}|{i['value']}"
    return None


def entry_answers(bundle: dict[str, Any], body: Any, url: str) -> list[dict[str, Any]]:
    """PMD's answer per entry of the upload, in the upload's order."""
    sent = bundle.get("entry") or []
    order = {str(e.get("fullUrl")): i for i, e in enumerate(sent)}
    answered = (body.get("entry") if isinstance(body, dict) else None) or []
    answers: dict[int, dict[str, Any]] = {}
    for n, entry in enumerate(answered):
        response = (entry.get("response") if isinstance(entry, dict) else None) or {}
        named = next(
            (
                x.get("valueUri")
                for x in response.get("extension") or []
                if x.get("url") == ENTRY_ID
            ),
            None,
        )
        i = order.get(str(named)) if named is not None else n
        if i is None or i >= len(sent) or i in answers:
            raise PermanentDeliveryError(
                f"{url}: PMD's answer {n} is for {named or f'entry {n}'}, not one entry of this "
                "upload once: which entry it answers is not known; check the upload in PMD"
            )
        status = str(response.get("status", ""))
        code = status.split(" ", 1)[0]
        answer: dict[str, Any] = {
            "entry": sent[i].get("fullUrl"),
            "identifier": _identifier(sent[i].get("resource") or {}),
            "status": status,
            "outcome": "accepted"
            if code.startswith("2")
            else "error"
            if code.startswith("5") or code in ("408", "429")
            else "refused",
        }
        for key in ("location", "etag", "lastModified"):
            if response.get(key):
                answer[key] = str(response[key])
        issues = ((response.get("outcome") or {}).get("issue")) or []
        reason = "; ".join(
            str(x.get("diagnostics") or (x.get("details") or {}).get("text") or x.get("code"))
            for x in issues
            if isinstance(x, dict)
        )
        if reason:
            answer["reason"] = reason
        answers[i] = answer
    return [answers[i] for i in sorted(answers)]


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

    def deliver(self, message: OutboxMessage) -> Delivered:
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
        try:
            body = r.json()
        except ValueError as exc:
            raise TransientDeliveryError(f"{url}: the batch answer is not JSON") from exc
        answers = entry_answers(bundle, body, url)
        try:
            _check_batch_response(r, url)
        except DeliveryError as exc:
            exc.answers = answers
            raise
        sent = len(bundle.get("entry") or [])
        if len(answers) != sent:
            raise TransientDeliveryError(
                f"{url}: PMD answered {len(answers)} of {sent} entries; sent again "
                "(conditional creates)",
                answers=answers,
            )
        log.info("PMD took all %d entries of %s", sent, message.msg_id)
        return Delivered(acked, answers)
