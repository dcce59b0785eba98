"""Splitting a compact JWS (``header.payload.signature``) and checking its signature, for the
DPoP proof that comes with every request.

PyJWT checks each base64url character of every segment in a Python loop (and the proof was
decoded twice, once for its header and once to verify it), about half of a proof's parsing
cost. Here each segment is checked whole by a regular expression and must be canonical
base64url (no padding, no stray bits), the header and the payload must be JSON objects, and
the signature is verified by PyJWT's own algorithm for ``alg`` with the key given.
"""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass
from typing import Any

import orjson
from jwt.algorithms import get_default_algorithms

_SEGMENT = re.compile(rb"[A-Za-z0-9_-]*")
_ALGORITHMS = get_default_algorithms()
MAX_COMPACT_BYTES = 16_384
"""A proof is a few hundred bytes (an RSA key in the header makes it about 1 KB)."""


class CompactError(ValueError):
    """Not a well-formed compact JWS (the message says which part)."""


@dataclass(frozen=True, slots=True)
class Compact:
    header: dict[str, Any]
    payload: dict[str, Any]
    signing_input: bytes
    signature: bytes


def _segment(raw: bytes, name: str) -> bytes:
    if len(raw) % 4 == 1 or not _SEGMENT.fullmatch(raw):
        raise CompactError(f"the {name} is not base64url")
    try:
        decoded = base64.urlsafe_b64decode(raw + b"=" * (-len(raw) % 4))
    except (binascii.Error, ValueError):
        raise CompactError(f"the {name} is not base64url") from None
    if base64.urlsafe_b64encode(decoded).rstrip(b"=") != raw:
        raise CompactError(f"the {name} is not canonical base64url")
    return decoded


def _object(raw: bytes, name: str) -> dict[str, Any]:
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise CompactError(f"the {name} is not JSON") from None
    if not isinstance(value, dict):
        raise CompactError(f"the {name} is not a JSON object")
    return value


def parse(token: str) -> Compact:
    """The decoded parts of a compact JWS (nothing verified yet)."""
    data = token.encode("ascii", "replace")
    if len(data) > MAX_COMPACT_BYTES:
        raise CompactError("it is too long")
    parts = data.split(b".")
    if len(parts) != 3:
        raise CompactError("it does not have three parts")
    header = _object(_segment(parts[0], "header"), "header")
    payload = _object(_segment(parts[1], "payload"), "payload")
    return Compact(header, payload, parts[0] + b"." + parts[1], _segment(parts[2], "signature"))


def verify(compact: Compact, alg: str, key: Any) -> bool:
    """Whether the signature verifies for ``alg`` (one the caller accepts) with ``key``."""
    algorithm = _ALGORITHMS.get(alg)
    if algorithm is None:
        return False
    return bool(algorithm.verify(compact.signing_input, key, compact.signature))
