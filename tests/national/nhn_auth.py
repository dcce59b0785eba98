"""What every local NHN contract server checks on a call: a HelseID access token from the local
issuer (signature, issuer, audience, scope, expiry), bound to a DPoP key (``cnf.jkt``), and a
fresh DPoP proof for this very request (real signature, htm, htu, ath, single-use jti) — the
product's own resource-side validator, with an in-memory jti store."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any, cast

import jwt

from interop.access.helseid.dpop import DpopProofValidator
from interop.access.helseid.local_issuer import Issuer, public_jwk
from interop.access.helseid.replay import JtiReplayGuard
from interop.fhir.outcome import FhirError


class MemoryJtis:
    def __init__(self) -> None:
        self.seen: set[tuple[str, str]] = set()
        self.lock = threading.Lock()

    def first_use(self, jkt: str, jti: str, expires: int) -> bool:
        with self.lock:
            if (jkt, jti) in self.seen:
                return False
            self.seen.add((jkt, jti))
            return True


@dataclass
class Caller:
    client_id: str
    claims: dict[str, Any]


class Unauthorized(Exception):
    def __init__(self, www: str, detail: str) -> None:
        super().__init__(detail)
        self.www = www
        self.detail = detail


def access_token(
    issuer: Issuer, scheme: str, headers: dict[str, str], audience: str, scope: str
) -> tuple[str, dict[str, Any]]:
    """The token of ``Authorization: <scheme> <token>`` and its claims: signed by the local
    issuer, for this audience, with this scope, not expired — else :class:`Unauthorized`."""
    given, _, token = headers.get("authorization", "").partition(" ")
    if given != scheme or not token:
        raise Unauthorized(f'{scheme} error="invalid_token"', f"Authorization: {scheme} required")
    try:
        kid = jwt.get_unverified_header(token).get("kid")
        claims: dict[str, Any] = jwt.decode(
            token,
            issuer.keys[kid].public_key(),
            algorithms=["RS256", "ES256", "PS256"],
            audience=audience,
            issuer=issuer.url,
        )
    except (jwt.PyJWTError, KeyError) as exc:
        raise Unauthorized(f'{scheme} error="invalid_token"', f"token: {exc}") from None
    scopes = claims.get("scope") or []
    if isinstance(scopes, str):
        scopes = scopes.split()
    if scope not in scopes:
        raise Unauthorized(f'{scheme} error="insufficient_scope"', f"scope {scope} missing")
    return token, claims


class ApiGuard:
    def __init__(self, issuer: Issuer, audience: str, scope: str) -> None:
        self.issuer = issuer
        self.audience = audience
        self.scope = scope
        self.proofs = DpopProofValidator(cast(JtiReplayGuard, MemoryJtis()))
        self.checked = 0

    def check(self, method: str, url: str, headers: dict[str, str]) -> Caller:
        token, claims = access_token(self.issuer, "DPoP", headers, self.audience, self.scope)
        jkt = (claims.get("cnf") or {}).get("jkt")
        if not jkt:
            raise Unauthorized('DPoP error="invalid_token"', "the token is not DPoP-bound")
        proof = headers.get("dpop")
        try:
            self.proofs.validate(
                (proof,) if proof else (), method=method, url=url, token=token, jkt=jkt
            )
        except FhirError as exc:
            raise Unauthorized('DPoP error="invalid_dpop_proof"', str(exc)) from None
        self.checked += 1
        return Caller(str(claims.get("client_id")), claims)


class BearerGuard:
    """An API that takes a plain HelseID bearer token (the older careplan service, classic
    VKP): the token from the local issuer (signature, issuer, audience, scope, expiry), **not**
    DPoP-bound, and the claims the API requires (default: the careplan service's ``orgnr_parent``
    and ``orgnr_child``) with the values it expects."""

    ORG_NUMBERS = (
        "helseid://claims/client/claims/orgnr_parent",
        "helseid://claims/client/claims/orgnr_child",
    )

    def __init__(
        self,
        issuer: Issuer,
        audience: str,
        scope: str,
        *,
        required: tuple[str, ...] = ORG_NUMBERS,
        values: dict[str, str] | None = None,
    ) -> None:
        self.issuer = issuer
        self.audience = audience
        self.scope = scope
        self.required = required
        self.values = values or {}
        self.checked = 0

    def check(self, method: str, url: str, headers: dict[str, str]) -> Caller:
        _, claims = access_token(self.issuer, "Bearer", headers, self.audience, self.scope)
        if claims.get("cnf") or headers.get("dpop"):
            raise Unauthorized('Bearer error="invalid_token"', "a DPoP token or proof here")
        missing = [c for c in self.required if not claims.get(c)]
        wrong = [c for c, v in self.values.items() if claims.get(c) != v]
        if missing or wrong:
            raise Unauthorized(
                'Bearer error="invalid_token"', f"claims missing: {missing}, wrong: {wrong}"
            )
        self.checked += 1
        return Caller(str(claims.get("client_id")), claims)


__all__ = ["ApiGuard", "BearerGuard", "Caller", "Unauthorized", "public_jwk"]
