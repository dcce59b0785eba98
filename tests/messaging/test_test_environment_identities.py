"""Person numbers of the national test environments (Test-Norge/Tenor, NHN's reserved test
persons) in received messages: accepted when ``INTEROP_ENVIRONMENT=test``, refused (E31) in
production — never silently taken as a real patient."""

from __future__ import annotations

from pathlib import Path

import pytest

from interop.config import Settings
from interop.identifiers import generate_fnr
from interop.synthetic_identities import patient_id_problem, synthetic_family_of
from plo_messages import KithMessages
from tests.conftest import SHARED

# a real WebMed test message from NHN's test network (to 8142987 / 8143060)
WEBMED = (
    SHARED / "corpus" / "kith" / "ks-fiks-nhn" / "dialogmelding" / "dialog-notat-webmed-test.xml"
)
OURS = {"8142987", "8143060"}


@pytest.fixture(scope="module")
def kith(kith_schema_dir: Path) -> KithMessages:
    return KithMessages(kith_schema_dir)


def test_nhn_test_network_message_is_taken_only_in_a_test_environment(
    kith: KithMessages,
) -> None:
    data = WEBMED.read_bytes()
    prod = kith.receive(data, own_her_ids=OURS)
    assert [e.v for e in prod.errors] == ["E31"] and prod.answer_from
    assert "testnummer" in (prod.errors[0].ot or "")
    test = kith.receive(data, own_her_ids=OURS, test_environment=True)
    assert test.outcome == "accepted", test.errors


def test_tenor_numbers_are_test_numbers_and_real_ones_are_not() -> None:
    import random
    from datetime import date

    tenor = generate_fnr(date(1980, 5, 17), rng=random.Random(1), synthetic=True)
    family = synthetic_family_of(tenor)
    assert family is not None and family.month_offset == 80
    assert patient_id_problem(tenor, test_environment=True) is None
    assert patient_id_problem(tenor, test_environment=False)
    nhn = synthetic_family_of("15720255178")
    assert nhn is not None and nhn.month_offset == 65
    # ordinary numbers are what they always were, in both environments
    for real in ("13116900216", "15076500565"):
        assert synthetic_family_of(real) is None
        assert patient_id_problem(real, test_environment=False) is None
    assert patient_id_problem("15720255179", test_environment=True)  # control digit wrong


def test_the_environment_setting_defaults_to_production(monkeypatch: pytest.MonkeyPatch) -> None:
    assert Settings().environment == "production"
    monkeypatch.setenv("INTEROP_ENVIRONMENT", "test")
    assert Settings().environment == "test"
    monkeypatch.setenv("INTEROP_ENVIRONMENT", "staging")
    with pytest.raises(ValueError):
        Settings()
