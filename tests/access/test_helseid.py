"""HelseID access tokens and DPoP proofs, through the real app, against a local HelseID (a real
HTTP server with real RSA and EC keys, ``interop/access/helseid/local_issuer.py``)."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from fastapi.testclient import TestClient

from interop.access.helseid.local_issuer import (
    AUDIENCE,
    SCOPE,
    DpopClient,
    Issuer,
    b64url,
    private_jwk,
    serve_issuer,
)
from tests.access.audit_trail import last_refusal

FNR_SYSTEM = "urn:oid:2.16.578.1.12.4.1.4.1"
HPR_SYSTEM = "urn:oid:2.16.578.1.12.4.1.4.4"
ORGNR_SYSTEM = "urn:oid:2.16.578.1.12.4.1.4.101"
FNR_A, FNR_B = "13031353453", "02028099471"
EPJ_CLIENT = "7b0c9f6e-3a52-4a0e-9d3e-2f1c5b8a4d10"
GP_CLIENT = "c0ffee00-1111-4222-8333-944455556666"
UNMAPPED_CLIENT = "deadbeef-0000-4000-8000-000000000000"
GP_HPR = "9144889"
USER_PID = "11845599620"
BASE = "http://testserver"

CLIENTS_YAML = f"""
clients:
  - name: "Testkommune oppfølgingstjeneste"
    client_id: "{EPJ_CLIENT}"
    orgnr_child: "922734046"
    role: followup
  - name: "Legekontor EPJ"
    client_id: "{GP_CLIENT}"
    role: gp
"""

ATTEST = {
    "type": "nhn:tillitsrammeverk:parameters",
    "practitioner": {
        "authorization": {"code": "LE", "system": "urn:oid:2.16.578.1.12.4.1.1.9060"},
        "point_of_care": {"id": "922734046", "system": ORGNR_SYSTEM},
    },
    "care_relationship": {
        "healthcare_service": {"code": "KP02", "system": "urn:oid:2.16.578.1.12.4.1.1.8663"},
        "purpose_of_use": {"code": "TREAT", "system": "urn:oid:2.16.840.1.113883.1.11.20448"},
        "decision_ref": {"id": "0f5c2e9a", "user_selected": False},
    },
    "patients": [{}],
}


@pytest.fixture(scope="module")
def issuer() -> Iterator[Issuer]:
    with serve_issuer() as i:
        yield i


@pytest.fixture(scope="module")
def caller() -> DpopClient:
    return DpopClient("ES256")


def configure(settings, issuer: Issuer, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    clients = tmp_path / "helseid-clients.yaml"
    clients.write_text(CLIENTS_YAML, "utf-8")
    settings.helseid_issuer = issuer.url
    settings.helseid_audience = AUDIENCE
    settings.helseid_required_scopes = SCOPE
    settings.helseid_clients_file = clients


@pytest.fixture
def world(client, settings, issuer: Issuer, tmp_path: Path) -> dict[str, str]:  # type: ignore[no-untyped-def]
    """A follow-up centre's patient (A, also the GP's) and another patient (B)."""
    configure(settings, issuer, tmp_path)

    def post(path: str, body: dict[str, Any]) -> str:
        r = client.post(path, json=body)
        assert r.status_code == 201, r.text
        return str(r.json()["id"])

    org = post(
        "/fhir/Organization",
        {
            "resourceType": "Organization",
            "identifier": [{"system": ORGNR_SYSTEM, "value": "922734046"}],
        },
    )
    gp = post(
        "/fhir/Practitioner",
        {"resourceType": "Practitioner", "identifier": [{"system": HPR_SYSTEM, "value": GP_HPR}]},
    )
    role = post(
        "/fhir/PractitionerRole",
        {"resourceType": "PractitionerRole", "practitioner": {"reference": f"Practitioner/{gp}"}},
    )
    a = post(
        "/fhir/Patient",
        {
            "resourceType": "Patient",
            "identifier": [{"system": FNR_SYSTEM, "value": FNR_A}],
            "generalPractitioner": [{"reference": f"PractitionerRole/{role}"}],
            "managingOrganization": {"reference": f"Organization/{org}"},
        },
    )
    b = post(
        "/fhir/Patient",
        {"resourceType": "Patient", "identifier": [{"system": FNR_SYSTEM, "value": FNR_B}]},
    )
    return {"a": a, "b": b}


def system_token(issuer: Issuer, caller: DpopClient | None = None, **claims: Any) -> str:
    if caller is not None:
        claims.setdefault("cnf", {"jkt": caller.jkt})
    return issuer.token(issuer.claims(**claims))


def user_token(issuer: Issuer, **claims: Any) -> str:
    base: dict[str, Any] = {
        "client_id": GP_CLIENT,
        "sub": "mE0ULZiJ4Cc1sTzXfV9gH5mqcFDoz1rGEtZ8uJ0y3Ak=",
        "name": "KRASS DALSIDE",
        "helseid://claims/identity/pid": USER_PID,
        "helseid://claims/identity/security_level": "4",
        "helseid://claims/hpr/hpr_number": GP_HPR,
        "authorization_details": [ATTEST],
    }
    base.update(claims)
    return issuer.token(issuer.claims(**base))


def dpop(caller: DpopClient, token: str, method: str, path: str, **kw: Any) -> dict[str, str]:
    return {
        "Authorization": f"DPoP {token}",
        "DPoP": caller.proof(method, f"{BASE}{path}", token, **kw),
    }


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def audit_text(client) -> str:  # type: ignore[no-untyped-def]
    r = client.get("/fhir/AuditEvent?_count=200")
    assert r.status_code == 200, r.text
    return r.text


# ---- acting as the mapped role --------------------------------------------------------------


def test_system_token_with_dpop_acts_for_its_organisation(client, world, issuer, caller) -> None:  # type: ignore[no-untyped-def]
    token = system_token(issuer, caller)
    a, b = world["a"], world["b"]
    r = client.get(f"/fhir/Patient/{a}", headers=dpop(caller, token, "GET", f"/fhir/Patient/{a}"))
    assert r.status_code == 200, r.text
    r = client.get(f"/fhir/Patient/{b}", headers=dpop(caller, token, "GET", f"/fhir/Patient/{b}"))
    assert r.status_code == 403 and "not one of your patients" in r.text
    assert "followup org.nr 922734046" in last_refusal(client)
    # a search (query string not part of htu), through the normal routes
    r = client.get(
        f"/fhir/Patient?_id={a},{b}", headers=dpop(caller, token, "GET", "/fhir/Patient")
    )
    assert r.status_code == 200, r.text
    ids = [e["resource"]["id"] for e in r.json().get("entry", []) if e["search"]["mode"] == "match"]
    assert ids == [a]
    audit = audit_text(client)
    assert f"helseid:{EPJ_CLIENT}" in audit and "org.nr 922734046" in audit


def test_user_token_acts_with_the_users_hpr(client, world, issuer) -> None:  # type: ignore[no-untyped-def]
    token = user_token(issuer)
    a, b = world["a"], world["b"]
    r = client.get(f"/fhir/Patient/{a}", headers=bearer(token))
    assert r.status_code == 200, r.text
    r = client.get(f"/fhir/Patient/{b}", headers=bearer(token))
    assert r.status_code == 403 and "not one of your patients" in r.text
    assert f"HPR {GP_HPR}" in last_refusal(client)
    audit = audit_text(client)
    events = [
        e["resource"]
        for e in json.loads(audit).get("entry", [])
        if any(
            ag.get("altId", "").startswith(f"helseid:{GP_CLIENT}") for ag in e["resource"]["agent"]
        )
    ]
    assert events
    agent = events[0]["agent"][0]
    assert agent["who"]["identifier"]["value"] == GP_HPR
    assert agent["who"]["display"] == "KRASS DALSIDE"
    assert agent["purposeOfUse"] == [{"text": "TREAT"}]
    assert USER_PID not in audit  # the user's fødselsnummer is never written to the audit log


def test_claims_become_the_actor(settings, issuer, tmp_path) -> None:  # type: ignore[no-untyped-def]
    from interop.access.helseid.claims import actor_from_claims
    from interop.access.helseid.clients import load_client_map

    configure(settings, issuer, tmp_path)
    clients = load_client_map(settings.helseid_clients_file)
    claims = issuer.claims(
        client_id=GP_CLIENT,
        **{
            "helseid://claims/hpr/hpr_number": GP_HPR,
            "helseid://claims/identity/pid": USER_PID,
            "helseid://claims/identity/security_level": 4,  # a number is accepted too
            # the attest as a separate claim, as a JSON string
            "nhn:tillitsrammeverk:parameters": json.dumps(ATTEST),
        },
    )
    actor = actor_from_claims(claims, clients, min_security_level=4, scheme="Bearer")
    assert (actor.role, actor.hpr, actor.orgnr, actor.source) == (
        "gp",
        GP_HPR,
        "922734046",
        "helseid",
    )
    assert (actor.purpose, actor.healthcare_service, actor.point_of_care, actor.decision_ref) == (
        "TREAT",
        "KP02",
        "922734046",
        "0f5c2e9a",
    )
    assert actor.security_level == 4 and actor.client_id == GP_CLIENT and actor.pid == USER_PID
    assert USER_PID not in repr(actor)
    # a system token without a child org acts for the parent; a garbled attest is ignored
    system = actor_from_claims(
        issuer.claims(
            **{"helseid://claims/client/claims/orgnr_child": None, "authorization_details": "{bad"}
        ),
        load_client_map_for_parent(tmp_path),
        min_security_level=4,
        scheme="Bearer",
    )
    assert system.orgnr == "312229544" and system.hpr is None and system.purpose is None


def load_client_map_for_parent(tmp_path: Path):  # type: ignore[no-untyped-def]
    from interop.access.helseid.clients import load_client_map

    path = tmp_path / "parent.yaml"
    path.write_text('clients:\n  - orgnr_parent: "312229544"\n    role: epj\n', "utf-8")
    return load_client_map(path)


def test_client_map_file_is_checked(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from interop.access.helseid.clients import load_client_map

    packaged = load_client_map(None)
    assert packaged.entries == []  # nobody gets a role until the deployer says so
    for text, expected in (
        ("clients:\n  - client_id: x\n    role: admin\n", "role 'admin'"),
        ("clients:\n  - role: gp\n", "name a client_id"),
        ('clients:\n  - orgnr_parent: "12345678"\n    role: gp\n', "9-digit"),
        ("clients:\n  - client_id: x\n    role: gp\n    roles: [epj]\n", "unknown field"),
    ):
        path = tmp_path / "c.yaml"
        path.write_text(text, "utf-8")
        with pytest.raises(ValueError, match=expected):
            load_client_map(path)


# ---- refusals of the token ------------------------------------------------------------------


def _unsigned(header: dict[str, Any], claims: dict[str, Any]) -> str:
    return b64url(json.dumps(header).encode()) + "." + b64url(json.dumps(claims).encode()) + "."


def _hs256_with_public_key(issuer: Issuer) -> str:
    """The classic confusion attack: HMAC "signed" with the issuer's public RSA key."""
    kid = issuer.published[0]
    pem = (
        issuer.keys[kid]
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    signing_input = _unsigned({"alg": "HS256", "typ": "at+jwt", "kid": kid}, issuer.claims())[:-1]
    sig = hmac.new(pem, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{b64url(sig)}"


def _refusals(issuer: Issuer) -> list[tuple[str, str, int, str]]:
    now = int(time.time())
    other_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return [
        ("forged signature", issuer.token(key=other_key), 401, "signature does not verify"),
        (
            "alg none",
            _unsigned(
                {"alg": "none", "typ": "at+jwt", "kid": issuer.published[0]}, issuer.claims()
            ),
            401,
            "'none' is not accepted",
        ),
        (
            "HS256 with the public key",
            _hs256_with_public_key(issuer),
            401,
            "'HS256' is not accepted",
        ),
        (
            "unknown issuer",
            issuer.token(issuer.claims(iss="https://helseid-sts.test.nhn.no")),
            401,
            "not from our HelseID",
        ),
        ("wrong audience", issuer.token(issuer.claims(aud="nhn:msh")), 401, "not for this API"),
        (
            "expired",
            issuer.token(issuer.claims(exp=now - 60, iat=now - 400, nbf=now - 400)),
            401,
            "expired",
        ),
        ("not yet valid", issuer.token(issuer.claims(nbf=now + 120)), 401, "not valid yet"),
        ("wrong typ", issuer.token(typ="JWT"), 401, "typ"),
        ("missing scope", issuer.token(issuer.claims(scope=["openid"])), 403, "lacks the scope"),
        (
            "unmapped client",
            issuer.token(issuer.claims(client_id=UNMAPPED_CLIENT)),
            403,
            "not given a role",
        ),
        (
            "security level 3",
            user_token(issuer, **{"helseid://claims/identity/security_level": "3"}),
            401,
            "security level 3",
        ),
        (
            "user token without security level",
            user_token(issuer, **{"helseid://claims/identity/security_level": None}),
            401,
            "security_level",
        ),
    ]


def test_refused_tokens(client, world, issuer) -> None:  # type: ignore[no-untyped-def]
    a = world["a"]
    for name, token, status, text in _refusals(issuer):
        r = client.get(f"/fhir/Patient/{a}", headers=bearer(token))
        assert r.status_code == status, (name, r.text)
        assert text in r.text, (name, r.text)
        assert r.json()["resourceType"] == "OperationOutcome"
        if status == 401:
            assert 'error="invalid_token"' in r.headers["www-authenticate"] or (
                'error="insufficient_user_authentication"' in r.headers["www-authenticate"]
            ), name


def test_jwt_typ_is_a_setting(client, world, issuer, settings) -> None:  # type: ignore[no-untyped-def]
    settings.helseid_accept_jwt_typ = True
    from interop.api.app import create_app

    with TestClient(create_app(settings, services=client.app.state.services)) as other:
        r = other.get(f"/fhir/Patient/{world['a']}", headers=bearer(issuer.token(typ="JWT")))
        assert r.status_code == 200, r.text


def test_key_rotation_refetches_the_keys_at_most_so_often(client, settings, tmp_path) -> None:  # type: ignore[no-untyped-def]
    with serve_issuer() as fresh:
        configure(settings, fresh, tmp_path)
        from interop.api.app import create_app

        with TestClient(create_app(settings, services=client.app.state.services)) as c:
            assert c.get("/fhir/Organization", headers=bearer(fresh.token())).status_code == 200
            assert fresh.jwks_requests == 1
            # made-up kids right after a fetch make us fetch nothing (the rate limit)
            for kid in ("made-up-1", "made-up-2"):
                forged = fresh.token(kid=fresh.published[0], headers={"kid": kid})
                r = c.get("/fhir/Organization", headers=bearer(forged))
                assert r.status_code == 401 and "does not publish" in r.text
            assert fresh.jwks_requests == 1
        # HelseID rotates its key: a token with the new kid makes us fetch again once the
        # rate limit allows it (a short limit here), and it is then accepted
        settings.helseid_jwks_refetch_seconds = 0.5
        with TestClient(create_app(settings, services=client.app.state.services)) as c2:
            assert c2.get("/fhir/Organization", headers=bearer(fresh.token())).status_code == 200
            before = fresh.jwks_requests
            new_kid = fresh.rotate()
            time.sleep(0.55)
            r = c2.get("/fhir/Organization", headers=bearer(fresh.token(kid=new_kid)))
            fetched_at = time.monotonic()
            assert r.status_code == 200, r.text
            assert fresh.jwks_requests == before + 1
            # a flood of made-up kids within the limit costs HelseID nothing more
            for n in range(5):
                forged = fresh.token(kid=new_kid, headers={"kid": f"made-up-{n}"})
                assert c2.get("/fhir/Organization", headers=bearer(forged)).status_code == 401
            # at most one fetch per 0.5 s (on a machine so busy that the flood outlasted the
            # limit, the next fetch is due: a timing flake in parallel runs before)
            windows = int((time.monotonic() - fetched_at) / 0.5)
            assert before + 1 <= fresh.jwks_requests <= before + 1 + windows


def test_helseid_off_accepts_no_jwt(client, issuer, caller) -> None:  # type: ignore[no-untyped-def]
    token = system_token(issuer)
    r = client.get("/fhir/Organization", headers=bearer(token))
    assert r.status_code == 401
    r = client.get("/fhir/Organization", headers=dpop(caller, token, "GET", "/fhir/Organization"))
    assert r.status_code == 401 and "not accepted" in r.text


# ---- DPoP -----------------------------------------------------------------------------------


def test_dpop_refusals(client, world, issuer, caller) -> None:  # type: ignore[no-untyped-def]
    a = world["a"]
    path = f"/fhir/Patient/{a}"
    token = system_token(issuer, caller)
    thief = DpopClient("ES256")
    leaked = private_jwk(caller.key)
    cases: list[tuple[str, dict[str, str], str]] = [
        ("missing proof", {"Authorization": f"DPoP {token}"}, "needs a DPoP proof"),
        ("wrong htm", dpop(caller, token, "POST", path), "(htm)"),
        (
            "wrong htu",
            {
                "Authorization": f"DPoP {token}",
                "DPoP": caller.proof("GET", f"{BASE}/fhir/Patient/other", token),
            },
            "(htu)",
        ),
        ("stale iat", dpop(caller, token, "GET", path, iat=int(time.time()) - 600), "too old"),
        ("future iat", dpop(caller, token, "GET", path, iat=int(time.time()) + 600), "future"),
        (
            "wrong ath",
            {
                "Authorization": f"DPoP {token}",
                "DPoP": caller.proof("GET", f"{BASE}{path}", token + "x"),
            },
            "ath",
        ),
        (
            "no ath",
            {"Authorization": f"DPoP {token}", "DPoP": caller.proof("GET", f"{BASE}{path}", None)},
            "ath",
        ),
        ("thumbprint mismatch", dpop(thief, token, "GET", path), "another key"),
        ("private key member", dpop(caller, token, "GET", path, jwk=leaked), "private key"),
        ("wrong typ", dpop(caller, token, "GET", path, typ="JWT"), "dpop+jwt"),
        (
            "proof not signed by its jwk",
            dpop(caller, token, "GET", path, key=thief.key),
            "signature",
        ),
    ]
    for name, headers, text in cases:
        r = client.get(path, headers=headers)
        assert r.status_code == 401, (name, r.text)
        assert text in r.text, (name, r.text)
        challenge = r.headers["www-authenticate"]
        assert challenge.startswith("DPoP ") and 'error="invalid_dpop_proof"' in challenge, name
    # the same token with a good proof is fine
    assert client.get(path, headers=dpop(caller, token, "GET", path)).status_code == 200


def test_dpop_bound_token_as_bearer_and_unbound_token_as_dpop(
    client, world, issuer, caller
) -> None:  # type: ignore[no-untyped-def]
    path = f"/fhir/Patient/{world['a']}"
    bound = system_token(issuer, caller)
    r = client.get(path, headers=bearer(bound))
    assert r.status_code == 401 and "bound to a DPoP key" in r.text
    assert r.headers["www-authenticate"].startswith("DPoP ")
    assert 'error="invalid_token"' in r.headers["www-authenticate"]
    unbound = system_token(issuer)
    r = client.get(path, headers=dpop(caller, unbound, "GET", path))
    assert r.status_code == 401 and "not DPoP-bound" in r.text


def test_replayed_proof_is_refused_by_a_second_api_instance(
    client, world, issuer, caller, settings
) -> None:  # type: ignore[no-untyped-def]
    from interop.api.app import create_app

    path = f"/fhir/Patient/{world['a']}"
    token = system_token(issuer, caller)
    headers = dpop(caller, token, "GET", path)
    assert client.get(path, headers=headers).status_code == 200
    r = client.get(path, headers=headers)
    assert r.status_code == 401 and "used before" in r.text
    second = create_app(settings, services=client.app.state.services)  # another API process
    with TestClient(second) as other:
        fresh = dpop(caller, token, "GET", path)
        assert other.get(path, headers=fresh).status_code == 200
        r = client.get(path, headers=fresh)  # replayed to the first instance
        assert r.status_code == 401 and "used before" in r.text
        r = other.get(path, headers=headers)  # the first proof, replayed to the second
        assert r.status_code == 401 and "used before" in r.text


def test_htu_behind_a_proxy_uses_the_base_url(client, world, issuer, caller, settings) -> None:  # type: ignore[no-untyped-def]
    from interop.api.app import create_app

    settings.base_url = "https://dho.example.no"
    path = f"/fhir/Patient/{world['a']}"
    token = system_token(issuer, caller)
    with TestClient(create_app(settings, services=client.app.state.services)) as c:
        public = {
            "Authorization": f"DPoP {token}",
            "DPoP": caller.proof("GET", f"https://DHO.example.no:443{path}", token),
        }
        assert c.get(path, headers=public).status_code == 200
        internal = dpop(caller, token, "GET", path)
        r = c.get(path, headers=internal)
        assert r.status_code == 401 and "(htu)" in r.text


def test_rsa_dpop_key_and_es256_token(client, world, issuer) -> None:  # type: ignore[no-untyped-def]
    rsa_caller = DpopClient("PS256")
    es_kid = next(k for k in issuer.published if k.startswith("es"))
    token = issuer.token(issuer.claims(cnf={"jkt": rsa_caller.jkt}), kid=es_kid)
    path = f"/fhir/Patient/{world['a']}"
    r = client.get(path, headers=dpop(rsa_caller, token, "GET", path))
    assert r.status_code == 200, r.text


def test_jti_rows_are_pruned(services) -> None:  # type: ignore[no-untyped-def]
    from sqlalchemy import func, select

    from interop.access.helseid.replay import JtiReplayGuard
    from interop.store.schema import dpop_jti_table

    now = [1_000_000.0]
    guard = JtiReplayGuard(lambda: services.engine, clock=lambda: now[0])
    assert guard.first_use("k", "a", expires=1_000_050)
    assert not guard.first_use("k", "a", expires=1_000_050)
    assert guard.first_use("other-key", "a", expires=1_000_050)  # per key
    now[0] = 1_000_100.0  # past both rows' expiry and the pruning interval
    assert guard.first_use("k", "b", expires=1_000_150)
    with services.engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(dpop_jti_table)).scalar() == 1


def test_a_wrong_client_map_stops_the_start(settings, services, issuer, tmp_path) -> None:  # type: ignore[no-untyped-def]
    from interop.api.app import create_app
    from interop.config import Settings

    configure(settings, issuer, tmp_path)
    settings.helseid_clients_file.write_text("clients:\n  - client_id: x\n    role: admin\n")
    with (
        pytest.raises(ValueError, match="role 'admin'"),
        TestClient(create_app(settings, services=services)),
    ):
        pass
    with pytest.raises(ValueError, match="INTEROP_HELSEID_AUDIENCE"):
        Settings(helseid_issuer=issuer.url)


def test_concurrent_uses_of_one_proof_let_exactly_one_through(services) -> None:  # type: ignore[no-untyped-def]
    """Proofs are recorded by group commit: the same proof sent by many requests at once (and
    among other proofs) is accepted once, whichever batch it lands in."""
    import threading
    import time

    from interop.access.helseid.replay import JtiReplayGuard

    guard = JtiReplayGuard(lambda: services.engine)
    results: list[tuple[str, bool]] = []
    lock = threading.Lock()

    def use(jti: str) -> None:
        first = guard.first_use("jkt", jti, int(time.time()) + 60)
        with lock:
            results.append((jti, first))

    threads = [threading.Thread(target=use, args=("same",)) for _ in range(12)]
    threads += [threading.Thread(target=use, args=(f"other-{i}",)) for i in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(first for jti, first in results if jti == "same") == 1
    assert all(first for jti, first in results if jti != "same")
    assert not guard.first_use("jkt", "same", int(time.time()) + 60)


def test_proofs_awaited_on_an_event_loop_let_exactly_one_through(services) -> None:  # type: ignore[no-untyped-def]
    """The API records a DPoP proof while its request waits on the event loop (a writer
    thread stores the proofs queued meanwhile together, and stays for the next ones): the same
    proof sent by many requests at once, among others and beside requests waiting in threads,
    is accepted once; a later use of it, from either side, is refused."""
    import asyncio
    import threading
    import time

    from interop.access.helseid.replay import JtiReplayGuard

    guard = JtiReplayGuard(lambda: services.engine)
    expires = int(time.time()) + 60
    in_threads: list[bool] = []

    def use_in_thread() -> None:
        in_threads.append(guard.first_use("jkt", "same", expires))

    async def main() -> list[bool]:
        threads = [threading.Thread(target=use_in_thread) for _ in range(4)]
        for t in threads:
            t.start()
        same = [guard.first_use_async("jkt", "same", expires) for _ in range(12)]
        others = [guard.first_use_async("jkt", f"other-{i}", expires) for i in range(40)]
        results = await asyncio.gather(*same, *others)
        await asyncio.to_thread(lambda: [t.join() for t in threads])
        # after a pause the writer thread is still there, or a new one starts: both work
        await asyncio.sleep(0.05)
        results.append(await guard.first_use_async("jkt", "late", expires))
        results.append(await guard.first_use_async("jkt", "same", expires))
        return results

    results = asyncio.run(main())
    assert sum(results[:12]) + sum(in_threads) == 1
    assert all(results[12:52])
    assert results[52:] == [True, False]
    assert not guard.first_use("jkt", "late", expires)
