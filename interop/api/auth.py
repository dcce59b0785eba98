"""Who is calling: the ``Authorization`` header → an :class:`Actor`.

* ``Authorization: Bearer <key>``: the admin key (setting ``INTEROP_ADMIN_KEY``) or an API key
  (vendors, operators; :class:`interop.access.actors.KeyResolver`);
* ``Authorization: Bearer <HelseID access token>`` for tokens that are not DPoP-bound, and
  ``Authorization: DPoP <HelseID access token>`` with a ``DPoP`` proof header for DPoP-bound ones
  (:class:`interop.access.helseid.HelseIdResolver`).

The resolvers registered on the app (``app.state.actor_resolvers``) are asked in turn; the
per-patient policy hooks in through :func:`require_actor`'s result.
"""

from __future__ import annotations

import hmac
import re
from dataclasses import dataclass
from typing import Protocol
from urllib.parse import parse_qs

from fastapi import Request
from starlette.concurrency import run_in_threadpool

from interop.access.actor import ADMIN, ROLES, Actor
from interop.fhir.outcome import error

__all__ = [
    "ADMIN",
    "ROLES",
    "Actor",
    "ActorResolver",
    "Credentials",
    "require_actor",
    "require_admin",
]

_LINK_PAGES = re.compile(r"^/api/v1/patients/[^/]+/(?:summary|plan/[^/]+/approval)$")
"""The pages a browser opens from a link, where ``?access_token=`` is accepted: the HTML
summary and the GP's plan approval page."""
_FORM_PAGES = re.compile(r"^/api/v1/patients/[^/]+/plan/[^/]+/approval$")
"""The form a page opened by link posts back to, with the token as the form field
``access_token`` (RFC 6750 §2.2) since a followed link sends no ``Authorization`` header."""


@dataclass(frozen=True, slots=True)
class Credentials:
    """What a request presents: the scheme (``bearer`` or ``dpop``), the token, and for DPoP the
    proof headers and the request's method and URL (``htm``/``htu``)."""

    scheme: str
    token: str
    method: str = "GET"
    url: str = ""
    """The request URL without query and fragment; scheme and host from ``INTEROP_BASE_URL``
    when it is set (behind a proxy), else from the request."""
    dpop_proofs: tuple[str, ...] = ()


class ActorResolver(Protocol):
    def resolve(self, credentials: Credentials) -> Actor | None:
        """The actor, None when the credentials are not of this resolver's kind, or a 401/403
        :class:`~interop.fhir.outcome.FhirError` when they are but are refused."""
        ...


def _challenge(request: Request, error_code: str | None = None) -> str:
    suffix = f', error="{error_code}"' if error_code else ""
    challenges = [f'Bearer realm="dho-interop"{suffix}']
    for resolver in getattr(request.app.state, "actor_resolvers", []):
        extra = getattr(resolver, "challenge", None)
        if extra is not None and (c := extra()):
            challenges.append(c)
    return ", ".join(challenges)


def _query_token_allowed(request: Request) -> bool:
    """``?access_token=`` (RFC 6750 §2.3) only where a browser follows a link: the HTML summary
    and the plan approval page. Anywhere else a token in the URL would end up in logs and
    browser history."""
    return (
        request.method == "GET"
        and "text/html" in request.headers.get("accept", "")
        and _LINK_PAGES.match(request.url.path) is not None
    )


def _request_url(request: Request) -> str:
    base = request.app.state.services.settings.base_url
    if base:
        return base.rstrip("/") + request.url.path
    url = request.url
    return f"{url.scheme}://{url.netloc}{url.path}"


def credentials(request: Request) -> Credentials:
    header = request.headers.get("authorization", "")
    if not header:
        query_token = request.query_params.get("access_token")
        if query_token and _query_token_allowed(request):
            return Credentials("bearer", query_token.strip(), request.method)
    scheme, _, token = header.partition(" ")
    scheme = scheme.lower()
    token = token.strip()
    if scheme not in ("bearer", "dpop") or not token:
        raise error(
            401,
            "login",
            "authentication required: send 'Authorization: Bearer <key>' "
            "(or 'Authorization: DPoP <HelseID token>' with a DPoP proof)",
            headers={"WWW-Authenticate": _challenge(request)},
        )
    if scheme == "bearer":
        return Credentials("bearer", token, request.method)
    proofs = tuple(v for k, v in request.headers.raw if k == b"dpop")
    return Credentials(
        "dpop",
        token,
        request.method,
        _request_url(request),
        tuple(p.decode("latin-1") for p in proofs),
    )


async def require_actor(request: Request) -> Actor:
    return await _resolve(request, credentials(request))


async def require_form_actor(request: Request) -> Actor:
    """:func:`require_actor`, or for a form posted back to a page opened by link (no
    ``Authorization`` header) the form field ``access_token`` (RFC 6750 §2.2). A token in the
    body is not ambient like a cookie: another site cannot post it in the user's name."""
    if (
        not request.headers.get("authorization")
        and request.method == "POST"
        and request.headers.get("content-type", "").startswith("application/x-www-form-urlencoded")
        and _FORM_PAGES.match(request.url.path) is not None
    ):
        form = parse_qs((await request.body()).decode("utf-8", "replace"))
        token = (form.get("access_token") or [""])[0].strip()
        if token:
            return await _resolve(request, Credentials("bearer", token, request.method))
    return await require_actor(request)


async def _resolve(request: Request, creds: Credentials) -> Actor:
    settings = request.app.state.services.settings
    if creds.scheme == "bearer" and hmac.compare_digest(
        creds.token.encode(), settings.admin_key.encode()
    ):
        return ADMIN
    for resolver in getattr(request.app.state, "actor_resolvers", []):
        if creds.scheme == "dpop":
            # a DPoP proof is recorded in the database (replay across processes): off the loop
            resolve_async = getattr(resolver, "resolve_async", None)
            if resolve_async is not None:
                actor = await resolve_async(creds)
            else:
                actor = await run_in_threadpool(resolver.resolve, creds)
        else:
            actor = resolver.resolve(creds)
        if actor is not None:
            return actor
    raise error(
        401,
        "login",
        "the bearer token is not known",
        headers={"WWW-Authenticate": _challenge(request, "invalid_token")},
    )


async def require_admin(request: Request) -> Actor:
    actor = await require_actor(request)
    if not actor.is_admin:
        raise error(403, "forbidden", f"this needs the admin role (you are {actor.role})")
    return actor
