"""The benchmark's HelseID: a local issuer (``interop.access.helseid.local_issuer``) the API
server trusts, and the client map that makes the GP's EPJ a ``gp`` client."""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

from interop.access.helseid.local_issuer import AUDIENCE, SCOPE, DpopClient, Issuer
from interop.bench.actors import GP_HPR

EPJ_CLIENT = "bench-gp-epj"
PRACTICE_ORGNR = "974760673"


def server_env(issuer: Issuer) -> dict[str, str]:
    """Settings for the API server under test: trust the local issuer, map the GP's EPJ."""
    folder = Path(tempfile.mkdtemp(prefix="dho-bench-helseid-"))
    clients = folder / "helseid-clients.yaml"
    clients.write_text(
        "clients:\n"
        f'  - client_id: "{EPJ_CLIENT}"\n'
        "    role: gp\n"
        '    name: "Legekontorets EPJ (bench)"\n',
        encoding="utf-8",
    )
    return {
        "INTEROP_HELSEID_ISSUER": issuer.url,
        "INTEROP_HELSEID_AUDIENCE": AUDIENCE,
        "INTEROP_HELSEID_REQUIRED_SCOPES": SCOPE,
        "INTEROP_HELSEID_CLIENTS_FILE": str(clients),
    }


def gp_token(issuer: Issuer, client: DpopClient) -> str:
    """A logged-in GP's access token from the EPJ, bound to the EPJ's DPoP key, valid for an
    hour (the length of a benchmark run)."""
    claims = issuer.claims(
        client_id=EPJ_CLIENT,
        sub="bench-gp-user",
        name="Bench Lege",
        cnf={"jkt": client.jkt},
        **{
            "helseid://claims/hpr/hpr_number": GP_HPR,
            "helseid://claims/identity/security_level": "4",
            "helseid://claims/client/claims/orgnr_parent": PRACTICE_ORGNR,
            "helseid://claims/client/claims/orgnr_child": None,
        },
    )
    claims["exp"] = int(time.time()) + 3600
    return issuer.token(claims)
