"""A local HelseID with two municipalities' clients registered, and the tenants file an operator
would write for them (keys in a file and in an environment variable)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from interop.access.helseid.local_issuer import Issuer, private_jwk, public_jwk, serve_issuer
from interop.national.tenants import Tenants, default_apis, load_tenants

CLIENTS = {
    "fjordvik": ("1f0c9f6e-3a52-4a0e-9d3e-2f1c5b8a4d10", "PS256", "312229544", "999977776"),
    "havbygd": ("2a7e1d44-6b1c-4f0e-8d2a-9c3b5e7f1a20", "ES256", "912159523", None),
}
"""tenant → (client id, alg, org.nr parent, org.nr child)"""


@dataclass
class HelseIdEnv:
    issuer: Issuer
    tenants_file: Path
    config: Tenants
    private: dict[str, dict[str, Any]]


@contextmanager
def helseid_env(
    folder: Path, her_ids: dict[str, list[str]], monkeypatch: Any = None
) -> Iterator[HelseIdEnv]:
    with serve_issuer() as issuer:
        apis = {a.resource: {a.scope} for a in default_apis().values()}
        tenants = []
        private = {}
        for name, (client_id, alg, parent, child) in CLIENTS.items():
            key: Any = (
                ec.generate_private_key(ec.SECP256R1())
                if alg == "ES256"
                else rsa.generate_private_key(public_exponent=65537, key_size=2048)
            )
            jwk = private_jwk(key)
            jwk["kid"] = f"{name}-2026-01"
            private[name] = jwk
            issuer.token_endpoint.register(client_id, public_jwk(key), apis)
            entry: dict[str, Any] = {
                "name": name,
                "client_id": client_id,
                "alg": alg,
                "orgnr_parent": parent,
                "multi_tenant": child is not None,
                "her_ids": her_ids.get(name, []),
            }
            if child:
                entry["orgnr_child"] = child
            if name == "havbygd" and monkeypatch is not None:
                monkeypatch.setenv("HAVBYGD_HELSEID_KEY", json.dumps(jwk))
                entry["key_env"] = "HAVBYGD_HELSEID_KEY"
            else:
                path = folder / f"{name}.jwk"
                path.write_text(json.dumps(jwk))
                path.chmod(0o600)
                entry["key_file"] = str(path)
            tenants.append(entry)
        tenants_file = folder / "helseid-tenants.yaml"
        tenants_file.write_text(
            yaml.safe_dump({"authority": issuer.url, "tenants": tenants}, sort_keys=False)
        )
        yield HelseIdEnv(issuer, tenants_file, load_tenants(tenants_file), private)
