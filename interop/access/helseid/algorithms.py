"""Signature algorithms we accept, and which key type each needs.

Access tokens: RS256 (what HelseID signs with today), PS256 and ES256 — asymmetric only, so
``alg: none`` and HMAC (``HS256`` "signed" with the issuer's public key) are refused before
any key is looked at. DPoP proofs: HelseID's ``dpop_signing_alg_values_supported`` (RS/PS/ES
256/384/512; see ``standards/helseid/README.md`` §1 and §3).
"""

from __future__ import annotations

TOKEN_ALGS: frozenset[str] = frozenset({"RS256", "PS256", "ES256"})
DPOP_ALGS: frozenset[str] = frozenset(
    {"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512"}
)

KEY_TYPE: dict[str, str] = {"RS": "RSA", "PS": "RSA", "ES": "EC"}
"""Algorithm family → JWK ``kty``."""

EC_CURVE: dict[str, str] = {"ES256": "P-256", "ES384": "P-384", "ES512": "P-521"}


def key_fits(alg: str, jwk: dict[str, object]) -> bool:
    """Whether a JWK is of the type (and, for EC, the curve) the algorithm needs."""
    if jwk.get("kty") != KEY_TYPE.get(alg[:2]):
        return False
    return alg not in EC_CURVE or jwk.get("crv") == EC_CURVE[alg]
