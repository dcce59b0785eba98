"""CPPA: which message types a receiver can take (NHN's CollaborationProtocolProfile API,
HelseID + DPoP, API ``cppa`` in the tenants file).

``GET {base}/Profiles/{herId}`` gives the party's profile; each of its ``processes`` (a
*CollaborationRole*) lists ``canReceive`` message types. No OpenAPI is published (see
standards/nhn/adresseregisteret/README.md): a type is matched against the entries' strings, or
their ``name``/``messageName``/``messageType`` members. Where the information is not available
(no CPPA configured, no profile, an unreadable answer) the answer is "unknown" (None) and the
message goes; a profile that lists what the receiver takes, without this type, is a "no".
Answers are cached for ``ttl`` seconds (a profile is the receiver's, the same whoever asks). The
call is made with the HelseID client of the sending organisation's tenant (``auth`` per call).
"""

from __future__ import annotations

import threading
import time
from typing import Any

import httpx


class CppaClient:
    def __init__(self, base_url: str, *, http: httpx.Client, ttl: float = 3600.0) -> None:
        self.base = base_url.rstrip("/")
        self.http = http
        self.ttl = ttl
        self._cache: dict[str, tuple[float, set[str] | None]] = {}
        self._lock = threading.Lock()

    def _receives(self, her_id: str, auth: httpx.Auth | None) -> set[str] | None:
        now = time.monotonic()
        with self._lock:
            hit = self._cache.get(her_id)
        if hit is not None and now - hit[0] < self.ttl:
            return hit[1]
        types: set[str] | None = None
        try:
            r = self.http.get(
                f"{self.base}/Profiles/{int(her_id)}", auth=auth or httpx.USE_CLIENT_DEFAULT
            )
            if r.status_code == 200:
                types = set()
                for process in r.json().get("processes") or []:
                    for item in process.get("canReceive") or []:
                        if isinstance(item, str):
                            types.add(item)
                        elif isinstance(item, dict):
                            types |= {
                                str(item[k])
                                for k in ("name", "messageName", "messageType")
                                if item.get(k)
                            }
        except (httpx.HTTPError, ValueError, AttributeError):
            types = None  # not available: do not block on it
        with self._lock:
            self._cache[her_id] = (now, types)
        return types

    def can_receive(
        self, her_id: str, message_type: str, *, auth: httpx.Auth | None = None
    ) -> bool | None:
        """True/False per the receiver's profile; None when CPPA does not say."""
        types = self._receives(her_id, auth)
        if not types:
            return None
        return message_type in types


def msghead_type(document: bytes) -> str | None:
    """``MsgInfo/Type/@V`` of a MsgHead (kodeverk 8279)."""
    from lxml import etree

    parser = etree.XMLParser(
        resolve_entities=False, no_network=True, load_dtd=False, huge_tree=True
    )
    try:
        root = etree.fromstring(document, parser)
    except etree.XMLSyntaxError:
        return None
    found: Any = root.xpath("//*[local-name()='MsgInfo']/*[local-name()='Type']/@V")
    return str(found[0]) if found else None
