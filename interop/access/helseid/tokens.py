"""HelseID access-token validation (HelseID's "Validating Access Tokens", RFC 9068).

Checked in this order: the header (``alg`` one of :data:`TOKEN_ALGS`, ``typ`` ``at+jwt`` — or
``JWT`` when the deployer allows it — and a ``kid`` HelseID publishes), the signature with that
key, ``iss`` exactly, ``aud`` containing our audience, ``exp``/``nbf``/``iat`` with a small
leeway, and the required scopes (``scope`` as a JSON list or a space-separated string).
"""

from __future__ import annotations

from typing import Any

import jwt

from interop.access.helseid.algorithms import TOKEN_ALGS, key_fits
from interop.access.helseid.errors import insufficient_scope, invalid_token
from interop.access.helseid.jwks import JwksCache


def token_scopes(claims: dict[str, Any]) -> set[str]:
    scope = claims.get("scope")
    if isinstance(scope, str):
        return set(scope.split())
    if isinstance(scope, list):
        return {s for s in scope if isinstance(s, str)}
    return set()


class AccessTokenValidator:
    def __init__(
        self,
        jwks: JwksCache,
        *,
        issuer: str,
        audience: str,
        required_scopes: frozenset[str] = frozenset(),
        accept_jwt_typ: bool = False,
        leeway_seconds: int = 5,
    ) -> None:
        self._jwks = jwks
        self._issuer = issuer
        self._audience = audience
        self._required_scopes = required_scopes
        self._typs = {"at+jwt", "application/at+jwt"} | ({"jwt"} if accept_jwt_typ else set())
        self._leeway = leeway_seconds

    def validate(self, token: str, scheme: str = "Bearer") -> dict[str, Any]:
        """The token's claims, or a 401/403 :class:`FhirError` saying what is wrong."""
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError as exc:
            raise invalid_token(f"the access token is not a JWT: {exc}", scheme) from None
        alg = header.get("alg")
        if alg not in TOKEN_ALGS:
            raise invalid_token(
                f"access token algorithm {alg!r} is not accepted "
                f"(use one of {', '.join(sorted(TOKEN_ALGS))})",
                scheme,
            )
        typ = header.get("typ")
        if not isinstance(typ, str) or typ.lower() not in self._typs:
            raise invalid_token(
                f"access token type (typ) {typ!r} is not accepted: it must be 'at+jwt'", scheme
            )
        kid = header.get("kid")
        if not isinstance(kid, str) or not kid:
            raise invalid_token("the access token names no signing key (kid)", scheme)
        key = self._jwks.key(kid, alg)
        if key is None:
            raise invalid_token(
                f"the access token is signed with a key HelseID does not publish (kid {kid!r})",
                scheme,
            )
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                key.key,
                algorithms=sorted(a for a in TOKEN_ALGS if key_fits(a, key.jwk)),
                audience=self._audience,
                issuer=self._issuer,
                leeway=self._leeway,
                options={"require": ["exp", "iss", "aud"], "verify_sub": False},
            )
        except jwt.ExpiredSignatureError:
            raise invalid_token("the access token has expired", scheme) from None
        except jwt.ImmatureSignatureError:
            raise invalid_token("the access token is not valid yet (nbf/iat)", scheme) from None
        except jwt.InvalidAudienceError:
            raise invalid_token(
                f"the access token is not for this API (aud must contain {self._audience!r})",
                scheme,
            ) from None
        except jwt.InvalidIssuerError:
            raise invalid_token(
                f"the access token is not from our HelseID (iss must be {self._issuer!r})", scheme
            ) from None
        except jwt.InvalidSignatureError:
            raise invalid_token("the access token's signature does not verify", scheme) from None
        except jwt.PyJWTError as exc:
            raise invalid_token(f"the access token is not valid: {exc}", scheme) from None
        missing = self._required_scopes - token_scopes(claims)
        if missing:
            raise insufficient_scope(
                f"the access token lacks the scope(s) {' '.join(sorted(missing))}", scheme
            )
        return claims
