"""HelseID access-token claims → the :class:`Actor` a request acts as.

* A **user token** (a logged-in health worker: it carries ``hpr_number`` or ``pid``) acts with
  that person's HPR number and name; its ``security_level`` must be at least the configured
  minimum (string or number in the token).
* A **system token** acts for its organisation: ``orgnr_child`` if present, else
  ``orgnr_parent``.
* The role and HER-id come from the deployer's client map (:mod:`.clients`); a client or
  organisation not in it is refused.
* The Tillitsrammeverk attest (``authorization_details`` as an object or a list, or a claim
  ``nhn:tillitsrammeverk:parameters``; either may arrive as a JSON string) gives the purpose of
  use, the care relationship's health service, the point of care and the caller's decision
  reference. It is read defensively: members of unexpected shapes are ignored.
"""

from __future__ import annotations

import json
from typing import Any

from interop.access.actor import Actor
from interop.access.helseid.clients import ClientMap
from interop.access.helseid.errors import (
    insufficient_user_authentication,
    invalid_token,
    not_served,
)

CLIENT_ID = "client_id"
CLIENT_NAME = "helseid://claims/client/client_name"
ORGNR_PARENT = "helseid://claims/client/claims/orgnr_parent"
ORGNR_CHILD = "helseid://claims/client/claims/orgnr_child"
HPR_NUMBER = "helseid://claims/hpr/hpr_number"
PID = "helseid://claims/identity/pid"
SECURITY_LEVEL = "helseid://claims/identity/security_level"
ATTEST_TYPE = "nhn:tillitsrammeverk:parameters"
"""The Tillitsrammeverk attest's type, and the claim name some consumers read it from."""

_MAX_CODE = 64


def _text(value: Any) -> str | None:
    """A short string claim (numbers as text); anything else is treated as missing."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | str):
        text = str(value).strip()
        return text if text and len(text) <= _MAX_CODE else None
    return None


def _json(value: Any) -> Any:
    if isinstance(value, str) and value.lstrip()[:1] in ("{", "["):
        try:
            return json.loads(value)
        except ValueError:
            return None
    return value


def _member(obj: Any, *path: str) -> Any:
    for name in path:
        if not isinstance(obj, dict):
            return None
        obj = obj.get(name)
    return obj


def attest(claims: dict[str, Any]) -> dict[str, Any] | None:
    """The Tillitsrammeverk attest in the token, if any."""
    candidates: list[Any] = []
    details = _json(claims.get("authorization_details"))
    candidates += details if isinstance(details, list) else [details]
    named = _json(claims.get(ATTEST_TYPE))
    for item in candidates:
        item = _json(item)
        if isinstance(item, dict) and item.get("type") == ATTEST_TYPE:
            return item
    return named if isinstance(named, dict) else None


def security_level(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().isdigit():
        return int(value.strip())
    return None


def actor_from_claims(
    claims: dict[str, Any], clients: ClientMap, *, min_security_level: int, scheme: str
) -> Actor:
    client_id = _text(claims.get(CLIENT_ID))
    parent = _text(claims.get(ORGNR_PARENT))
    child = _text(claims.get(ORGNR_CHILD))
    entry = clients.find(client_id, parent, child)
    if entry is None:
        raise not_served(
            f"HelseID client {client_id or '(none)'} for org.nr {child or parent or '(none)'} "
            "is not given a role here (see the HelseID client map)"
        )
    hpr = _text(claims.get(HPR_NUMBER))
    pid = _text(claims.get(PID))
    user = hpr is not None or pid is not None
    level = security_level(claims.get(SECURITY_LEVEL))
    if user:
        if level is None:
            raise invalid_token("a user token must carry the user's security_level", scheme)
        if level < min_security_level:
            raise insufficient_user_authentication(
                f"the user logged in with security level {level}; this API needs at least "
                f"{min_security_level}",
                scheme,
            )
    a = attest(claims) or {}
    sub = _text(claims.get("sub"))
    if user:
        actor_id = f"helseid:{client_id}:{'hpr:' + hpr if hpr else 'sub:' + (sub or '-')}"
        name = _text_long(claims.get("name"))
    else:
        actor_id = f"helseid:{client_id}"
        name = entry.name or _text_long(claims.get(CLIENT_NAME))
    return Actor(
        id=actor_id,
        role=entry.role,
        orgnr=child or parent,
        herid=entry.herid,
        hpr=hpr,
        name=name,
        source="helseid",
        client_id=client_id,
        security_level=level if user else None,
        pid=pid,
        purpose=_text(_member(a, "care_relationship", "purpose_of_use", "code")),
        healthcare_service=_text(_member(a, "care_relationship", "healthcare_service", "code")),
        point_of_care=_text(_member(a, "practitioner", "point_of_care", "id")),
        decision_ref=_text(_member(a, "care_relationship", "decision_ref", "id")),
    )


def _text_long(value: Any) -> str | None:
    return value.strip()[:200] or None if isinstance(value, str) else None
