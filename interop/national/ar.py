"""Adresseregisteret: NHN's CommunicationParty API (REST, HelseID + DPoP, audience
``nhn:cp-api``; ``standards/nhn/adresseregisteret/openapi/communicationparty-api-v1.json``).

Look up a HER-id (``GET /api/v1/communicationparty/{herId}``; 404 = not in AR), several at once
(``POST /api/v1/communicationparty``), an organisation by org.nr, and the current signing and
encryption certificates. A party's parent is in ``serviceDetails.parentOrganization`` or
``personDetails.parentOrganization``; an organisation's level-2 services in
``organizationDetails.services``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx


class ArError(Exception):
    def __init__(self, message: str, *, transient: bool) -> None:
        super().__init__(message)
        self.transient = transient


@dataclass(frozen=True)
class Party:
    """What we keep of a communication party."""

    her_id: str
    type: str
    """Organization, Person or Service"""
    name: str
    organization_number: str | None
    parent_her_id: str | None
    parent_name: str | None
    parent_organization_number: str | None
    hpr_number: str | None
    services: tuple[str, ...]
    valid_to: str | None

    @property
    def active(self) -> bool:
        if not self.valid_to:
            return True
        try:
            until = datetime.fromisoformat(self.valid_to.replace("Z", "+00:00"))
        except ValueError:
            return True
        if until.tzinfo is None:
            until = until.replace(tzinfo=UTC)
        return until > datetime.now(UTC)

    @classmethod
    def from_json(cls, body: dict[str, Any]) -> Party:
        parent = (body.get("serviceDetails") or body.get("personDetails") or {}).get(
            "parentOrganization"
        ) or {}
        org = body.get("organizationDetails") or {}
        person = body.get("personDetails") or {}
        return cls(
            her_id=str(body["herId"]),
            type=str(body.get("type")),
            name=str(body.get("displayName") or body.get("name") or ""),
            organization_number=org.get("organizationNumber"),
            parent_her_id=str(parent["herId"]) if parent.get("herId") else None,
            parent_name=parent.get("name"),
            parent_organization_number=parent.get("organizationNumber"),
            hpr_number=str(person["hprNumber"]) if person.get("hprNumber") else None,
            services=tuple(str(s) for s in org.get("services") or []),
            valid_to=body.get("validTo"),
        )


class ArClient:
    def __init__(self, base_url: str, *, auth: httpx.Auth | None, http: httpx.Client) -> None:
        self.base = base_url.rstrip("/")
        self.auth = auth
        self.http = http

    def _get(self, path: str, **params: Any) -> httpx.Response | None:
        url = f"{self.base}{path}"
        try:
            r = self.http.get(
                url, params=params or None, auth=self.auth or httpx.USE_CLIENT_DEFAULT
            )
        except httpx.HTTPError as exc:
            raise ArError(f"GET {url}: {type(exc).__name__}: {exc}", transient=True) from exc
        if r.status_code == 404:
            return None
        if r.status_code != 200:
            raise ArError(
                f"GET {url}: HTTP {r.status_code}: {r.text[:300]}",
                transient=r.status_code >= 500 or r.status_code in (401, 429),
            )
        return r

    def party(self, her_id: str) -> Party | None:
        """The party, or None when AR does not know the HER-id (any more)."""
        r = self._get(f"/api/v1/communicationparty/{int(her_id)}")
        return Party.from_json(r.json()) if r is not None else None

    def parties(self, her_ids: list[str]) -> list[Party]:
        url = f"{self.base}/api/v1/communicationparty"
        try:
            r = self.http.post(
                url,
                json={"herIds": [int(h) for h in her_ids]},
                auth=self.auth or httpx.USE_CLIENT_DEFAULT,
            )
        except httpx.HTTPError as exc:
            raise ArError(f"POST {url}: {type(exc).__name__}: {exc}", transient=True) from exc
        if r.status_code != 200:
            raise ArError(f"POST {url}: HTTP {r.status_code}", transient=r.status_code >= 500)
        return [Party.from_json(p) for p in r.json()]

    def organization(self, orgnr: str) -> Party | None:
        r = self._get(f"/api/v1/organization/{orgnr}")
        return Party.from_json(r.json()) if r is not None else None

    def certificate(self, her_id: str, use: str = "encryption") -> dict[str, Any] | None:
        """``use``: ``signing`` or ``encryption`` (thumbprint, validity, base64 DER)."""
        r = self._get(f"/api/v1/certificate/{int(her_id)}/{use}")
        return dict(r.json()) if r is not None else None
