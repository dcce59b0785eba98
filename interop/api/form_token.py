"""A short-lived signed form field for the pages whose forms change data (the GP's plan
approval page): it binds the form to the actor who was shown it, to what they were shown (the
resource and its version) and to a time limit, so a form cannot be posted in another
person's name, for another resource, long after, or for a version the user never read.

The key is derived from the service's admin key (``INTEROP_ADMIN_KEY``), which every API
process of a deployment shares, so any process can check what another signed."""

from __future__ import annotations

import hashlib
import hmac
import time
from dataclasses import dataclass

from interop.access.actor import Actor
from interop.fhir.outcome import error

LIFETIME_SECONDS = 30 * 60
"""How long a GP may read the plan before answering."""
_LABEL = b"dho-interop form token v1"


@dataclass(frozen=True, slots=True)
class Signed:
    target: str
    """What the form acts on (``CarePlan/<id>``)."""
    version: int
    """The version of it the page showed."""


def _key(admin_key: str) -> bytes:
    return hmac.new(admin_key.encode(), _LABEL, hashlib.sha256).digest()


def _mac(admin_key: str, actor: Actor, target: str, version: int, expires: int) -> str:
    message = "\n".join((actor.id, actor.role, actor.hpr or "", target, str(version), str(expires)))
    return hmac.new(_key(admin_key), message.encode(), hashlib.sha256).hexdigest()


def sign(admin_key: str, actor: Actor, target: str, version: int, now: float | None = None) -> str:
    expires = int((time.time() if now is None else now) + LIFETIME_SECONDS)
    return f"{expires}.{version}.{_mac(admin_key, actor, target, version, expires)}"


def verify(
    admin_key: str, actor: Actor, target: str, token: str, now: float | None = None
) -> Signed:
    """The signed form field, checked: 403 when it is missing, forged, someone else's or for
    another resource; 403 too when it has expired (the page must be opened again)."""
    try:
        expires_s, version_s, mac = token.split(".", 2)
        expires, version = int(expires_s), int(version_s)
    except ValueError:
        raise error(
            403, "forbidden", "form_token: missing or malformed; open the page again"
        ) from None
    good = _mac(admin_key, actor, target, version, expires)
    if not hmac.compare_digest(good.encode(), mac.encode()):
        raise error(403, "forbidden", "form_token: not issued to you for this form")
    if (time.time() if now is None else now) > expires:
        raise error(403, "forbidden", "form_token: the form has expired; open the page again")
    return Signed(target, version)
