from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from interop.national.helseid import HelseIdClients
from tests.edi2_server import Meldingstjener
from tests.live_server import live_server
from tests.messaging.test_gp_flow import FNR
from tests.national.ar_server import Adresseregisteret, organisation, person
from tests.national.flr_server import Fastlegeregisteret
from tests.national.helseid_env import CLIENTS, HelseIdEnv, helseid_env
from tests.national.nhn_auth import ApiGuard

OUR_HER = {"fjordvik": ["80001", "80002"], "havbygd": ["81001"]}


@dataclass
class National:
    helseid: HelseIdEnv
    clients: HelseIdClients
    mt: Meldingstjener
    edi2_url: str


@pytest.fixture
def national(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[National]:
    with helseid_env(tmp_path, OUR_HER, monkeypatch) as env:
        mt = Meldingstjener(
            ApiGuard(env.issuer, "nhn:msh", "nhn:msh/api"),
            {CLIENTS[t][0]: {int(h) for h in hers} for t, hers in OUR_HER.items()},
        )
        with live_server(mt.app()) as base:
            yield National(env, HelseIdClients(env.config), mt, base)
        assert mt.violations == [], mt.violations


PRACTICE = (80010, "Kattskinnet legesenter", "891417772")
OTHER_PRACTICE = (80020, "Fjordlegene", "811524492")


@dataclass
class Registers:
    ar: Adresseregisteret
    flr: Fastlegeregisteret


@pytest.fixture
def registers(national: National, services: Any) -> Iterator[Registers]:
    """Adresseregisteret (two practices, a GP in each) and Fastlegeregisteret (the first
    patient's GP 80011), served against their contracts, and the operator's settings for them."""
    ar = Adresseregisteret(
        ApiGuard(national.helseid.issuer, "nhn:cp-api", "nhn:cp-api/access-v2-dpop")
    )
    ar.parties[80011] = person(80011, "Rita Lin", 9144900, PRACTICE)
    ar.parties[80010] = organisation(*PRACTICE, persons=[80011])
    ar.parties[80021] = person(80021, "Ola Berg", 9144901, OTHER_PRACTICE)
    ar.parties[80020] = organisation(*OTHER_PRACTICE, persons=[80021])
    flr = Fastlegeregisteret("dho-fjordvik", "grunndata-passord")
    flr.gp[FNR] = 80011
    with live_server(ar.app()) as ar_url, live_server(flr.app()) as flr_url:
        # the operator's configuration
        s = services.settings
        s.helseid_tenants_file = national.helseid.tenants_file
        s.edi2_base_url = national.edi2_url
        s.ar_base_url = ar_url
        s.flr_url = f"{flr_url}/v2/flr"
        s.flr_username = "dho-fjordvik"
        s.flr_password = SecretStr("grunndata-passord")
        yield Registers(ar, flr)
        assert ar.violations == [] and flr.violations == []
