"""HelseID's signing keys (JWKS), fetched over HTTP and cached.

The keys come from ``jwks_uri`` (a setting, or HelseID's discovery document
``{issuer}/.well-known/openid-configuration``). They are parsed once and kept; a token signed
with a key id (``kid``) we do not hold makes us fetch them again (HelseID rotates its keys), but
at most once per ``refetch_seconds``, so tokens with made-up ``kid`` values cannot make us
hammer HelseID. Keys older than ``max_age_seconds`` are fetched again on the next request, so a
key HelseID withdrew stops being trusted; if that fetch fails, the keys we hold are kept.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx
import jwt

from interop.access.helseid.algorithms import key_fits
from interop.fhir.outcome import FhirError, error

log = logging.getLogger(__name__)

DISCOVERY_PATH = "/.well-known/openid-configuration"


@dataclass(frozen=True, slots=True)
class SigningKey:
    kid: str
    jwk: dict[str, Any]
    key: Any
    """The parsed public key (a ``cryptography`` key object)."""


class JwksCache:
    def __init__(
        self,
        issuer: str,
        *,
        jwks_uri: str | None = None,
        refetch_seconds: float = 30.0,
        max_age_seconds: float = 3600.0,
        timeout: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._issuer = issuer.rstrip("/")
        self._jwks_uri = jwks_uri
        self._refetch_seconds = refetch_seconds
        self._max_age_seconds = max_age_seconds
        self._timeout = timeout
        self._clock = clock
        self._keys: dict[str, SigningKey] = {}
        self._fetched_at: float | None = None
        self._lock = threading.Lock()
        self.fetches = 0
        """How many times the keys were fetched (for tests and metrics)."""

    def key(self, kid: str, alg: str) -> SigningKey | None:
        """The key with this id, fit for ``alg``; None when HelseID has no such key."""
        now = self._clock()
        found = self._keys.get(kid)
        fetched_at = self._fetched_at
        stale = fetched_at is None or now - fetched_at >= self._max_age_seconds
        if found is None or stale:
            with self._lock:
                found = self._keys.get(kid)
                fetched_at = self._fetched_at
                if fetched_at is None:
                    self._refresh(required=True)
                elif now - fetched_at >= self._max_age_seconds or (
                    found is None and now - fetched_at >= self._refetch_seconds
                ):
                    self._refresh(required=False)
                found = self._keys.get(kid)
        if found is None or not key_fits(alg, found.jwk):
            return None
        return found

    def _refresh(self, *, required: bool) -> None:
        """Fetch the keys (holding the lock). ``required``: there are none to fall back on."""
        self._fetched_at = self._clock()  # also after a failure: the rate limit holds
        try:
            keys = self._fetch()
        except (httpx.HTTPError, ValueError) as exc:
            log.warning("HelseID keys could not be fetched: %s", exc)
            if required or not self._keys:
                raise _unavailable(str(exc)) from None
            return
        self._keys = keys

    def _fetch(self) -> dict[str, SigningKey]:
        self.fetches += 1
        with httpx.Client(timeout=self._timeout, follow_redirects=False) as client:
            uri = self._jwks_uri
            if uri is None:
                r = client.get(self._issuer + DISCOVERY_PATH)
                r.raise_for_status()
                meta = r.json()
                if meta.get("issuer") != self._issuer and meta.get("issuer") != self._issuer + "/":
                    raise ValueError(
                        f"the discovery document names issuer {meta.get('issuer')!r}, "
                        f"not {self._issuer!r}"
                    )
                uri = meta.get("jwks_uri")
                if not isinstance(uri, str) or not uri:
                    raise ValueError("the discovery document has no jwks_uri")
                self._jwks_uri = uri
            r = client.get(uri)
            r.raise_for_status()
            body = r.json()
        entries = body.get("keys") if isinstance(body, dict) else None
        if not isinstance(entries, list):
            raise ValueError(f"{uri} is not a JWKS (no 'keys' list)")
        keys: dict[str, SigningKey] = {}
        for entry in entries:
            if not isinstance(entry, dict) or not isinstance(entry.get("kid"), str):
                continue
            if entry.get("use", "sig") != "sig" or entry.get("kty") not in ("RSA", "EC"):
                continue
            try:
                parsed = jwt.PyJWK(entry).key
            except jwt.PyJWTError as exc:
                log.warning("HelseID key %s skipped: %s", entry["kid"], exc)
                continue
            keys[entry["kid"]] = SigningKey(entry["kid"], entry, parsed)
        return keys


def _unavailable(detail: str) -> FhirError:
    return error(
        503,
        "transient",
        f"HelseID's signing keys cannot be fetched just now, so HelseID tokens cannot be "
        f"checked ({detail}); try again shortly",
        headers={"Retry-After": "10"},
    )
