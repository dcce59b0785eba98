"""A count is the patient's data too: a search that answers only with a total
(``_summary=count``, ``_count=0``) is listed in the access list of every patient it counted,
like a search that returned their resources."""

from __future__ import annotations

from typing import Any

from tests.access.test_audit_accesses import FNR_A, FNR_B, JSON, _world


def _searches(client: Any, fnr: str) -> list[str]:
    r = client.get(f"/api/v1/audit/patients/{fnr}/accesses", headers=JSON)
    assert r.status_code == 200, r.text
    return [a["what"] for a in r.json()["accesses"] if a["action"] == "search"]


def test_a_count_is_listed_for_every_patient_it_counted(client) -> None:  # type: ignore[no-untyped-def]
    w = _world(client)
    gp = w["gp_a"]
    asked = [
        f"Observation?patient={w['a']}&_summary=count",
        "Observation?_summary=count",
        f"Patient/{w['a']}/*?_summary=count",
        "Observation?_count=0",
    ]
    for what in asked:
        before = len(_searches(client, FNR_A))
        r = client.get(f"/fhir/{what}", headers=gp)
        assert r.status_code == 200 and r.json()["total"] >= 1, r.text
        assert "entry" not in r.json() or not r.json()["entry"], r.text
        listed = _searches(client, FNR_A)
        assert len(listed) > before, (
            f"{what} counted A's data, and A's access list does not show it: {listed}"
        )
    # the GP counted nothing of B's
    assert not [s for s in _searches(client, FNR_B) if "count" in s or "_count" in s]
