"""``/api/v1/actors`` (admin): API keys for vendors and operators.

``POST`` returns ``{"id", "key", "role"}`` (the key is then a Bearer token; it is shown only
here), optionally with ``"expires"`` (an ISO 8601 instant with offset) after which the key is
refused; ``GET`` lists the actors; ``DELETE /{id}`` revokes the key (every API process refuses
it within ``INTEROP_KEY_CACHE_SECONDS``).
"""

from __future__ import annotations

import orjson
from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, ConfigDict, ValidationError
from starlette.responses import Response

from interop.access.actor import Actor
from interop.access.actors import (
    KeyResolver,
    actor_problems,
    create_key_actor,
    list_key_actors,
    parse_expiry,
    revoke_key_actor,
)
from interop.api.auth import require_admin
from interop.api.responses import json_response
from interop.fhir.outcome import FhirError, Issue, error

router = APIRouter(prefix="/api/v1/actors", tags=["access"])


class OrganizationIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    orgnr: str | None = None
    herid: str | None = None


class ActorIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    role: str
    organization: OrganizationIn = OrganizationIn()
    hpr: str | None = None
    name: str | None = None
    expires: str | None = None


def _key_resolver(request: Request) -> KeyResolver | None:
    for r in request.app.state.actor_resolvers:
        if isinstance(r, KeyResolver):
            return r
    return None


@router.post("", status_code=201)
async def create_actor(request: Request, admin: Actor = Depends(require_admin)) -> Response:
    try:
        body = ActorIn.model_validate(orjson.loads(await request.body()))
    except (ValidationError, orjson.JSONDecodeError) as exc:
        raise FhirError(422, [Issue("error", "invalid", f"actor: {exc}")]) from None
    org = body.organization
    problems = [
        Issue("error", "code-invalid" if where == "role" else "value", text, (where,))
        for text, where in actor_problems(body.role, org.orgnr, org.herid, body.hpr)
    ]

    def problem(text: str, where: str) -> None:
        problems.append(Issue("error", "value", text, (where,)))

    expires, expires_problem = parse_expiry(body.expires)
    if expires_problem:
        problem(expires_problem, "expires")
    if problems:
        raise FhirError(422, problems)
    actor_id, key = create_key_actor(
        request.app.state.services.store,
        admin,
        role=body.role,
        orgnr=org.orgnr,
        herid=org.herid,
        hpr=body.hpr,
        name=body.name,
        expires=expires,
    )
    out = {"id": actor_id, "key": key, "role": body.role}
    if body.expires is not None:
        out["expires"] = body.expires
    return json_response(out, 201)


@router.get("")
def list_actors(request: Request, admin: Actor = Depends(require_admin)) -> Response:
    return json_response(list_key_actors(request.app.state.services.engine))


@router.delete("/{actor_id}")
def revoke_actor(
    actor_id: str, request: Request, admin: Actor = Depends(require_admin)
) -> Response:
    if not revoke_key_actor(request.app.state.services.store, admin, actor_id):
        raise error(404, "not-found", f"actor {actor_id} is not known")
    resolver = _key_resolver(request)
    if resolver is not None:
        resolver.clear()  # this process at once; the others within key_cache_seconds
    return json_response({"id": actor_id, "revoked": True})
