"""The HelseID client against the local HelseID, which checks the client assertion and the DPoP
proof with real signatures."""

from __future__ import annotations

import logging
from pathlib import Path

import httpx
import jwt
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from interop.national.helseid import HelseIdClient, HelseIdClients, HelseIdError
from interop.national.tenants import TenantConfigError, load_tenants, parse_tenants
from tests.national.helseid_env import CLIENTS, helseid_env


def test_token_with_private_key_jwt_dpop_nonce_and_binding(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    with helseid_env(tmp_path, {"fjordvik": ["80001"]}, monkeypatch) as env:
        clients = HelseIdClients(env.config)
        for name in ("fjordvik", "havbygd"):  # PS256 from a file, ES256 from the environment
            tenant = next(t for t in env.config.tenants if t.name == name)
            client = clients.for_tenant(tenant)
            token = client.token("edi2")
            # the first request was refused with use_dpop_nonce, the second carried the nonce
            assert client.token_requests == 2
            claims = jwt.decode(token.value, options={"verify_signature": False})
            assert claims["aud"] == "nhn:msh" and claims["scope"] == ["nhn:msh/api"]
            assert claims["cnf"] == {"jkt": tenant.key.jkt}
            assert claims["client_id"] == CLIENTS[name][0]
            # cached until shortly before expiry: no new request
            assert client.token("edi2") is token and client.token_requests == 2
            # another API: its own audience and scope, the nonce is already known
            other = client.token("ar")
            assert jwt.decode(other.value, options={"verify_signature": False})["aud"] == (
                "nhn:cp-api"
            )
            assert client.token_requests == 3
        assert env.issuer.token_endpoint.refused == ["use_dpop_nonce", "use_dpop_nonce"]
        fjordvik = jwt.decode(
            clients.for_her_ids(["80001"]).token("edi2").value,  # type: ignore[union-attr]
            options={"verify_signature": False},
        )
        # multi-tenant: NO:ORGNR:<parent>:<child> in the assertion → the token's org numbers
        assert fjordvik["helseid://claims/client/claims/orgnr_parent"] == "312229544"
        assert fjordvik["helseid://claims/client/claims/orgnr_child"] == "999977776"


def test_token_refreshed_shortly_before_expiry(tmp_path: Path) -> None:
    with helseid_env(tmp_path, {}) as env:
        env.issuer.token_endpoint.lifetime = 20
        client = HelseIdClient(env.config, env.config.tenants[0], refresh_margin=30)
        first = client.token("edi2")
        assert client.token("edi2") is not first  # 20 s left < 30 s margin: fetched again


def test_a_forged_assertion_is_refused(tmp_path: Path) -> None:
    with helseid_env(tmp_path, {}) as env:
        fjordvik, havbygd = env.config.tenants
        # fjordvik's client id with havbygd's key: the signature does not verify
        impostor = type(fjordvik)(fjordvik.name, fjordvik.client_id, havbygd.key)
        client = HelseIdClient(env.config, impostor)
        with pytest.raises(HelseIdError, match="invalid_client"):
            client.token("edi2")
        # a scope the client was not given
        from interop.national.tenants import Api

        with pytest.raises(HelseIdError, match="invalid_target"):
            HelseIdClient(env.config, fjordvik).token(Api("x", "nhn:other", "nhn:other/api"))


def test_dpop_auth_signs_every_request_freshly(tmp_path: Path) -> None:
    from tests.live_server import live_server
    from tests.national.nhn_auth import ApiGuard, Unauthorized

    with helseid_env(tmp_path, {}) as env:
        guard = ApiGuard(env.issuer, "nhn:msh", "nhn:msh/api")
        seen: list[str] = []

        async def handle(request: Request) -> Response:
            headers = {k.lower(): v for k, v in request.headers.items()}
            try:
                guard.check(request.method, str(request.url), headers)
            except Unauthorized as exc:
                return Response(status_code=401, headers={"WWW-Authenticate": exc.www})
            seen.append(headers["dpop"])
            return Response(b"{}", status_code=200)

        app = Starlette(routes=[Route("/{path:path}", handle, methods=["GET", "POST"])])
        client = HelseIdClient(env.config, env.config.tenants[0])
        with live_server(app) as base, httpx.Client(auth=client.auth("edi2")) as http:
            for _ in range(3):
                assert http.get(f"{base}/Messages", params={"a": "1"}).status_code == 200
            # a token for another API is refused by this one
            other = httpx.get(f"{base}/Messages", auth=client.auth("ar"))
            assert other.status_code == 401
        assert len(set(seen)) == 3 and guard.checked == 3


def test_tenant_config_errors_name_the_setting_never_the_key(tmp_path: Path, caplog) -> None:  # type: ignore[no-untyped-def]
    caplog.set_level(logging.DEBUG)
    with helseid_env(tmp_path, {"fjordvik": ["80001"]}) as env:
        text = env.tenants_file.read_text()
        secret = env.private["fjordvik"]["d"]
        assert secret not in repr(env.config)
        bad = tmp_path / "bad.yaml"
        bad.write_text(text.replace(str(tmp_path / "fjordvik.jwk"), str(tmp_path / "nope.jwk")))
        with pytest.raises(TenantConfigError, match="tenant fjordvik: key_file .*nope.jwk"):
            load_tenants(bad)
        with pytest.raises(TenantConfigError, match="alg 'HS256'"):
            parse_tenants(
                {"tenants": [{"name": "x", "client_id": "c", "alg": "HS256", "key_env": "K"}]}
            )
        assert secret not in caplog.text


def test_rs256_client_and_a_resource_server_nonce(tmp_path: Path) -> None:
    """An RS256 client; an API that demands its own DPoP nonce gets one retry with it, and the
    nonce is kept per server (HelseID's is not sent to the API)."""
    from cryptography.hazmat.primitives.asymmetric import rsa

    from interop.access.helseid.local_issuer import public_jwk
    from interop.national.keys import client_key
    from interop.national.tenants import Tenant
    from tests.live_server import live_server
    from tests.national.nhn_auth import ApiGuard, Unauthorized

    with helseid_env(tmp_path, {}) as env:
        key = client_key(
            rsa.generate_private_key(public_exponent=65537, key_size=2048), "RS256", "rs"
        )
        env.issuer.token_endpoint.register(
            "rs-client", public_jwk(key.key), {"nhn:msh": {"nhn:msh/api"}}
        )
        client = HelseIdClient(env.config, Tenant("rs", "rs-client", key))
        guard = ApiGuard(env.issuer, "nhn:msh", "nhn:msh/api")
        nonces: list[str | None] = []

        async def handle(request: Request) -> Response:
            headers = {k.lower(): v for k, v in request.headers.items()}
            proof = jwt.decode(headers["dpop"], options={"verify_signature": False})
            nonces.append(proof.get("nonce"))
            if proof.get("nonce") != "api-nonce-1":
                return Response(
                    status_code=401,
                    headers={
                        "WWW-Authenticate": 'DPoP error="use_dpop_nonce"',
                        "DPoP-Nonce": "api-nonce-1",
                    },
                )
            try:
                guard.check(request.method, str(request.url), headers)
            except Unauthorized as exc:
                return Response(status_code=401, headers={"WWW-Authenticate": exc.www})
            return Response(b"{}", 200)

        app = Starlette(routes=[Route("/{path:path}", handle, methods=["GET"])])
        with live_server(app) as base, httpx.Client(auth=client.auth("edi2")) as http:
            assert http.get(f"{base}/Messages").status_code == 200
            assert http.get(f"{base}/Messages").status_code == 200
        assert nonces == [None, "api-nonce-1", "api-nonce-1"]
        assert jwt.get_unverified_header(client.token("edi2").value)["alg"] in ("RS256", "ES256")
