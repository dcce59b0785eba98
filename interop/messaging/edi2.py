"""Receiving through NHN's EDI 2.0 Meldingstjener (REST, ``api-version: 2``).

For each of our HER-ids: ``GET {base}/Messages?receiverHerIds={her}&includeMetadata=true``,
then per message ``GET {base}/Messages/{id}/business-document`` (base64 MsgHead or AppRec),
the receive checklist in one transaction (:class:`KithInbox`), and only after that commit
``PUT {base}/Messages/{id}/read/{her}``. A crash between the two leaves the message unread: it
is read again and ignored as a duplicate MsgId. The AppRec is queued in the same transaction
and posted by the worker to ``{base}/Messages/{id}/apprec/{our HER-id}``. The base URL is
``INTEROP_EDI2_BASE_URL``.
"""

from __future__ import annotations

import base64
import logging
from typing import Any

import httpx

from interop.messaging.addressbook import Destination, own_her_ids
from interop.messaging.inbound import KithInbox, TrustedChannel

log = logging.getLogger("interop.messaging")


def poll_edi2(
    services: Any, *, client: httpx.Client | None = None, base_url: str | None = None
) -> dict[str, int]:
    base = (base_url or services.settings.edi2_base_url or "").rstrip("/")
    if not base:
        return {}
    http = client or httpx.Client(timeout=30.0)
    headers = {"api-version": "2", "nhn-source-system": "dho-interop"}
    inbox = KithInbox(services)
    with services.store.reader() as conn:
        ours = sorted(own_her_ids(conn, [h for h in (services.settings.our_herid,) if h]))
    counts: dict[str, int] = {}
    source = Destination(f"edi2:{base}", "edi2", base)
    for her in ours:
        try:
            listed = http.get(
                f"{base}/Messages",
                params={"receiverHerIds": her, "includeMetadata": "true"},
                headers=headers,
            )
            listed.raise_for_status()
        except httpx.HTTPError as exc:
            log.warning("EDI 2.0 list for HER-id %s failed: %s", her, exc)
            counts["error"] = counts.get("error", 0) + 1
            continue
        for item in listed.json():
            mid = item["id"]
            try:
                doc = http.get(f"{base}/Messages/{mid}/business-document", headers=headers)
                doc.raise_for_status()
                data = base64.b64decode(doc.json()["businessDocument"])
                result = inbox.receive(
                    data,
                    channel=TrustedChannel("edi2"),  # NHN authenticated the sender
                    source=source,
                    edi2_message=f"{base}/Messages/{mid}",
                )
                http.put(f"{base}/Messages/{mid}/read/{her}", headers=headers).raise_for_status()
            except (httpx.HTTPError, KeyError, ValueError) as exc:
                log.warning("EDI 2.0 message %s for HER-id %s: %s", mid, her, exc)
                counts["error"] = counts.get("error", 0) + 1
                continue
            counts[result.outcome] = counts.get(result.outcome, 0) + 1
    return counts
