"""The local HelseID's token endpoint (tests and benchmarks only): client credentials with a
``private_key_jwt`` client assertion and a DPoP proof, checked for real.

* the client assertion: a registered client, signed (RS256/PS256/ES256) by one of its keys,
  ``iss`` = ``sub`` = client id, ``aud`` = the issuer, at most 60 s lifetime, single-use ``jti``;
* the DPoP proof: ``typ`` ``dpop+jwt``, a public ``jwk`` whose signature verifies, ``htm``
  ``POST``, ``htu`` the token endpoint, fresh ``iat``, single-use ``jti`` and the current nonce —
  without it: 400 ``use_dpop_nonce`` and a ``DPoP-Nonce`` header, as HelseID does;
* ``resource`` and ``scope`` the client is allowed; the token's ``aud`` is the resource, its
  ``cnf.jkt`` the proof key's thumbprint, its org numbers those of ``authorization_details``;
* a request without a proof, for a resource in ``bearer_resources`` (an API that takes plain
  bearer tokens), gets a ``Bearer`` token with no ``cnf``; for any other resource it is refused.
"""

from __future__ import annotations

import secrets
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import jwt

from interop.access.helseid.algorithms import DPOP_ALGS, key_fits
from interop.access.helseid.dpop import PRIVATE_MEMBERS, jwk_thumbprint, normalise_htu

ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
ASSERTION_ALGS = ["RS256", "PS256", "ES256"]


@dataclass
class RegisteredClient:
    client_id: str
    jwks: list[dict[str, Any]]
    """public keys the client signs its assertions with"""
    apis: dict[str, set[str]]
    """resource (audience) → scopes the client may have"""
    extra_claims: dict[str, Any] = field(default_factory=dict)


class TokenError(Exception):
    def __init__(self, status: int, error: str, description: str, nonce: str | None = None):
        super().__init__(description)
        self.status = status
        self.error = error
        self.description = description
        self.nonce = nonce


class TokenEndpoint:
    def __init__(self, issuer: Any, *, lifetime: int = 300, require_nonce: bool = True) -> None:
        self.issuer = issuer
        self.lifetime = lifetime
        self.require_nonce = require_nonce
        self.clients: dict[str, RegisteredClient] = {}
        self.nonce = secrets.token_urlsafe(16)
        self._used: set[str] = set()
        self._lock = threading.Lock()
        self.issued = 0
        self.refused: list[str] = []
        self.bearer_resources: set[str] = set()

    def register(
        self, client_id: str, jwk: dict[str, Any], apis: dict[str, set[str]], **claims: Any
    ) -> RegisteredClient:
        client = RegisteredClient(client_id, [jwk], apis, claims)
        self.clients[client_id] = client
        return client

    def rotate_nonce(self) -> str:
        self.nonce = secrets.token_urlsafe(16)
        return self.nonce

    def _once(self, kind: str, jti: Any) -> None:
        if not isinstance(jti, str) or not jti:
            raise TokenError(400, "invalid_request", f"{kind} has no jti")
        with self._lock:
            if (kind, jti) in self._used:
                raise TokenError(400, "invalid_request", f"{kind} jti was used before")
            self._used.add((kind, jti))  # type: ignore[arg-type]

    def _assertion(self, form: dict[str, str]) -> RegisteredClient:
        if form.get("client_assertion_type") != ASSERTION_TYPE:
            raise TokenError(400, "invalid_client", "client_assertion_type must be jwt-bearer")
        assertion = form.get("client_assertion", "")
        try:
            header = jwt.get_unverified_header(assertion)
            unverified = jwt.decode(assertion, options={"verify_signature": False})
        except jwt.PyJWTError:
            raise TokenError(400, "invalid_client", "client_assertion is not a JWT") from None
        client = self.clients.get(str(unverified.get("iss")))
        if client is None or form.get("client_id", client.client_id) != client.client_id:
            raise TokenError(400, "invalid_client", "unknown client")
        if header.get("alg") not in ASSERTION_ALGS:
            raise TokenError(400, "invalid_client", f"alg {header.get('alg')!r} not allowed")
        for jwk in client.jwks:
            if not key_fits(header["alg"], jwk):
                continue
            try:
                claims: dict[str, Any] = jwt.decode(
                    assertion,
                    jwt.PyJWK(jwk, algorithm=header["alg"]).key,
                    algorithms=[header["alg"]],
                    audience=self.issuer.url,
                    issuer=client.client_id,
                    options={"require": ["iss", "sub", "aud", "exp", "iat", "jti"]},
                )
                break
            except jwt.InvalidSignatureError:
                continue
            except jwt.PyJWTError as exc:
                raise TokenError(400, "invalid_client", f"client_assertion: {exc}") from None
        else:
            raise TokenError(400, "invalid_client", "client_assertion signature does not verify")
        if claims["sub"] != client.client_id:
            raise TokenError(400, "invalid_client", "client_assertion sub is not the client")
        if int(claims["exp"]) - int(claims["iat"]) > 60:
            raise TokenError(400, "invalid_client", "client_assertion lives more than 60 s")
        self._once("client_assertion", claims["jti"])
        client_details = claims.get("authorization_details")
        form["_orgnr"] = _orgnr(client_details) if client_details else ""
        return client

    def _proof(self, proof: str | None, url: str) -> str:
        if not proof:
            raise TokenError(400, "invalid_dpop_proof", "a DPoP proof is required")
        try:
            header = jwt.get_unverified_header(proof)
        except jwt.PyJWTError:
            raise TokenError(400, "invalid_dpop_proof", "DPoP proof is not a JWT") from None
        jwk = header.get("jwk")
        alg = header.get("alg")
        if header.get("typ") != "dpop+jwt" or alg not in DPOP_ALGS or not isinstance(jwk, dict):
            raise TokenError(400, "invalid_dpop_proof", "DPoP proof header typ/alg/jwk")
        if PRIVATE_MEMBERS & jwk.keys() or not key_fits(alg, jwk):
            raise TokenError(400, "invalid_dpop_proof", "DPoP proof jwk is not a public key")
        try:
            claims = jwt.decode(
                proof,
                jwt.PyJWK(jwk, algorithm=alg).key,
                algorithms=[alg],
                options={"require": ["jti", "htm", "htu", "iat"], "verify_iat": False},
            )
        except jwt.PyJWTError as exc:
            raise TokenError(400, "invalid_dpop_proof", f"DPoP proof: {exc}") from None
        if claims["htm"] != "POST" or normalise_htu(str(claims["htu"])) != normalise_htu(url):
            raise TokenError(400, "invalid_dpop_proof", "DPoP proof htm/htu")
        if abs(time.time() - float(claims["iat"])) > 60:
            raise TokenError(400, "invalid_dpop_proof", "DPoP proof iat is not fresh")
        if self.require_nonce and claims.get("nonce") != self.nonce:
            raise TokenError(
                400,
                "use_dpop_nonce",
                "Authorization server requires nonce in DPoP proof",
                nonce=self.nonce,
            )
        self._once("dpop", claims["jti"])
        return jwk_thumbprint(jwk)

    def issue(self, form: dict[str, str], dpop: str | None) -> dict[str, Any]:
        """The token response, or :class:`TokenError`."""
        url = self.issuer.url + "/connect/token"
        try:
            if form.get("grant_type") != "client_credentials":
                raise TokenError(400, "unsupported_grant_type", "only client_credentials")
            resource = form.get("resource", "")
            bearer = not dpop and resource in self.bearer_resources
            jkt = None if bearer else self._proof(dpop, url)
            client = self._assertion(form)
            allowed = client.apis.get(resource)
            if allowed is None:
                raise TokenError(400, "invalid_target", f"resource {resource!r} not allowed")
            scopes = form.get("scope", "").split()
            if not scopes or not set(scopes) <= allowed:
                raise TokenError(400, "invalid_scope", f"scope {form.get('scope')!r} not allowed")
        except TokenError as exc:
            self.refused.append(exc.error)
            raise
        extra: dict[str, Any] = {
            "aud": resource,
            "scope": scopes,
            "client_id": client.client_id,
            "client_amr": "private_key_jwt",  # the only way a client authenticates here
            **({"cnf": {"jkt": jkt}} if jkt else {}),
            **client.extra_claims,
        }
        now = int(time.time())
        extra.update({"iat": now, "nbf": now, "exp": now + self.lifetime})
        orgnr = form.get("_orgnr", "")
        if orgnr:
            parent, _, child = orgnr.partition(":")
            extra["helseid://claims/client/claims/orgnr_parent"] = parent or None
            extra["helseid://claims/client/claims/orgnr_child"] = child or None
        token = self.issuer.token(self.issuer.claims(**extra))
        self.issued += 1
        return {
            "access_token": token,
            "token_type": "DPoP" if jkt else "Bearer",
            "expires_in": self.lifetime,
            "scope": " ".join(scopes),
        }


def _orgnr(details: Any) -> str:
    """``parent:child`` from a ``helseid_authorization`` detail (multi- or single-tenant)."""
    items = details if isinstance(details, list) else [details]
    for d in items:
        if not isinstance(d, dict) or d.get("type") != "helseid_authorization":
            continue
        ident = (
            ((d.get("practitioner_role") or {}).get("organization") or {}).get("identifier")
        ) or {}
        value = str(ident.get("value", ""))
        if value.startswith("NO:ORGNR:"):
            parts = value.split(":")
            return f"{parts[2]}:{parts[3] if len(parts) > 3 else ''}"
        return f":{value}"
    return ""
