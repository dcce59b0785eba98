"""``/api/v1/actors`` (admin): API keys for vendors and operators.

``POST`` returns ``{"id", "key", "role"}`` (the key is then a Bearer token; it is shown only
here), optionally with ``"expires"`` (an ISO 8601 instant with offset) after which the key is
refused; ``GET`` lists the actors; ``DELETE /{id}`` revokes the key (every API process refuses
it within ``INTEROP_KEY_CACHE_SECONDS``).
"""

from __future__ import annotations

from datetime import datetime

import orjson
from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, ConfigDict, ValidationError
from starlette.responses import Response

from interop.access.actor import ROLES, Actor
from interop.access.actors import (
    KeyResolver,
    create_key_actor,
    list_key_actors,
    revoke_key_actor,
)
from interop.api.auth import require_admin
from interop.api.responses import json_response
from interop.fhir.dates import now_utc
from interop.fhir.outcome import FhirError, Issue, error
from interop.identifiers import validate_herid, validate_hpr, validate_orgnr

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


def _expires(text: str | None) -> tuple[datetime | None, str | None]:
    """The parsed expiry, or the problem with it."""
    if text is None:
        return None, None
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        return None, f"expires {text!r} is not an ISO 8601 instant (e.g. 2027-01-31T23:59:59Z)"
    if value.tzinfo is None:
        return None, f"expires {text!r} needs a UTC offset or 'Z'"
    if value <= now_utc():
        return None, f"expires {text!r} is in the past"
    return value, None


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
    if body.role not in ROLES:
        raise error(
            422,
            "code-invalid",
            f"role {body.role!r}: use one of {', '.join(ROLES)}",
            expression=["role"],
        )
    org = body.organization
    problems: list[Issue] = []

    def problem(text: str, where: str) -> None:
        problems.append(Issue("error", "value", text, (where,)))

    if org.orgnr is not None and not validate_orgnr(org.orgnr):
        problem(f"organization.orgnr {org.orgnr!r} fails the mod-11 check", "organization.orgnr")
    if org.herid is not None and not validate_herid(org.herid):
        problem(f"organization.herid {org.herid!r} is not a HER-id", "organization.herid")
    if body.hpr is not None and not validate_hpr(body.hpr):
        problem(f"hpr {body.hpr!r} is not an HPR number", "hpr")
    if body.role == "gp" and not (body.hpr or org.orgnr or org.herid):
        problem("a gp actor needs an HPR number or its practice's org.nr/HER-id", "hpr")
    expires, expires_problem = _expires(body.expires)
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
