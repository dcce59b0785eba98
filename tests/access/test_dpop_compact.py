"""The DPoP proof's compact JWS is parsed strictly before anything in it is used: canonical
base64url segments, JSON objects, and a signature checked with the proof's own key."""

from __future__ import annotations

import base64

import jwt
import pytest

from interop.access.helseid import compact
from interop.access.helseid.local_issuer import DpopClient


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


@pytest.fixture(scope="module", params=["ES256", "RS256", "PS256"])
def client(request) -> DpopClient:  # type: ignore[no-untyped-def]
    return DpopClient(request.param)


def test_a_real_proof_parses_and_verifies(client: DpopClient) -> None:
    proof = client.proof("GET", "https://api.example/fhir/Patient/1", "token")
    parsed = compact.parse(proof)
    assert parsed.header["typ"] == "dpop+jwt" and parsed.payload["htm"] == "GET"
    key = jwt.PyJWK(client.jwk, algorithm=client.alg).key
    assert compact.verify(parsed, client.alg, key)
    other = jwt.PyJWK(DpopClient(client.alg).jwk, algorithm=client.alg).key
    assert not compact.verify(parsed, client.alg, other)


def test_a_changed_payload_fails_the_signature(client: DpopClient) -> None:
    head, _payload, sig = client.proof("GET", "https://api.example/x", "t").split(".")
    payload = _b64(b'{"htm":"GET","htu":"https://api.example/y"}')
    forged = f"{head}.{payload}.{sig}"
    key = jwt.PyJWK(client.jwk, algorithm=client.alg).key
    assert not compact.verify(compact.parse(forged), client.alg, key)


@pytest.mark.parametrize(
    ("token", "why"),
    [
        ("a.b", "three parts"),
        ("a.b.c.d", "three parts"),
        (f"{_b64(b'{}')}=.{_b64(b'{}')}.AA", "header is not base64url"),  # padding
        (f"{_b64(b'{}')}.{_b64(b'{}')}!.AA", "payload is not base64url"),  # junk
        (f"{_b64(b'{}')}.{_b64(b'{}')}.AB", "signature is not canonical"),  # stray bits
        (f"{_b64(b'[1]')}.{_b64(b'{}')}.AA", "header is not a JSON object"),
        (f"{_b64(b'{}')}.{_b64(b'nope')}.AA", "payload is not JSON"),
        ("x" * 20_000, "too long"),
    ],
)
def test_malformed_proofs_are_refused_by_part(token: str, why: str) -> None:
    with pytest.raises(compact.CompactError, match=why):
        compact.parse(token)
