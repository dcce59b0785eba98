"""Who is calling: ``Authorization: Bearer <key>`` → an :class:`Actor`.

The admin key (setting ``INTEROP_ADMIN_KEY``) may do everything. Other actors (GP, hospital,
municipal EPJ, follow-up centre, vendor) are resolved by :class:`ActorResolver`
implementations registered on the app; the per-patient policy hooks in through
:func:`require_actor`'s result.
"""

from __future__ import annotations

import hmac
from typing import Protocol

from fastapi import Request

from interop.access.actor import ADMIN, ROLES, Actor
from interop.fhir.outcome import error

__all__ = ["ADMIN", "ROLES", "Actor", "ActorResolver", "require_actor", "require_admin"]


class ActorResolver(Protocol):
    def resolve(self, token: str) -> Actor | None: ...


def bearer_token(request: Request) -> str:
    header = request.headers.get("authorization", "")
    if not header and request.method == "GET" and request.query_params.get("access_token"):
        # RFC 6750 §2.3: lets a browser open a link to a summary page; prefer the header
        return request.query_params["access_token"].strip()
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise error(
            401,
            "login",
            "authentication required: send 'Authorization: Bearer <key>'",
            headers={"WWW-Authenticate": 'Bearer realm="dho-interop"'},
        )
    return token.strip()


async def require_actor(request: Request) -> Actor:
    token = bearer_token(request)
    settings = request.app.state.services.settings
    if hmac.compare_digest(token.encode(), settings.admin_key.encode()):
        return ADMIN
    for resolver in getattr(request.app.state, "actor_resolvers", []):
        actor = resolver.resolve(token)
        if actor is not None:
            return actor
    raise error(
        401,
        "login",
        "the bearer token is not known",
        headers={"WWW-Authenticate": 'Bearer realm="dho-interop", error="invalid_token"'},
    )


async def require_admin(request: Request) -> Actor:
    actor = await require_actor(request)
    if not actor.is_admin:
        raise error(403, "forbidden", f"this needs the admin role (you are {actor.role})")
    return actor
