"""A HelseID client's private key, read from a file or an environment variable.

The key is a private JWK (JSON, as HelseID self-service hands it out) or a PEM private key. It is
never logged: :class:`ClientKey`'s ``repr`` shows the key id and algorithm only.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import load_pem_private_key

from interop.access.helseid.algorithms import DPOP_ALGS, key_fits
from interop.access.helseid.dpop import jwk_thumbprint
from interop.access.helseid.local_issuer import public_jwk

CLIENT_ASSERTION_ALGS = frozenset({"RS256", "PS256", "ES256"})
"""What we sign client assertions with (HelseID: asymmetric only, at least RS256)."""


class KeyConfigError(ValueError):
    """The key setting is missing, unreadable or does not fit the algorithm (the message says
    which tenant and which setting, never the key)."""


@dataclass(frozen=True)
class ClientKey:
    alg: str
    kid: str
    key: Any = field(repr=False)
    public: dict[str, Any] = field(repr=False)
    """the public JWK (what goes into a DPoP proof's header)"""
    jkt: str = ""
    """RFC 7638 thumbprint of the public key (an access token bound to it carries it in cnf)"""

    def sign(self, payload: dict[str, Any], headers: dict[str, Any]) -> str:
        return jwt.encode(payload, self.key, algorithm=self.alg, headers=headers)


def _parse(text: str, where: str) -> Any:
    text = text.strip()
    if text.startswith("{"):
        try:
            jwk = json.loads(text)
            if not any(m in jwk for m in ("d",)):
                raise KeyConfigError(f"{where}: the JWK has no private part")
            return jwt.PyJWK(jwk).key, jwk.get("kid")
        except (ValueError, jwt.PyJWTError) as exc:
            raise KeyConfigError(
                f"{where}: not a usable private JWK ({type(exc).__name__})"
            ) from None
    try:
        return load_pem_private_key(text.encode(), password=None), None
    except (ValueError, TypeError) as exc:
        raise KeyConfigError(f"{where}: not a PEM private key ({type(exc).__name__})") from None


def load_client_key(
    *, where: str, alg: str, kid: str | None, file: str | None = None, env: str | None = None
) -> ClientKey:
    """The key from ``file`` (a path) or from the environment variable named ``env``."""
    if alg not in CLIENT_ASSERTION_ALGS:
        raise KeyConfigError(f"{where}: alg {alg!r} is not one of {sorted(CLIENT_ASSERTION_ALGS)}")
    if file:
        try:
            text = Path(file).read_text()
        except OSError as exc:
            raise KeyConfigError(f"{where}: key_file {file}: {exc.strerror}") from None
        key, jwk_kid = _parse(text, f"{where}: key_file {file}")
    elif env:
        value = os.environ.get(env)
        if not value:
            raise KeyConfigError(f"{where}: environment variable {env} (key_env) is not set")
        key, jwk_kid = _parse(value, f"{where}: key_env {env}")
    else:
        raise KeyConfigError(f"{where}: set key_file or key_env")
    return client_key(key, alg, kid or jwk_kid, where=where)


def client_key(key: Any, alg: str, kid: str | None, *, where: str = "key") -> ClientKey:
    if not isinstance(key, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey):
        raise KeyConfigError(f"{where}: only RSA and EC private keys are supported")
    public = public_jwk(key)
    if alg not in DPOP_ALGS or not key_fits(alg, public):
        raise KeyConfigError(f"{where}: the key is not a key for {alg}")
    jkt = jwk_thumbprint(public)
    return ClientKey(alg, kid or jkt, key, public, jkt)
