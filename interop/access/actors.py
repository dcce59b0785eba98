"""API keys: actors (vendors, operators) that authenticate with a Bearer key.

Only a SHA-256 hash of a key is stored; the key is shown once, when it is made. A key can be
revoked, and can carry an expiry. Each API process caches what it looked up about a key for
``key_cache_seconds`` (setting, at most a few seconds), so a key revoked through one process is
refused by all of them soon after; the cache holds at most ``key_cache_max_entries`` keys,
known and unknown, so made-up keys cannot grow it without bound. The HTTP routes are in
:mod:`interop.api.actors`.
"""

from __future__ import annotations

import hashlib
import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import Engine, select, update

from interop.access.actor import ROLES, Actor
from interop.access.audit import audit_log, build_event
from interop.access.audit.log import AUDIT_WRITE
from interop.fhir.dates import format_instant, from_micros, now_utc, to_micros
from interop.fhir.outcome import error
from interop.identifiers import validate_herid, validate_hpr, validate_orgnr
from interop.store.repository import FhirStore, new_id
from interop.store.schema import actor_table

if TYPE_CHECKING:
    from interop.api.auth import Credentials
    from interop.config import Settings


def key_hash(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class _Looked:
    """What one look-up of a key found."""

    at: float
    """``time.monotonic()`` of the look-up."""
    actor: Actor | None
    """None: no such key."""
    revoked: bool = False
    expires: int | None = None
    """µs since the epoch."""


def _refused(message: str) -> Exception:
    return error(
        401,
        "login",
        message,
        headers={"WWW-Authenticate": 'Bearer realm="dho-interop", error="invalid_token"'},
    )


class KeyResolver:
    """Resolves Bearer API keys to actors, with a short-lived, bounded in-process cache."""

    def __init__(self, engine: Callable[[], Engine], settings: Callable[[], Settings]) -> None:
        self._engine = engine
        self._settings = settings
        self._cache: OrderedDict[str, _Looked] = OrderedDict()
        self._lock = threading.Lock()

    @property
    def cached(self) -> int:
        """How many keys the cache holds now."""
        return len(self._cache)

    def clear(self) -> None:
        with self._lock:
            self._cache.clear()

    def resolve(self, credentials: Credentials) -> Actor | None:
        if credentials.scheme != "bearer" or credentials.token.count(".") == 2:
            return None  # API keys have no dots; a JWT is for the HelseID resolver
        settings = self._settings()
        h = key_hash(credentials.token)
        now = time.monotonic()
        with self._lock:
            looked = self._cache.get(h)
        if looked is None or now - looked.at >= settings.key_cache_seconds:
            looked = self._look_up(h, now)
            with self._lock:
                self._cache[h] = looked
                self._cache.move_to_end(h)
                while len(self._cache) > max(settings.key_cache_max_entries, 1):
                    self._cache.popitem(last=False)
        if looked.actor is None:
            return None
        if looked.revoked:
            raise _refused("this API key has been revoked")
        if looked.expires is not None and looked.expires <= to_micros(now_utc()):
            raise _refused(
                f"this API key expired at {format_instant(from_micros(looked.expires))}; "
                "ask the operator for a new key"
            )
        return looked.actor

    def _look_up(self, h: str, now: float) -> _Looked:
        with self._engine().connect() as conn:
            row = conn.execute(select(actor_table).where(actor_table.c.key_hash == h)).first()
        if row is None:
            return _Looked(now, None)
        actor = Actor(
            id=row.id,
            role=row.role,
            orgnr=row.orgnr,
            herid=row.herid,
            hpr=row.hpr,
            name=row.name,
        )
        return _Looked(now, actor, bool(row.revoked), row.expires)


# ---- the actor table ---------------------------------------------------------------------


def parse_expiry(text: str | None) -> tuple[datetime | None, str | None]:
    """An API key's expiry (ISO 8601 with an offset), or the problem with it."""
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


def actor_problems(
    role: str, orgnr: str | None, herid: str | None, hpr: str | None
) -> list[tuple[str, str]]:
    """What is wrong with a new actor's identifiers, as (message, element); the API and the
    command line ask the same."""
    problems: list[tuple[str, str]] = []
    if role not in ROLES:
        problems.append((f"role {role!r}: use one of {', '.join(ROLES)}", "role"))
    if orgnr is not None and not validate_orgnr(orgnr):
        problems.append(
            (f"organization.orgnr {orgnr!r} fails the mod-11 check", "organization.orgnr")
        )
    if herid is not None and not validate_herid(herid):
        problems.append((f"organization.herid {herid!r} is not a HER-id", "organization.herid"))
    if hpr is not None and not validate_hpr(hpr):
        problems.append((f"hpr {hpr!r} is not an HPR number", "hpr"))
    if role == "gp" and not (hpr or orgnr or herid):
        problems.append(("a gp actor needs an HPR number or its practice's org.nr/HER-id", "hpr"))
    return problems


def create_key_actor(
    store: FhirStore,
    by: Actor,
    *,
    role: str,
    orgnr: str | None = None,
    herid: str | None = None,
    hpr: str | None = None,
    name: str | None = None,
    expires: datetime | None = None,
) -> tuple[str, str]:
    """A new actor with a new API key: ``(id, key)``, made by ``by``. Only the key's hash is
    stored; the actor and its audit event commit together."""
    key = secrets.token_urlsafe(32)
    actor_id = new_id()
    described = f"API actor {actor_id}: role {role}" + "".join(
        f", {label} {value}"
        for label, value in (("HPR", hpr), ("org.nr", orgnr), ("HER-id", herid))
        if value
    )
    with store.write(AUDIT_WRITE) as tx:
        audit_log(store).append(tx, build_event(by, "create", described))
        tx.conn.execute(
            actor_table.insert().values(
                id=actor_id,
                key_hash=key_hash(key),
                role=role,
                orgnr=orgnr,
                herid=herid,
                hpr=hpr,
                name=name,
                created=to_micros(now_utc()),
                revoked=False,
                expires=to_micros(expires) if expires is not None else None,
            )
        )
    return actor_id, key


def list_key_actors(engine: Engine) -> list[dict[str, Any]]:
    with engine.connect() as conn:
        rows = conn.execute(select(actor_table).order_by(actor_table.c.created)).all()
    return [
        {
            "id": r.id,
            "role": r.role,
            "organization": {"orgnr": r.orgnr, "herid": r.herid},
            "hpr": r.hpr,
            "revoked": r.revoked,
            "expires": format_instant(from_micros(r.expires)) if r.expires is not None else None,
        }
        for r in rows
    ]


def revoke_key_actor(store: FhirStore, by: Actor, actor_id: str) -> bool:
    """Revoke an actor's key (audited in the same transaction); False when there is no such
    actor."""
    with store.write(AUDIT_WRITE) as tx:
        result = tx.conn.execute(
            update(actor_table).where(actor_table.c.id == actor_id).values(revoked=True)
        )
        if not result.rowcount:
            return False
        audit_log(store).append(tx, build_event(by, "delete", f"API actor {actor_id}: key revoked"))
    return True
