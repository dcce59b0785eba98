"""A local HelseID for tests and benchmarks (never for production): a real HTTP server on
127.0.0.1 (in a thread) serving the discovery document and the JWKS, and minting access tokens
signed with real RSA and EC keys. Keys can be rotated. :class:`DpopClient` is a calling system
with its own key pair, making DPoP proofs.
"""

from __future__ import annotations

import base64
import hashlib
import json
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

AUDIENCE = "nhn:dho-interop"
SCOPE = "nhn:dho-interop/api"


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def public_jwk(key: Any) -> dict[str, Any]:
    public = key.public_key()
    if isinstance(public, rsa.RSAPublicKey):
        return dict(json.loads(RSAAlgorithm.to_jwk(public)))
    return dict(json.loads(ECAlgorithm.to_jwk(public)))


def private_jwk(key: Any) -> dict[str, Any]:
    if isinstance(key, rsa.RSAPrivateKey):
        return dict(json.loads(RSAAlgorithm.to_jwk(key)))
    return dict(json.loads(ECAlgorithm.to_jwk(key)))


def thumbprint(jwk: dict[str, Any]) -> str:
    members = ("e", "kty", "n") if jwk["kty"] == "RSA" else ("crv", "kty", "x", "y")
    canonical = json.dumps({m: jwk[m] for m in members}, separators=(",", ":"), sort_keys=True)
    return b64url(hashlib.sha256(canonical.encode()).digest())


class Issuer:
    """The signing side of the local HelseID. ``url`` is its issuer (set when served)."""

    def __init__(self) -> None:
        self.url = ""
        self.keys: dict[str, Any] = {}
        self.published: list[str] = []
        self.jwks_requests = 0
        self._n = 0
        from interop.access.helseid.local_token_endpoint import TokenEndpoint

        self.token_endpoint = TokenEndpoint(self)
        """``/connect/token`` (register clients on it before they ask)"""
        self.add_key("RS256")
        self.add_key("ES256")

    def add_key(self, alg: str, publish: bool = True) -> str:
        self._n += 1
        kid = f"{alg.lower()}-{self._n}"
        self.keys[kid] = (
            ec.generate_private_key(ec.SECP256R1())
            if alg.startswith("ES")
            else rsa.generate_private_key(public_exponent=65537, key_size=2048)
        )
        if publish:
            self.published.append(kid)
        return kid

    def rotate(self) -> str:
        """A new RSA key, published instead of the old ones (as HelseID does at rotation)."""
        kid = self.add_key("RS256", publish=False)
        self.published = [kid]
        return kid

    def jwks(self) -> dict[str, Any]:
        keys = []
        for kid in self.published:
            jwk = public_jwk(self.keys[kid])
            jwk.update({"kid": kid, "use": "sig"})
            keys.append(jwk)
        return {"keys": keys}

    def claims(self, **extra: Any) -> dict[str, Any]:
        now = int(time.time())
        claims: dict[str, Any] = {
            "iss": self.url,
            "aud": AUDIENCE,
            "iat": now,
            "nbf": now,
            "exp": now + 300,
            "jti": uuid.uuid4().hex,
            "client_id": "7b0c9f6e-3a52-4a0e-9d3e-2f1c5b8a4d10",
            "scope": ["openid", SCOPE],
            "client_amr": "private_key_jwt",
            "helseid://claims/client/client_name": "Testkommune EPJ",
            "helseid://claims/client/claims/orgnr_parent": "312229544",
            "helseid://claims/client/claims/orgnr_child": "922734046",
        }
        for name, value in extra.items():
            if value is None:
                claims.pop(name, None)
            else:
                claims[name] = value
        return claims

    def token(
        self,
        claims: dict[str, Any] | None = None,
        *,
        kid: str | None = None,
        alg: str | None = None,
        typ: str = "at+jwt",
        key: Any = None,
        headers: dict[str, Any] | None = None,
    ) -> str:
        """A signed access token; by default with the first published key of its kind."""
        kid = kid or self.published[0]
        signing = key if key is not None else self.keys[kid]
        if alg is None:
            alg = "ES256" if isinstance(signing, ec.EllipticCurvePrivateKey) else "RS256"
        header = {"kid": kid, "typ": typ, **(headers or {})}
        return jwt.encode(claims or self.claims(), signing, algorithm=alg, headers=header)


class DpopClient:
    """A calling system's DPoP key pair."""

    def __init__(self, alg: str = "ES256") -> None:
        self.alg = alg
        self.key: Any = (
            ec.generate_private_key(ec.SECP256R1())
            if alg.startswith("ES")
            else rsa.generate_private_key(public_exponent=65537, key_size=2048)
        )
        self.jwk = public_jwk(self.key)
        self.jkt = thumbprint(self.jwk)

    def proof(
        self,
        method: str,
        url: str,
        token: str | None,
        *,
        jwk: dict[str, Any] | None = None,
        typ: str = "dpop+jwt",
        key: Any = None,
        **claims: Any,
    ) -> str:
        payload: dict[str, Any] = {
            "jti": uuid.uuid4().hex,
            "htm": method,
            "htu": url,
            "iat": int(time.time()),
        }
        if token is not None:
            payload["ath"] = b64url(hashlib.sha256(token.encode()).digest())
        payload.update(claims)
        header = {"typ": typ, "jwk": jwk if jwk is not None else self.jwk}
        return jwt.encode(payload, key or self.key, algorithm=self.alg, headers=header)


class _Handler(BaseHTTPRequestHandler):
    issuer: Issuer

    def do_GET(self) -> None:  # noqa: N802 - the http.server interface
        if self.path == "/.well-known/openid-configuration":
            body: dict[str, Any] = {
                "issuer": self.issuer.url,
                "jwks_uri": f"{self.issuer.url}/.well-known/openid-configuration/jwks",
                "token_endpoint": f"{self.issuer.url}/connect/token",
                "dpop_signing_alg_values_supported": ["RS256", "PS256", "ES256"],
                "token_endpoint_auth_methods_supported": ["private_key_jwt"],
                "grant_types_supported": ["client_credentials"],
            }
        elif self.path == "/.well-known/openid-configuration/jwks":
            self.issuer.jwks_requests += 1
            body = self.issuer.jwks()
        else:
            self.send_error(404)
            return
        data = json.dumps(body).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_POST(self) -> None:  # noqa: N802 - the http.server interface
        from urllib.parse import parse_qsl

        from interop.access.helseid.local_token_endpoint import TokenError

        if self.path != "/connect/token":
            self.send_error(404)
            return
        length = int(self.headers.get("Content-Length") or 0)
        form = dict(parse_qsl(self.rfile.read(length).decode()))
        status, headers = 200, {"Cache-Control": "no-store"}
        try:
            body = self.issuer.token_endpoint.issue(form, self.headers.get("DPoP"))
        except TokenError as exc:
            status = exc.status
            body = {"error": exc.error, "error_description": exc.description}
            if exc.nonce:
                headers["DPoP-Nonce"] = exc.nonce
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for name, value in headers.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        pass


@contextmanager
def serve_issuer(issuer: Issuer | None = None) -> Iterator[Issuer]:
    issuer = issuer or Issuer()
    handler = type("Handler", (_Handler,), {"issuer": issuer})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    issuer.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield issuer
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)
