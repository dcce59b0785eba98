"""Transports: how an outbox message reaches its receiver.

Each transport either takes the message (returns whether the receiver confirmed it at the
transport level) or raises :class:`TransientDeliveryError` (try again later) or
:class:`PermanentDeliveryError` (dead-letter it now). Endpoint ``connectionType`` codes from
``https://dho-interop.no/fhir/CodeSystem/transport`` name them: ``fhir-rest``, ``file-drop``,
``http``, ``edi2`` (EDI 2.0, in :mod:`interop.national.edi2_transport`), ``pmd`` (Pasientens
måledata, :mod:`interop.national.pmd_transport`), ``vkp`` and ``jft`` (VKP journaling and
Journalføringstjenesten, :mod:`interop.national.journal_transport`), ``nhn-plans`` (Pasientens planer,
:mod:`interop.national.plans_transport`).
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import unquote, urlparse

import httpx
import orjson

from interop.routing.outbox import OutboxMessage

if TYPE_CHECKING:
    pass


class DeliveryError(Exception):
    def __init__(self, reason: str, *, answers: list[dict[str, Any]] | None = None) -> None:
        super().__init__(reason)
        self.answers = answers
        """The receiver's answer per entry, when it gave one (kept on the outbox row)."""


class TransientDeliveryError(DeliveryError):
    pass


class PermanentDeliveryError(DeliveryError):
    pass


@dataclass(frozen=True, slots=True)
class Delivered:
    """Taken, with the receiver's answer per entry (a PMD ``batch-response``): kept on the
    outbox row (``answers``) for operators."""

    acked: bool
    answers: list[dict[str, Any]]


class Transport(Protocol):
    name: str

    def deliver(self, message: OutboxMessage) -> bool | Delivered:
        """Deliver; True when the receiver confirmed receipt at the transport level
        (:class:`Delivered` when it answered per entry)."""
        ...


def _classify_http(response: httpx.Response, what: str) -> bool:
    if 200 <= response.status_code < 300:
        return True
    text = response.text[:300]
    if response.status_code in (408, 425, 429) or response.status_code >= 500:
        raise TransientDeliveryError(f"{what}: HTTP {response.status_code}: {text}")
    raise PermanentDeliveryError(f"{what}: HTTP {response.status_code}: {text}")


class HttpTransport:
    """Webhook: POST the payload as it is."""

    name = "http"

    def __init__(self, client: httpx.Client | None = None, timeout: float = 30.0) -> None:
        self.client = client or httpx.Client(timeout=timeout)

    def deliver(self, message: OutboxMessage) -> bool:
        headers = {"Content-Type": message.content_type, "X-Message-Id": message.msg_id}
        if message.correlation_id:
            headers["X-Correlation-ID"] = message.correlation_id
        try:
            r = self.client.post(message.address, content=message.payload, headers=headers)
        except httpx.HTTPError as exc:
            raise TransientDeliveryError(f"{message.address}: {type(exc).__name__}: {exc}") from exc
        return _classify_http(r, message.address)


class FhirRestTransport:
    """FHIR REST: a Bundle is POSTed to the base; a resource is created with a conditional
    create on its first identifier, so a redelivery after a lost answer creates nothing new."""

    name = "fhir-rest"

    def __init__(self, client: httpx.Client | None = None, timeout: float = 30.0) -> None:
        self.client = client or httpx.Client(timeout=timeout)

    def deliver(self, message: OutboxMessage) -> bool:
        try:
            resource = orjson.loads(message.payload)
        except orjson.JSONDecodeError as exc:
            raise PermanentDeliveryError(f"payload is not JSON: {exc}") from exc
        base = message.address.rstrip("/")
        headers = {"Content-Type": "application/fhir+json", "X-Message-Id": message.msg_id}
        if message.correlation_id:
            headers["X-Correlation-ID"] = message.correlation_id
        rtype = resource.get("resourceType")
        url = base if rtype == "Bundle" else f"{base}/{rtype}"
        idents = resource.get("identifier") or []
        if rtype != "Bundle" and idents and idents[0].get("system") and idents[0].get("value"):
            headers["If-None-Exist"] = f"identifier={idents[0]['system']}|{idents[0]['value']}"
        try:
            r = self.client.post(url, content=message.payload, headers=headers)
        except httpx.HTTPError as exc:
            raise TransientDeliveryError(f"{url}: {type(exc).__name__}: {exc}") from exc
        acked = _classify_http(r, url)
        if rtype == "Bundle" and resource.get("type") == "batch":
            _check_batch_response(r, url)
        return acked


def _check_batch_response(r: httpx.Response, url: str) -> None:
    """A batch is answered 200 even when entries failed: look at each entry's status. A
    server error is retried (the entries are conditional creates, so the ones that did go
    through create nothing new); a refused entry dead-letters the message with the reasons."""
    try:
        body = r.json()
    except ValueError as exc:
        raise TransientDeliveryError(f"{url}: the batch answer is not JSON") from exc
    failed: list[str] = []
    transient = False
    for i, entry in enumerate(body.get("entry") or [] if isinstance(body, dict) else []):
        status = str((entry.get("response") or {}).get("status", ""))
        code = status.split(" ", 1)[0]
        if code.startswith("2"):
            continue
        transient = transient or code.startswith("5") or code in ("408", "429")
        outcome = (entry.get("response") or {}).get("outcome") or {}
        issue = ((outcome.get("issue") or [{}])[0]).get("diagnostics", "")
        failed.append(f"entry {i}: {status or 'no status'} {issue}".strip())
    if not failed:
        return
    detail = f"{url}: {len(failed)} batch entries failed: " + "; ".join(failed[:5])
    if transient:
        raise TransientDeliveryError(detail)
    raise PermanentDeliveryError(detail)


def folder_of(address: str) -> Path:
    parsed = urlparse(address)
    if parsed.scheme != "file" or not parsed.path.startswith("/"):
        raise PermanentDeliveryError(
            f"file-drop address must be file:///absolute/folder, got {address!r}"
        )
    return Path(unquote(parsed.path))


class FileDropTransport:
    """Write the message to ``<folder>/out/<MsgId>.xml`` (atomically: temp file + rename), as
    many EPJ installations exchange with their message server; AppRecs come back in ``in/``."""

    name = "file-drop"

    def deliver(self, message: OutboxMessage) -> bool:
        out = folder_of(message.address) / "out"
        try:
            out.mkdir(parents=True, exist_ok=True)
            suffix = ".xml" if "xml" in message.content_type else ".json"
            target = out / f"{message.msg_id}{suffix}"
            fd, tmp = tempfile.mkstemp(dir=out, prefix=".tmp-", suffix=suffix)
            with os.fdopen(fd, "wb") as f:
                f.write(message.payload)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, target)
        except OSError as exc:
            raise TransientDeliveryError(f"{out}: {exc}") from exc
        return False
