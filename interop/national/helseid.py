"""HelseID client credentials with ``private_key_jwt`` and DPoP, for every call we make to NHN.

* Token request: ``POST {authority}/connect/token`` with a fresh client assertion (single use,
  ``exp`` 30 s after ``iat``, ``aud`` = the HelseID issuer) and a fresh DPoP proof for that URL.
  HelseID answers the first request 400 ``use_dpop_nonce`` with a ``DPoP-Nonce`` header; the
  request is repeated once with a new assertion and a proof carrying the nonce. The latest nonce
  per server is kept for the next requests.
* The token (``token_type`` ``DPoP``) is bound to our key (``cnf.jkt``) and cached per API until
  ``refresh_margin`` seconds before it expires.
* Every API call gets ``Authorization: DPoP <token>`` and a new proof (``htm``, ``htu`` without
  query, ``ath``, unique ``jti``) — :class:`DpopAuth`, an ``httpx.Auth``. A resource server that
  asks for its own nonce (401 ``use_dpop_nonce``) gets one retry with it; a token refused as
  invalid (401 ``invalid_token``) is fetched anew once.
* An API configured with ``token_type: Bearer`` (the older careplan service, whose pages ask for
  a plain bearer token) gets a token requested without a DPoP proof and ``Authorization: Bearer``
  — :class:`BearerAuth`; HelseID must then answer ``token_type`` ``Bearer``.

Nothing here logs a key, an assertion or a token.
"""

from __future__ import annotations

import base64
import hashlib
import threading
import time
import uuid
from collections.abc import Callable, Generator
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import httpx

from interop.access.helseid.dpop import normalise_htu
from interop.national.tenants import Api, Tenant, Tenants

ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
ASSERTION_LIFETIME = 30
"""seconds; HelseID accepts at most 60"""


class HelseIdError(Exception):
    """HelseID refused to issue a token (the message carries HelseID's error, never secrets)."""

    def __init__(self, message: str, *, transient: bool = False) -> None:
        super().__init__(message)
        self.transient = transient


@dataclass(frozen=True)
class AccessToken:
    value: str
    expires_at: float
    scope: str

    def __repr__(self) -> str:  # never print the token
        return f"AccessToken(expires_at={self.expires_at:.0f}, scope={self.scope!r})"


def _origin(url: str) -> str:
    p = urlsplit(url)
    return f"{p.scheme.lower()}://{(p.netloc or '').lower()}"


def _ath(token: str) -> str:
    return base64.urlsafe_b64encode(hashlib.sha256(token.encode()).digest()).rstrip(b"=").decode()


def _dpop_error(response: httpx.Response) -> str | None:
    """The DPoP/OAuth error code of a 400 (token endpoint) or 401 (resource server)."""
    if response.status_code == 401:
        www = response.headers.get("www-authenticate", "")
        for code in ("use_dpop_nonce", "invalid_token", "invalid_dpop_proof"):
            if code in www:
                return code
        return None
    if response.status_code == 400:
        try:
            body = response.json()
        except ValueError:
            return None
        return str(body.get("error")) if isinstance(body, dict) else None
    return None


class HelseIdClient:
    """One tenant's HelseID client (its key signs both the assertion and the DPoP proofs)."""

    def __init__(
        self,
        config: Tenants,
        tenant: Tenant,
        *,
        http: httpx.Client | None = None,
        refresh_margin: float = 30.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.config = config
        self.tenant = tenant
        self.http = http or httpx.Client(timeout=30.0)
        self.refresh_margin = refresh_margin
        self.clock = clock
        self._tokens: dict[str, AccessToken] = {}
        self._nonces: dict[str, str] = {}
        self._lock = threading.Lock()
        self.token_requests = 0
        """how many times HelseID was asked (for tests and metrics)"""

    # ---- signing ----------------------------------------------------------------------
    def client_assertion(self) -> str:
        now = int(self.clock())
        payload: dict[str, Any] = {
            "iss": self.tenant.client_id,
            "sub": self.tenant.client_id,
            "aud": self.config.authority,
            "iat": now,
            "nbf": now,
            "exp": now + ASSERTION_LIFETIME,
            "jti": uuid.uuid4().hex,
        }
        details = self.tenant.authorization_details()
        if details is not None:
            payload["authorization_details"] = details
        key = self.tenant.key
        return key.sign(payload, {"kid": key.kid, "typ": self.config.assertion_typ})

    def proof(self, method: str, url: str, *, token: str | None = None) -> str:
        """A fresh DPoP proof for one request (with the server's latest nonce, if any)."""
        payload: dict[str, Any] = {
            "jti": uuid.uuid4().hex,
            "htm": method.upper(),
            "htu": normalise_htu(url),
            "iat": int(self.clock()),
        }
        nonce = self._nonces.get(_origin(url))
        if nonce:
            payload["nonce"] = nonce
        if token is not None:
            payload["ath"] = _ath(token)
        key = self.tenant.key
        return key.sign(payload, {"typ": "dpop+jwt", "jwk": key.public})

    def remember_nonce(self, url: str, response: httpx.Response) -> bool:
        nonce = response.headers.get("dpop-nonce")
        if nonce and self._nonces.get(_origin(url)) != nonce:
            self._nonces[_origin(url)] = nonce
            return True
        return bool(nonce)

    # ---- tokens -----------------------------------------------------------------------
    def token(self, api: str | Api) -> AccessToken:
        """The API's access token (DPoP-bound unless the API is configured ``Bearer``), from
        the cache while it has time left."""
        spec = api if isinstance(api, Api) else self.config.api(api)
        cached = self._tokens.get(spec.name)
        if cached is not None and cached.expires_at - self.refresh_margin > self.clock():
            return cached
        with self._lock:
            cached = self._tokens.get(spec.name)
            if cached is not None and cached.expires_at - self.refresh_margin > self.clock():
                return cached
            token = self._request_token(spec)
            self._tokens[spec.name] = token
            return token

    def forget(self, api: str) -> None:
        self._tokens.pop(api, None)

    def _request_token(self, api: Api) -> AccessToken:
        url = self.config.token_url
        dpop = api.token_type == "DPoP"
        response: httpx.Response | None = None
        for _ in range(2):
            form = {
                "grant_type": "client_credentials",
                "client_id": self.tenant.client_id,
                "client_assertion_type": ASSERTION_TYPE,
                "client_assertion": self.client_assertion(),
                "scope": api.scope,
                "resource": api.resource,
            }
            self.token_requests += 1
            try:
                headers = {"DPoP": self.proof("POST", url)} if dpop else {}
                response = self.http.post(url, data=form, headers=headers)
            except httpx.HTTPError as exc:
                raise HelseIdError(
                    f"HelseID {url}: {type(exc).__name__}: {exc}", transient=True
                ) from exc
            if (
                dpop
                and _dpop_error(response) == "use_dpop_nonce"
                and self.remember_nonce(url, response)
            ):
                continue
            break
        assert response is not None
        self.remember_nonce(url, response)
        if response.status_code != 200:
            try:
                body = response.json()
                why = f"{body.get('error')}: {body.get('error_description', '')}".strip(": ")
            except ValueError:
                why = response.text[:200]
            raise HelseIdError(
                f"HelseID refused a token for {api.name} ({api.resource}) to tenant "
                f"{self.tenant.name}: HTTP {response.status_code} {why}",
                transient=response.status_code >= 500 or response.status_code == 429,
            )
        body = response.json()
        if str(body.get("token_type", "")).lower() != api.token_type.lower():
            raise HelseIdError(
                f"HelseID issued a {body.get('token_type')!r} token for {api.name}, not the "
                f"{api.token_type} token configured"
            )
        return AccessToken(
            str(body["access_token"]),
            self.clock() + float(body.get("expires_in", 60)),
            str(body.get("scope", api.scope)),
        )

    def auth(self, api: str) -> httpx.Auth:
        """``Authorization`` for every call to the API: DPoP (with proofs) or Bearer, as the
        API is configured."""
        if self.config.api(api).token_type == "Bearer":
            return BearerAuth(self, api)
        return DpopAuth(self, api)


class DpopAuth(httpx.Auth):
    """``Authorization: DPoP …`` and a fresh ``DPoP`` proof on every request to one API."""

    def __init__(self, client: HelseIdClient, api: str) -> None:
        self.client = client
        self.api = api

    def _sign(self, request: httpx.Request) -> None:
        token = self.client.token(self.api).value
        request.headers["Authorization"] = f"DPoP {token}"
        request.headers["DPoP"] = self.client.proof(request.method, str(request.url), token=token)

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        self._sign(request)
        response = yield request
        # a resource server speaks through 401 + WWW-Authenticate (the body is not read here)
        error = _dpop_error(response) if response.status_code == 401 else None
        if error == "use_dpop_nonce" and self.client.remember_nonce(str(request.url), response):
            self._sign(request)
            yield request
        elif error == "invalid_token":
            self.client.forget(self.api)
            self._sign(request)
            yield request
        else:
            self.client.remember_nonce(str(request.url), response)


class BearerAuth(httpx.Auth):
    """``Authorization: Bearer …`` for an API configured ``token_type: Bearer`` (no proof); a
    token refused as invalid (401 ``invalid_token``) is fetched anew once."""

    def __init__(self, client: HelseIdClient, api: str) -> None:
        self.client = client
        self.api = api

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        request.headers["Authorization"] = f"Bearer {self.client.token(self.api).value}"
        response = yield request
        if response.status_code == 401 and _dpop_error(response) == "invalid_token":
            self.client.forget(self.api)
            request.headers["Authorization"] = f"Bearer {self.client.token(self.api).value}"
            yield request


class HelseIdClients:
    """The tenants' clients, made on first use and shared (their token caches with them)."""

    def __init__(self, config: Tenants, http: httpx.Client | None = None) -> None:
        self.config = config
        self.http = http or httpx.Client(timeout=30.0)
        self._clients: dict[str, HelseIdClient] = {}
        self._lock = threading.Lock()

    def for_tenant(self, tenant: Tenant) -> HelseIdClient:
        with self._lock:
            client = self._clients.get(tenant.name)
            if client is None:
                client = self._clients[tenant.name] = HelseIdClient(
                    self.config, tenant, http=self.http
                )
            return client

    def for_her_ids(self, her_ids: list[str] | tuple[str, ...]) -> HelseIdClient | None:
        tenant = self.config.for_her_ids(her_ids) or self.config.only()
        return self.for_tenant(tenant) if tenant is not None else None
