"""EDI 2.0 as outbox transports (*Guaranteed Delivery*): ``edi2`` posts a business document,
``edi2-apprec`` posts an AppRec for a message we received through EDI 2.0.

The HelseID tenant follows from the sending organisation: the sender HER-ids in the MsgHead, or
the HER-id the AppRec is sent for. No tenant for the sender is a configuration fault: the message
is dead-lettered with that reason (reprocess it once the tenants file names the HER-id). Network
faults, 5xx, 429 and a refused token are retried with backoff; a 4xx from the Meldingstjener, a
v3 423 (HER-id locked to another client) and a message over the 35 MB limit dead-letter.
"""

from __future__ import annotations

import logging
import re
import threading
from typing import Any

import httpx
import orjson

from interop.national.cppa import CppaClient, msghead_type
from interop.national.edi2 import ApiVersion, Edi2Client, Edi2Error
from interop.national.helseid import HelseIdClients, HelseIdError
from interop.routing.outbox import OutboxMessage
from interop.routing.reprocess_guard import msghead_her_ids as named_her_ids
from interop.routing.transports import PermanentDeliveryError, TransientDeliveryError

log = logging.getLogger("interop.national")

CPPA_CHECKED = ("HELSEOPPLYSNINGER_", "DIALOG_", "PLO")
"""MsgHead types (8279) checked against CPPA before sending: PLO and Dialogmelding."""

_APPREC_ADDRESS = re.compile(r"^(?P<base>.+)/Messages/(?P<id>[^/]+)/apprec/(?P<her>\d+)$")


def msghead_her_ids(document: bytes, party: str = "Sender") -> list[str]:
    """HER-ids of the MsgHead's sender (or receiver), outermost first."""
    try:
        return named_her_ids(document, party)
    except ValueError as exc:
        raise PermanentDeliveryError(str(exc)) from None


class Edi2Clients:
    def __init__(
        self,
        helseid: HelseIdClients | None,
        http: httpx.Client,
        *,
        api_version: ApiVersion,
        source_system: str,
        max_post_bytes: int,
    ) -> None:
        self.helseid = helseid
        self.http = http
        self.api_version = api_version
        self.source_system = source_system
        self.max_post_bytes = max_post_bytes
        self._cache: dict[tuple[str, str], Edi2Client] = {}
        self._lock = threading.Lock()

    def sender_auth(self, her_ids: list[str], api: str) -> tuple[httpx.Auth | None, str]:
        """The sending organisation's tenant's HelseID auth for ``api``, and the tenant's
        name (None and "" without HelseID); no tenant for the sender dead-letters."""
        if self.helseid is None:
            return None, ""
        client = self.helseid.for_her_ids(her_ids)
        if client is None:
            raise PermanentDeliveryError(
                f"no HelseID tenant sends for HER-id {', '.join(her_ids) or '(none)'}: "
                "add it to the tenants file (her_ids) and reprocess"
            )
        return client.auth(api), client.tenant.name

    def for_sender(self, base: str, her_ids: list[str]) -> Edi2Client:
        auth, tenant = self.sender_auth(her_ids, "edi2")
        key = (base, tenant)
        with self._lock:
            edi = self._cache.get(key)
            if edi is None:
                edi = self._cache[key] = Edi2Client(
                    base,
                    auth=auth,
                    http=self.http,
                    api_version=self.api_version,
                    source_system=self.source_system,
                    max_post_bytes=self.max_post_bytes,
                )
            return edi


def _classify(exc: Edi2Error | HelseIdError) -> Exception:
    if isinstance(exc, HelseIdError):
        return TransientDeliveryError(str(exc))
    if exc.transient:
        return TransientDeliveryError(str(exc))
    return PermanentDeliveryError(str(exc))


class Edi2Transport:
    """Before a PLO or Dialogmelding goes, CPPA (when configured) is asked whether the receiver
    takes that message type: "no" dead-letters it with the reason unless
    ``INTEROP_CPPA_FALLBACK`` is ``send``; "unknown" sends."""

    name = "edi2"

    def __init__(
        self, clients: Edi2Clients, cppa: CppaClient | None = None, fallback: str = "dead-letter"
    ) -> None:
        self.clients = clients
        self.cppa = cppa
        self.fallback = fallback

    def _check_cppa(self, document: bytes, sender: list[str], receivers: list[str]) -> None:
        """CPPA is asked with the sending organisation's tenant's HelseID client."""
        if self.cppa is None or not receivers:
            return
        kind = msghead_type(document)
        if kind is None or not kind.startswith(CPPA_CHECKED):
            return
        auth, _ = self.clients.sender_auth(sender, "cppa")
        if self.cppa.can_receive(receivers[-1], kind, auth=auth) is False:
            why = f"HER-id {receivers[-1]} cannot receive {kind} according to its CPPA profile"
            if self.fallback == "send":
                log.warning("%s; sending anyway (INTEROP_CPPA_FALLBACK=send)", why)
                return
            raise PermanentDeliveryError(why)

    def deliver(self, message: OutboxMessage) -> bool:
        sender = msghead_her_ids(message.payload, "Sender")
        edi = self.clients.for_sender(message.address, sender)
        receivers = msghead_her_ids(message.payload, "Receiver")
        self._check_cppa(message.payload, sender, receivers)
        try:
            edi.send(
                message.payload,
                sender_her_id=int(sender[-1]) if sender and sender[-1].isdigit() else None,
                receiver_her_ids=[int(receivers[-1])]
                if receivers and receivers[-1].isdigit()
                else [],
            )
        except (Edi2Error, HelseIdError) as exc:
            raise _classify(exc) from exc
        return True


class Edi2AppRecTransport:
    name = "edi2-apprec"

    def __init__(self, clients: Edi2Clients) -> None:
        self.clients = clients

    def deliver(self, message: OutboxMessage) -> bool:
        match = _APPREC_ADDRESS.match(message.address)
        if match is None:
            raise PermanentDeliveryError(
                f"not an EDI 2.0 AppRec address ({{base}}/Messages/{{id}}/apprec/{{herId}}): "
                f"{message.address}"
            )
        try:
            body: dict[str, Any] = orjson.loads(message.payload)
        except orjson.JSONDecodeError as exc:
            raise PermanentDeliveryError(f"AppRec payload is not JSON: {exc}") from None
        edi = self.clients.for_sender(match["base"], [match["her"]])
        try:
            edi.post_apprec(
                match["id"],
                int(match["her"]),
                str(body.get("appRecStatus", "")),
                list(body.get("appRecErrorList") or []),
            )
        except ValueError as exc:
            raise PermanentDeliveryError(str(exc)) from None
        except (Edi2Error, HelseIdError) as exc:
            raise _classify(exc) from exc
        return True
