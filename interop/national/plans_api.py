"""A client for NHN's *Pasientens planer* API (2026, v0.4.0): a patient's plan with clinical
zones (green/yellow/red as text), a plan version for optimistic concurrency and a history.

What the sources give (``shared/standards/nhn/pasientens-planer/README.md``): JSON with
snake_case fields; create (no ``version``), update (``version`` required: 409 when it is not the
server's, 422 when missing), search (``patient`` mandatory), get, ``{plan}/{id}/history`` and
``{plan}/{id}/version/{n}``. What they do not give is a setting: the base URL, the path of the
plan collection (``INTEROP_NHN_PLANS_PATH``, default ``/plan``), the update method (PUT) and
whether HelseID + DPoP is used (the development environment has none).
"""

from __future__ import annotations

from typing import Any

import httpx

from interop.national.helseid import HelseIdClients, HelseIdError


class PlansApiError(Exception):
    def __init__(self, message: str, *, status: int | None = None, transient: bool = False):
        super().__init__(message)
        self.status = status
        self.transient = transient


class PlanVersionConflict(PlansApiError):
    """409: the ``version`` sent is not the server's current version."""


def clinical(content: dict[str, Any] | None) -> dict[str, Any]:
    """The comparable part of a clinical content (title, description, zones); the response's own
    content ``version`` is left out."""
    content = content or {}
    return {
        "title": content.get("title") or "",
        "description": content.get("description") or "",
        "zones": [
            {k: str(z.get(k) or "") for k in ("level", "condition", "action")}
            for z in content.get("zones") or []
        ],
    }


def subject_number(plan: dict[str, Any]) -> str:
    """The person number of a plan's ``subject`` (its inner structure is not published: ours is
    ``{system, value}``; ``id``, ``nin`` and a nested ``identifier`` are read too). Empty when
    none is found, which never matches a patient."""
    s = plan.get("subject") or {}
    if not isinstance(s, dict):
        return ""
    ident = s.get("identifier")
    ident = ident if isinstance(ident, dict) else {}
    return str(s.get("value") or s.get("id") or s.get("nin") or ident.get("value") or "")


class PlansApiClient:
    def __init__(
        self,
        base_url: str,
        *,
        http: httpx.Client,
        auth: httpx.Auth | None = None,
        path: str = "/plan",
    ) -> None:
        self.base = base_url.rstrip("/") + "/" + path.strip("/")
        self.http = http
        self.auth = auth

    def _call(self, method: str, url: str, **kw: Any) -> Any:
        try:
            r = self.http.request(
                method,
                url,
                headers={"Accept": "application/json"},
                auth=self.auth if self.auth is not None else httpx.USE_CLIENT_DEFAULT,
                **kw,
            )
        except HelseIdError as exc:
            raise PlansApiError(str(exc), transient=exc.transient) from exc
        except httpx.HTTPError as exc:
            raise PlansApiError(f"{url}: {type(exc).__name__}: {exc}", transient=True) from exc
        if r.status_code == 409:
            raise PlanVersionConflict(f"{url}: 409 {r.text[:300]}", status=409)
        if not 200 <= r.status_code < 300:
            transient = r.status_code in (408, 425, 429) or r.status_code >= 500
            raise PlansApiError(
                f"{method} {url}: HTTP {r.status_code}: {r.text[:300]}",
                status=r.status_code,
                transient=transient,
            )
        try:
            return r.json()
        except ValueError:
            raise PlansApiError(f"{url}: the answer is not JSON", status=r.status_code) from None

    def create(self, body: dict[str, Any]) -> dict[str, Any]:
        if "version" in body:
            raise ValueError("a create request carries no version (NHN v0.2.0)")
        return dict(self._call("POST", self.base, json=body))

    def update(self, plan_id: str, body: dict[str, Any]) -> dict[str, Any]:
        if not isinstance(body.get("version"), int):
            raise ValueError("an update names the version it changes")
        return dict(self._call("PUT", f"{self.base}/{plan_id}", json=body))

    def get(self, plan_id: str) -> dict[str, Any]:
        return dict(self._call("GET", f"{self.base}/{plan_id}"))

    def get_version(self, plan_id: str, version: int) -> dict[str, Any]:
        return dict(self._call("GET", f"{self.base}/{plan_id}/version/{version}"))

    def history(self, plan_id: str) -> list[dict[str, Any]]:
        return list(self._call("GET", f"{self.base}/{plan_id}/history"))

    def search(self, patient: str) -> list[dict[str, Any]]:
        """The patient's plans (``patient``: fødselsnummer or D-nummer)."""
        found = self._call("GET", self.base, params={"patient": patient})
        if isinstance(found, dict):  # a wrapped list, if the server wraps it
            found = found.get("items") or found.get("plans") or found.get("results") or []
        return list(found)


def plans_auth(
    helseid: HelseIdClients | None, *, use_helseid: bool, tenant: str | None
) -> httpx.Auth | None:
    """HelseID + DPoP for API ``plans`` (the tenant named, else the only one); None when the
    environment has no HelseID (``INTEROP_NHN_PLANS_HELSEID=false``)."""
    if not use_helseid:
        return None
    if helseid is None:
        raise PlansApiError(
            "Pasientens planer needs HelseID: set INTEROP_HELSEID_TENANTS_FILE, or "
            "INTEROP_NHN_PLANS_HELSEID=false for NHN's development environment"
        )
    config = helseid.config
    chosen = next((t for t in config.tenants if t.name == tenant), None)
    if tenant and chosen is None:
        raise PlansApiError(f"INTEROP_NHN_PLANS_TENANT {tenant!r} is not in the tenants file")
    chosen = chosen or (config.tenants[0] if len(config.tenants) == 1 else None)
    if chosen is None:
        raise PlansApiError("several HelseID tenants: set INTEROP_NHN_PLANS_TENANT")
    return helseid.for_tenant(chosen).auth("plans")
