"""HelseID clients per municipality or legal entity (the tenants file).

``INTEROP_HELSEID_TENANTS_FILE`` (YAML)::

    authority: https://helseid-sts.test.nhn.no     # HelseID issuer (test or production)
    assertion_typ: client-authentication+jwt        # or JWT (older HelseID docs)
    apis:                                           # optional: overrides of mappings/national/helseid-apis.yaml
      pmd: {resource: "nhn:pmd", scope: "nhn:pmd/api"}
      careplan: {resource: "nhn:patient-careplan", scope: "nhn:patient-careplan/api", token_type: DPoP}
    tenants:
      - name: fjordvik
        client_id: 7b0c9f6e-3a52-4a0e-9d3e-2f1c5b8a4d10
        key_file: /etc/interop/helseid/fjordvik.jwk # or key_env: FJORDVIK_HELSEID_KEY
        alg: PS256                                   # RS256, PS256 or ES256
        kid: fjordvik-2026-01                        # optional (JWK kid / thumbprint)
        orgnr_parent: "312229544"                    # the municipality (legal entity)
        orgnr_child: "999977776"                     # optional: the unit (underenhet)
        multi_tenant: true                           # a supplier client acting for the municipality
        her_ids: ["80001", "80002"]                  # our HER-ids that send as this tenant

Which tenant a message belongs to follows from the sending organisation: the sender's HER-ids in
the MsgHead (or the HER-id we answer an AppRec for), else its organisation number.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from importlib.resources import files
from pathlib import Path
from typing import Any

import yaml

from interop.national.keys import ClientKey, KeyConfigError, load_client_key

TEST_AUTHORITY = "https://helseid-sts.test.nhn.no"


class TenantConfigError(ValueError):
    pass


@dataclass(frozen=True)
class Api:
    name: str
    resource: str
    scope: str
    token_type: str = "DPoP"
    """``DPoP`` (a token bound to our key, a proof on every call) or ``Bearer`` (an API whose
    published pages ask for a plain bearer token: the older careplan service)."""


@dataclass(frozen=True)
class Tenant:
    name: str
    client_id: str
    key: ClientKey
    orgnr_parent: str | None = None
    orgnr_child: str | None = None
    multi_tenant: bool = False
    her_ids: frozenset[str] = field(default_factory=frozenset)

    def authorization_details(self) -> dict[str, Any] | None:
        """The organisation numbers in the client assertion (HelseID README §5)."""
        if not self.orgnr_parent and not self.orgnr_child:
            return None
        if self.multi_tenant:
            ident = {
                "system": "urn:oid:1.0.6523",
                "type": "ENH",
                "value": f"NO:ORGNR:{self.orgnr_parent}:{self.orgnr_child or ''}",
            }
        else:
            ident = {
                "system": "urn:oid:2.16.578.1.12.4.1.4.101",
                "type": "ENH",
                "value": str(self.orgnr_child or self.orgnr_parent),
            }
        return {
            "type": "helseid_authorization",
            "practitioner_role": {"organization": {"identifier": ident}},
        }


@dataclass(frozen=True)
class Tenants:
    authority: str
    tenants: tuple[Tenant, ...]
    apis: dict[str, Api]
    assertion_typ: str = "client-authentication+jwt"
    token_endpoint: str | None = None
    """default ``{authority}/connect/token``"""

    @property
    def token_url(self) -> str:
        return self.token_endpoint or self.authority.rstrip("/") + "/connect/token"

    def api(self, name: str) -> Api:
        try:
            return self.apis[name]
        except KeyError:
            raise TenantConfigError(f"no HelseID API {name!r} configured") from None

    def for_her_ids(self, her_ids: list[str] | tuple[str, ...] | set[str]) -> Tenant | None:
        """The tenant sending as the most specific of these HER-ids."""
        for her in reversed(list(her_ids)):
            for t in self.tenants:
                if her in t.her_ids:
                    return t
        return None

    def for_orgnr(self, orgnr: str) -> Tenant | None:
        return next((t for t in self.tenants if orgnr in (t.orgnr_child, t.orgnr_parent)), None)

    def only(self) -> Tenant | None:
        """The tenant when there is just one and it names no HER-ids (a single-municipality
        installation: everything we send is its)."""
        if len(self.tenants) == 1 and not self.tenants[0].her_ids:
            return self.tenants[0]
        return None


TOKEN_TYPES = ("DPoP", "Bearer")


def _api(name: str, v: dict[str, Any], where: str) -> Api:
    token_type = str(v.get("token_type") or "DPoP")
    if token_type not in TOKEN_TYPES:
        raise TenantConfigError(f"{where}: apis.{name}.token_type must be DPoP or Bearer")
    return Api(name, str(v["resource"]), str(v["scope"]), token_type)


def default_apis() -> dict[str, Api]:
    data = yaml.safe_load((files("mappings") / "national" / "helseid-apis.yaml").read_text())
    return {n: _api(n, v, "helseid-apis.yaml") for n, v in data.items()}


def parse_tenants(data: dict[str, Any], where: str = "tenants file") -> Tenants:
    if not isinstance(data, dict) or not isinstance(data.get("tenants"), list):
        raise TenantConfigError(f"{where}: needs a list 'tenants'")
    apis = default_apis()
    for name, v in (data.get("apis") or {}).items():
        if not isinstance(v, dict) or "resource" not in v or "scope" not in v:
            raise TenantConfigError(f"{where}: apis.{name} needs resource and scope")
        apis[name] = _api(name, v, where)
    out = []
    seen_her: dict[str, str] = {}
    for i, t in enumerate(data["tenants"]):
        label = f"{where}: tenants[{i}]"
        if not isinstance(t, dict):
            raise TenantConfigError(f"{label} is not a mapping")
        for required in ("name", "client_id", "alg"):
            if not t.get(required):
                raise TenantConfigError(f"{label}: {required} is required")
        label = f"{where}: tenant {t['name']}"
        try:
            key = load_client_key(
                where=label,
                alg=str(t["alg"]),
                kid=t.get("kid"),
                file=t.get("key_file"),
                env=t.get("key_env"),
            )
        except KeyConfigError as exc:
            raise TenantConfigError(str(exc)) from None
        her_ids = frozenset(str(h) for h in t.get("her_ids") or [])
        for her in her_ids:
            if her in seen_her:
                raise TenantConfigError(f"{label}: HER-id {her} is also tenant {seen_her[her]}'s")
            seen_her[her] = str(t["name"])
        out.append(
            Tenant(
                name=str(t["name"]),
                client_id=str(t["client_id"]),
                key=key,
                orgnr_parent=str(t["orgnr_parent"]) if t.get("orgnr_parent") else None,
                orgnr_child=str(t["orgnr_child"]) if t.get("orgnr_child") else None,
                multi_tenant=bool(t.get("multi_tenant", False)),
                her_ids=her_ids,
            )
        )
    if not out:
        raise TenantConfigError(f"{where}: no tenants")
    return Tenants(
        authority=str(data.get("authority") or TEST_AUTHORITY).rstrip("/"),
        tenants=tuple(out),
        apis=apis,
        assertion_typ=str(data.get("assertion_typ") or "client-authentication+jwt"),
        token_endpoint=data.get("token_endpoint"),
    )


def load_tenants(path: Path) -> Tenants:
    try:
        data = yaml.safe_load(path.read_text())
    except OSError as exc:
        raise TenantConfigError(f"{path}: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise TenantConfigError(f"{path}: not YAML: {exc}") from None
    return parse_tenants(data, str(path))
