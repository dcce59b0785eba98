"""DPoP proof validation for API calls (RFC 9449 §4.3, §7; HelseID's security profile).

A DPoP-bound access token (``cnf.jkt``) is only accepted together with a fresh proof, signed by
the key the token is bound to, for this very request:

* header ``typ`` ``dpop+jwt``, ``alg`` one of :data:`DPOP_ALGS`, and ``jwk`` a *public* key
  (a proof carrying private key members is refused: the client has leaked its key);
* the signature verifies with that ``jwk``, and its RFC 7638 thumbprint equals ``cnf.jkt``;
* ``htm`` is the request method, ``htu`` the request URL without query and fragment;
* ``iat`` at most ``max_age`` seconds old (and not more than the leeway in the future);
* ``ath`` is base64url(SHA-256(access token));
* the ``jti`` has not been used before (in any API process, :class:`JtiReplayGuard`).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import threading
import time
from collections.abc import Callable
from typing import Any, NamedTuple
from urllib.parse import urlsplit, urlunsplit

import jwt

from interop.access.helseid import compact
from interop.access.helseid.algorithms import DPOP_ALGS, key_fits
from interop.access.helseid.errors import invalid_proof
from interop.access.helseid.replay import JtiReplayGuard

PRIVATE_MEMBERS = frozenset({"d", "p", "q", "dp", "dq", "qi", "oth", "k"})
"""JWK members that belong to a private (or symmetric) key (RFC 7518 §6)."""

REPLAYED = "this DPoP proof was used before (jti); make a new proof per request"


class ProofId(NamedTuple):
    """What is recorded of a proof against its replay: the key's thumbprint, the ``jti``,
    and until when a proof with its ``iat`` could be accepted."""

    jkt: str
    jti: str
    expires: int


KEY_CACHE_ENTRIES = 1000
"""Parsed DPoP client keys kept per process (callers reuse one key pair for many requests)."""

THUMBPRINT_MEMBERS = {"RSA": ("e", "kty", "n"), "EC": ("crv", "kty", "x", "y")}
"""The required members hashed for an RFC 7638 thumbprint, in lexicographic order."""


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def jwk_thumbprint(jwk: dict[str, Any]) -> str:
    """RFC 7638 SHA-256 thumbprint, base64url."""
    members = THUMBPRINT_MEMBERS[str(jwk["kty"])]
    canonical = json.dumps(
        {m: jwk[m] for m in members}, separators=(",", ":"), sort_keys=True, ensure_ascii=False
    )
    return b64url(hashlib.sha256(canonical.encode()).digest())


def access_token_hash(token: str) -> str:
    """``ath``: base64url(SHA-256(ASCII access token))."""
    return b64url(hashlib.sha256(token.encode("ascii", "replace")).digest())


def normalise_htu(url: str) -> str:
    """Scheme and host in lower case, default port dropped, no query or fragment."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    host = (parts.hostname or "").lower()
    if ":" in host:
        host = f"[{host}]"
    port = parts.port
    if port is not None and (scheme, port) not in (("http", 80), ("https", 443)):
        host = f"{host}:{port}"
    return urlunsplit((scheme, host, parts.path or "/", "", ""))


class DpopProofValidator:
    def __init__(
        self,
        replay: JtiReplayGuard,
        *,
        max_age_seconds: int = 60,
        leeway_seconds: int = 5,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._replay = replay
        self._max_age = max_age_seconds
        self._leeway = leeway_seconds
        self._clock = clock
        self._keys_lock = threading.Lock()
        self._keys: dict[tuple[str, str], Any] = {}
        """Parsed client keys by (alg, RFC 7638 thumbprint): the thumbprint covers every
        member that makes up the public key, so an equal thumbprint is an equal key."""

    def validate(
        self, proofs: tuple[str, ...], *, method: str, url: str, token: str, jkt: str
    ) -> None:
        """Returns when the proof is good; else raises a 401 ``invalid_dpop_proof``."""
        self.record(self.check(proofs, method=method, url=url, token=token, jkt=jkt))

    def record(self, proof: ProofId) -> None:
        """Refuse a proof used before (in any API process); remember this one."""
        if not self._replay.first_use(*proof):
            raise invalid_proof(REPLAYED)

    async def record_async(self, proof: ProofId) -> None:
        """:meth:`record` for the event loop."""
        if not await self._replay.first_use_async(*proof):
            raise invalid_proof(REPLAYED)

    def check(
        self, proofs: tuple[str, ...], *, method: str, url: str, token: str, jkt: str
    ) -> ProofId:
        """Every check of the proof but its replay (:meth:`record`); raises a 401
        ``invalid_dpop_proof`` or returns the proof's id to record."""
        if not proofs:
            raise invalid_proof("a DPoP-bound token needs a DPoP proof in the 'DPoP' header")
        if len(proofs) > 1:
            raise invalid_proof("send exactly one 'DPoP' header")
        proof = proofs[0].strip()
        try:
            parsed = compact.parse(proof)
        except compact.CompactError as exc:
            raise invalid_proof(f"the DPoP proof is not a JWT: {exc}") from None
        header = parsed.header
        if "crit" in header:
            raise invalid_proof("the DPoP proof has critical header extensions (crit)")
        if header.get("typ") != "dpop+jwt":
            raise invalid_proof(f"DPoP proof typ {header.get('typ')!r} must be 'dpop+jwt'")
        alg = header.get("alg")
        if alg not in DPOP_ALGS:
            raise invalid_proof(
                f"DPoP proof algorithm {alg!r} is not accepted "
                f"(use one of {', '.join(sorted(DPOP_ALGS))})"
            )
        jwk = header.get("jwk")
        if not isinstance(jwk, dict):
            raise invalid_proof("the DPoP proof header has no jwk (the client's public key)")
        if PRIVATE_MEMBERS & jwk.keys():
            raise invalid_proof(
                "the DPoP proof's jwk contains private key material; only the public key may "
                "be sent (and this key must now be considered compromised)"
            )
        if jwk.get("kty") not in THUMBPRINT_MEMBERS or not key_fits(alg, jwk):
            raise invalid_proof(f"the DPoP proof's jwk is not a key for {alg}")
        try:
            thumbprint = jwk_thumbprint(jwk)
            key = self._keys.get((alg, thumbprint))
            if key is None:
                key = jwt.PyJWK(jwk, algorithm=alg).key
                with self._keys_lock:
                    while len(self._keys) >= KEY_CACHE_ENTRIES:
                        self._keys.pop(next(iter(self._keys)))
                    self._keys[(alg, thumbprint)] = key
        except (jwt.PyJWTError, KeyError, TypeError, ValueError) as exc:
            raise invalid_proof(f"the DPoP proof's jwk is not usable: {exc}") from None
        try:
            signed = compact.verify(parsed, alg, key)
        except (TypeError, ValueError) as exc:
            raise invalid_proof(f"the DPoP proof is not valid: {exc}") from None
        if not signed:
            raise invalid_proof("the DPoP proof's signature does not verify")
        claims = parsed.payload
        missing = [c for c in ("jti", "htm", "htu", "iat") if claims.get(c) is None]
        if missing:
            raise invalid_proof(
                f"the DPoP proof is not valid: Token is missing the {missing[0]!r} claim"
            )
        if not hmac.compare_digest(thumbprint.encode(), jkt.encode()):
            raise invalid_proof(
                "the DPoP proof is signed with another key than the token is bound to"
            )
        if claims["htm"] != method:
            raise invalid_proof(
                f"the DPoP proof is for method {claims['htm']!r}, not {method!r} (htm)"
            )
        htu = claims["htu"]
        if not isinstance(htu, str) or normalise_htu(htu) != normalise_htu(url):
            raise invalid_proof(f"the DPoP proof is for URL {htu!r}, not {url!r} (htu)")
        iat = claims["iat"]
        now = self._clock()
        if not isinstance(iat, int | float) or isinstance(iat, bool):
            raise invalid_proof("the DPoP proof's iat is not a number")
        if iat > now + self._leeway:
            raise invalid_proof("the DPoP proof is issued in the future (iat)")
        if iat < now - self._max_age - self._leeway:
            raise invalid_proof(
                f"the DPoP proof is too old (iat more than {self._max_age} s ago); make a new one"
            )
        ath = claims.get("ath")
        if not isinstance(ath, str) or not hmac.compare_digest(
            ath.encode(), access_token_hash(token).encode()
        ):
            raise invalid_proof("the DPoP proof's ath is not the hash of this access token")
        jti = claims["jti"]
        if not isinstance(jti, str) or not jti or len(jti) > 256:
            raise invalid_proof("the DPoP proof's jti must be a unique string")
        return ProofId(jkt, jti, int(iat) + self._max_age + self._leeway + 1)
