"""HelseID access tokens → actors: the resolver registered on the API app.

``Authorization: Bearer <token>`` for tokens that are not DPoP-bound; ``Authorization: DPoP
<token>`` plus a ``DPoP`` proof for tokens with ``cnf.jkt``. A DPoP-bound token sent as Bearer
is refused (whoever holds it without the key must not use it), and so is a token without
``cnf`` sent with the DPoP scheme. A token that validated is remembered until it expires (a
bounded cache), so a token used again costs no signature check; its DPoP proof is checked on
every request.

Order of checks: the token (401 ``invalid_token``), the binding and the proof (401
``invalid_dpop_proof``), then the client map and the user's security level (403 / 401).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from interop.access.actor import Actor
from interop.access.helseid.claims import actor_from_claims
from interop.access.helseid.clients import ClientMap, clients_file, load_client_map
from interop.access.helseid.dpop import DpopProofValidator, ProofId
from interop.access.helseid.errors import challenge, invalid_token
from interop.access.helseid.jwks import JwksCache
from interop.access.helseid.replay import JtiReplayGuard
from interop.access.helseid.tokens import AccessTokenValidator
from interop.fhir.outcome import error

if TYPE_CHECKING:
    from interop.api.auth import Credentials
    from interop.services import Services

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class _Valid:
    claims: dict[str, Any]
    jkt: str | None
    exp: float


@dataclass(frozen=True, slots=True)
class _Parts:
    tokens: AccessTokenValidator
    proofs: DpopProofValidator
    clients: ClientMap
    jwks: JwksCache
    min_security_level: int
    cache_entries: int


class HelseIdResolver:
    def __init__(self, services: Callable[[], Services]) -> None:
        self._services = services
        self._parts: _Parts | None = None
        self._lock = threading.Lock()
        self._cache: OrderedDict[bytes, _Valid] = OrderedDict()

    @property
    def enabled(self) -> bool:
        return bool(self._services().settings.helseid_issuer)

    @property
    def jwks(self) -> JwksCache:
        return self._build().jwks

    def challenge(self) -> str | None:
        """The ``WWW-Authenticate`` challenge to add to a 401 (when HelseID is on)."""
        return challenge("DPoP") if self.enabled else None

    def check(self) -> None:
        """At start-up: read the client map and settings now, so that a mistake in them stops
        the service with a clear message instead of failing requests."""
        if self.enabled:
            self._build()

    def _build(self) -> _Parts:
        if self._parts is not None:
            return self._parts
        with self._lock:
            if self._parts is None:
                svc = self._services()
                s = svc.settings
                if not s.helseid_issuer or not s.helseid_audience:
                    raise ValueError("HelseID needs INTEROP_HELSEID_ISSUER and _AUDIENCE")
                jwks = JwksCache(
                    s.helseid_issuer,
                    jwks_uri=s.helseid_jwks_uri,
                    refetch_seconds=s.helseid_jwks_refetch_seconds,
                    max_age_seconds=s.helseid_jwks_max_age_seconds,
                )
                self._parts = _Parts(
                    tokens=AccessTokenValidator(
                        jwks,
                        issuer=s.helseid_issuer,
                        audience=s.helseid_audience,
                        required_scopes=frozenset(s.helseid_required_scopes.split()),
                        accept_jwt_typ=s.helseid_accept_jwt_typ,
                        leeway_seconds=s.helseid_leeway_seconds,
                    ),
                    proofs=DpopProofValidator(
                        JtiReplayGuard(lambda: self._services().engine),
                        max_age_seconds=s.dpop_max_age_seconds,
                        leeway_seconds=s.helseid_leeway_seconds,
                    ),
                    clients=load_client_map(clients_file(s.helseid_clients_file, s.mappings_dir)),
                    jwks=jwks,
                    min_security_level=s.helseid_min_security_level,
                    cache_entries=max(s.helseid_token_cache_entries, 0),
                )
        return self._parts

    def resolve(self, credentials: Credentials) -> Actor | None:
        actor, proof = self._checked(credentials)
        if proof is not None:
            self._build().proofs.record(proof)
        return actor

    async def resolve_async(self, credentials: Credentials) -> Actor | None:
        """:meth:`resolve` for the event loop. A DPoP request whose token was validated before
        (cached) is checked on the loop and its proof recorded by group commit while the
        request waits; any other (a token's first use may fetch the issuer's keys) is resolved
        in a worker thread."""
        if credentials.scheme != "dpop" or not self._cached(credentials.token):
            return await asyncio.to_thread(self.resolve, credentials)
        actor, proof = self._checked(credentials)
        if proof is not None:
            await self._build().proofs.record_async(proof)
        return actor

    def _cached(self, token: str) -> bool:
        digest = hashlib.sha256(token.encode()).digest()
        with self._lock:
            hit = self._cache.get(digest)
        return hit is not None and hit.exp > time.time()

    def _checked(self, credentials: Credentials) -> tuple[Actor | None, ProofId | None]:
        """The actor, and the DPoP proof still to be recorded against replay."""
        if credentials.scheme == "bearer" and credentials.token.count(".") != 2:
            return None, None  # an API key
        if not self.enabled:
            if credentials.scheme == "dpop":
                raise invalid_token("HelseID tokens are not accepted by this service", "DPoP")
            return None, None
        try:
            parts = self._build()
        except ValueError as exc:  # the start-up check normally catches this first
            log.error("HelseID is misconfigured: %s", exc)
            raise error(503, "exception", "HelseID sign-in is misconfigured here") from None
        scheme = "DPoP" if credentials.scheme == "dpop" else "Bearer"
        valid = self._validated(parts, credentials.token, scheme)
        if scheme == "Bearer" and valid.jkt is not None:
            raise invalid_token(
                "this token is bound to a DPoP key: send it as 'Authorization: DPoP <token>' "
                "with a DPoP proof",
                "DPoP",
            )
        proof = None
        if scheme == "DPoP":
            if valid.jkt is None:
                raise invalid_token(
                    "this token is not DPoP-bound (no cnf.jkt): send it as Bearer", "DPoP"
                )
            proof = parts.proofs.check(
                credentials.dpop_proofs,
                method=credentials.method,
                url=credentials.url,
                token=credentials.token,
                jkt=valid.jkt,
            )
        actor = actor_from_claims(
            valid.claims,
            parts.clients,
            min_security_level=parts.min_security_level,
            scheme=scheme,
        )
        return actor, proof

    def _validated(self, parts: _Parts, token: str, scheme: str) -> _Valid:
        digest = hashlib.sha256(token.encode()).digest()
        now = time.time()
        with self._lock:
            hit = self._cache.get(digest)
        if hit is not None and hit.exp > now:
            return hit
        claims = parts.tokens.validate(token, scheme)
        cnf = claims.get("cnf")
        jkt = cnf.get("jkt") if isinstance(cnf, dict) else None
        if cnf is not None and not (isinstance(jkt, str) and jkt):
            raise invalid_token("the token's cnf has no usable jkt", scheme)
        valid = _Valid(claims, jkt, float(claims["exp"]))
        if parts.cache_entries:
            with self._lock:
                self._cache[digest] = valid
                while len(self._cache) > parts.cache_entries:
                    self._cache.popitem(last=False)
        return valid
