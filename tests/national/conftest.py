from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from interop.national.helseid import HelseIdClients
from tests.edi2_server import Meldingstjener
from tests.live_server import live_server
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
