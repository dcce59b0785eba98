"""Actors and their API keys: ``POST /api/v1/actors`` (admin) returns ``{"id", "key"}``; the
key is then a Bearer token. Only a SHA-256 hash of the key is stored."""

from __future__ import annotations

import hashlib
import secrets
import threading
from collections.abc import Callable
from typing import Any

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, ConfigDict, ValidationError
from sqlalchemy import Engine, select, update
from starlette.responses import Response

from interop.access.actor import ROLES, Actor
from interop.access.audit import audit_log, build_event
from interop.access.audit.log import AUDIT_WRITE
from interop.api.auth import require_admin
from interop.api.responses import json_response
from interop.fhir.dates import now_utc, to_micros
from interop.fhir.outcome import FhirError, Issue, error
from interop.identifiers import validate_herid, validate_hpr, validate_orgnr
from interop.store.repository import new_id
from interop.store.schema import actor_table

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


def _hash(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


class KeyResolver:
    """Resolves Bearer API keys to actors (a small in-process cache; revocation clears it)."""

    def __init__(self, engine: Callable[[], Engine]) -> None:
        self._engine = engine
        self._cache: dict[str, Actor | None] = {}
        self._lock = threading.Lock()

    def clear(self) -> None:
        with self._lock:
            self._cache.clear()

    def resolve(self, token: str) -> Actor | None:
        h = _hash(token)
        with self._lock:
            if h in self._cache:
                return self._cache[h]
        with self._engine().connect() as conn:
            row = conn.execute(select(actor_table).where(actor_table.c.key_hash == h)).first()
        actor = None
        if row is not None and not row.revoked:
            actor = Actor(
                id=row.id,
                role=row.role,
                orgnr=row.orgnr,
                herid=row.herid,
                hpr=row.hpr,
                name=row.name,
            )
        with self._lock:
            self._cache[h] = actor
        return actor


def _resolver(request: Request) -> KeyResolver:
    for r in request.app.state.actor_resolvers:
        if isinstance(r, KeyResolver):
            return r
    raise RuntimeError("no KeyResolver registered")


@router.post("", status_code=201)
async def create_actor(request: Request, admin: Actor = Depends(require_admin)) -> Response:
    import orjson

    try:
        body = ActorIn.model_validate(orjson.loads(await request.body()))
    except (ValidationError, orjson.JSONDecodeError) as exc:
        raise FhirError(422, [Issue("error", "invalid", f"actor: {exc}")]) from None
    if body.role not in ROLES:
        raise error(422, "code-invalid", f"role {body.role!r}: use one of {', '.join(ROLES)}")
    org = body.organization
    problems = []
    if org.orgnr is not None and not validate_orgnr(org.orgnr):
        problems.append(f"organization.orgnr {org.orgnr!r} fails the mod-11 check")
    if org.herid is not None and not validate_herid(org.herid):
        problems.append(f"organization.herid {org.herid!r} is not a HER-id")
    if body.hpr is not None and not validate_hpr(body.hpr):
        problems.append(f"hpr {body.hpr!r} is not an HPR number")
    if body.role == "gp" and not (body.hpr or org.orgnr or org.herid):
        problems.append("a gp actor needs an HPR number or its practice's org.nr/HER-id")
    if problems:
        raise FhirError(422, [Issue("error", "value", p) for p in problems])
    key = secrets.token_urlsafe(32)
    actor_id = new_id()
    store = request.app.state.services.store
    described = f"API actor {actor_id}: role {body.role}" + "".join(
        f", {label} {value}"
        for label, value in (("HPR", body.hpr), ("org.nr", org.orgnr), ("HER-id", org.herid))
        if value
    )
    with store.write(AUDIT_WRITE) as tx:  # the actor and its audit event commit together
        audit_log(store).append(tx, build_event(admin, "create", described))
        tx.conn.execute(
            actor_table.insert().values(
                id=actor_id,
                key_hash=_hash(key),
                role=body.role,
                orgnr=org.orgnr,
                herid=org.herid,
                hpr=body.hpr,
                name=body.name,
                created=to_micros(now_utc()),
                revoked=False,
            )
        )
    return json_response({"id": actor_id, "key": key, "role": body.role}, 201)


@router.get("")
def list_actors(request: Request, admin: Actor = Depends(require_admin)) -> Response:
    with request.app.state.services.engine.connect() as conn:
        rows = conn.execute(select(actor_table).order_by(actor_table.c.created)).all()
    out: list[dict[str, Any]] = [
        {
            "id": r.id,
            "role": r.role,
            "organization": {"orgnr": r.orgnr, "herid": r.herid},
            "hpr": r.hpr,
            "revoked": r.revoked,
        }
        for r in rows
    ]
    return json_response(out)


@router.delete("/{actor_id}")
def revoke_actor(
    actor_id: str, request: Request, admin: Actor = Depends(require_admin)
) -> Response:
    store = request.app.state.services.store
    with store.write(AUDIT_WRITE) as tx:  # the revocation and its audit event commit together
        result = tx.conn.execute(
            update(actor_table).where(actor_table.c.id == actor_id).values(revoked=True)
        )
        if not result.rowcount:
            raise error(404, "not-found", f"actor {actor_id} is not known")
        audit_log(store).append(
            tx, build_event(admin, "delete", f"API actor {actor_id}: key revoked")
        )
    _resolver(request).clear()
    return json_response({"id": actor_id, "revoked": True})


class JwtResolver:
    """Signed JWTs (HS256 with ``INTEROP_JWT_SECRET``) carrying the actor's claims: ``sub``,
    ``role``, ``orgnr``, ``herid``, ``hpr``, ``purpose_of_use``, and ``exp``."""

    def __init__(self, secret: Callable[[], str | None]) -> None:
        self._secret = secret

    def resolve(self, token: str) -> Actor | None:
        secret = self._secret()
        if not secret or token.count(".") != 2:
            return None
        import jwt

        try:
            claims = jwt.decode(
                token, secret, algorithms=["HS256"], options={"require": ["exp", "sub", "role"]}
            )
        except jwt.ExpiredSignatureError:
            raise error(401, "login", "the token has expired") from None
        except jwt.InvalidTokenError as exc:
            raise error(401, "login", f"the token is not valid: {exc}") from None
        role = str(claims["role"])
        if role not in ROLES:
            raise error(401, "login", f"the token's role {role!r} is not known")
        return Actor(
            id=str(claims["sub"]),
            role=role,
            orgnr=claims.get("orgnr"),
            herid=claims.get("herid"),
            hpr=claims.get("hpr"),
            purpose=claims.get("purpose_of_use"),
            name=claims.get("name"),
        )
