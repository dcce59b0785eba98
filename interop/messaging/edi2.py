"""Receiving through NHN's EDI 2.0 Meldingstjener (REST, ``api-version: 2``).

For each of our HER-ids: ``GET {base}/Messages?ReceiverHerIds={her}&IncludeMetadata=true``,
then per message ``GET {base}/Messages/{id}/business-document`` (base64 MsgHead or AppRec),
the receive checklist in one transaction (:class:`KithInbox`), and only after that commit
``PUT {base}/Messages/{id}/read/{her}``. A crash between the two leaves the message unread: it
is read again and ignored as a duplicate MsgId. The AppRec is queued in the same transaction
and posted by the worker to ``{base}/Messages/{id}/apprec/{our HER-id}``. The base URL is
``INTEROP_EDI2_BASE_URL``; each HER-id is read with the HelseID client of the tenant it belongs
to (``INTEROP_HELSEID_TENANTS_FILE``, see :mod:`interop.national.edi2`).
"""

from __future__ import annotations

import logging
from typing import Any

import httpx

from interop.messaging.addressbook import Destination, own_her_ids
from interop.messaging.inbound import KithInbox, TrustedChannel
from interop.national.edi2 import Edi2Client, Edi2Error
from interop.national.helseid import HelseIdClients, HelseIdError

log = logging.getLogger("interop.messaging")


def poll_edi2(
    services: Any,
    *,
    client: httpx.Client | None = None,
    base_url: str | None = None,
    helseid: HelseIdClients | None = None,
) -> dict[str, int]:
    settings = services.settings
    base = (base_url or settings.edi2_base_url or "").rstrip("/")
    if not base:
        return {}
    from interop.national.wiring import helseid_clients, shared_http

    http = client or shared_http()
    if helseid is None:
        helseid = helseid_clients(settings)
    inbox = KithInbox(services)
    with services.store.reader() as conn:
        ours = sorted(own_her_ids(conn, [h for h in (settings.our_herid,) if h]))
    counts: dict[str, int] = {}
    source = Destination(f"edi2:{base}", "edi2", base)

    def count(what: str) -> None:
        counts[what] = counts.get(what, 0) + 1

    for her in ours:
        auth = None
        if helseid is not None:
            tenant_client = helseid.for_her_ids([her])
            if tenant_client is None:
                log.warning("EDI 2.0: no HelseID tenant for our HER-id %s; not polled", her)
                count("no-tenant")
                continue
            auth = tenant_client.auth("edi2")
        edi = Edi2Client(
            base,
            auth=auth,
            http=http,
            api_version="2",
            source_system=settings.edi2_source_system,
        )
        try:
            listed = edi.unread(int(her))
        except (Edi2Error, HelseIdError, ValueError) as exc:
            log.warning("EDI 2.0 list for HER-id %s failed: %s", her, exc)
            count("error")
            continue
        for item in listed:
            try:
                data = edi.business_document(item.id)
                result = inbox.receive(
                    data,
                    channel=TrustedChannel("edi2"),  # NHN authenticated the sender
                    source=source,
                    edi2_message=f"{base}/Messages/{item.id}",
                )
                edi.mark_read(item.id, int(her))
            except (Edi2Error, HelseIdError, KeyError, ValueError) as exc:
                log.warning("EDI 2.0 message %s for HER-id %s: %s", item.id, her, exc)
                count("error")
                continue
            count(result.outcome)
    return counts
