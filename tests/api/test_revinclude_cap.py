"""``_revinclude`` reads at most ``MAX_REVINCLUDE`` referrers per spec: when more refer to the
page, the Bundle says so (an OperationOutcome warning naming ``_revinclude``), never a silent
cut; and a restricted actor's referrers are chosen among the patients it reaches in the
query, so other patients' resources (which the policy's filter drops) never take the places
of its own."""

from __future__ import annotations

from typing import Any

import pytest

from interop.store import search_breadth
from tests.api.test_meta_and_system_search import GP_A, HPR, _post, _world

CAP = 3


def _plan(pid: str, practitioner: str) -> dict[str, Any]:
    return {
        "resourceType": "CarePlan",
        "status": "active",
        "intent": "plan",
        "subject": {"reference": f"Patient/{pid}"},
        "activity": [
            {
                "detail": {
                    "status": "in-progress",
                    "performer": [{"reference": f"Practitioner/{practitioner}"}],
                }
            }
        ],
    }


def _entries(body: dict[str, Any], mode: str) -> list[dict[str, Any]]:
    return [e for e in body.get("entry", []) if e["search"]["mode"] == mode]


def test_revinclude_cap_is_told_and_counts_what_the_actor_sees(client, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setattr(search_breadth, "MAX_REVINCLUDE", CAP)
    a, b, _ca, _cb, gp = _world(client)
    r = client.get(f"/fhir/Practitioner?identifier={HPR}|{GP_A}")
    practitioner = r.json()["entry"][0]["resource"]["id"]
    # the other patient's plans first (the referrers are read in id order), then A's two
    theirs = [_post(client, _plan(b, practitioner)) for _ in range(CAP)]
    mine = [_post(client, _plan(a, practitioner)) for _ in range(2)]
    q = f"/fhir/Practitioner?_id={practitioner}&_revinclude=CarePlan:performer"

    # the GP: its patient's two plans, no warning (fewer than the cap are its to see)
    body = client.get(q, headers=gp).json()
    assert {e["resource"]["id"] for e in _entries(body, "include")} == set(mine)
    assert not _entries(body, "outcome")
    assert b not in str(body)

    # an admin: the cap's worth, and a warning that there are more
    body = client.get(q).json()
    got = {e["resource"]["id"] for e in _entries(body, "include")}
    assert len(got) == CAP and got <= set(theirs + mine)
    (outcome,) = _entries(body, "outcome")
    (issue,) = outcome["resource"]["issue"]
    assert issue["severity"] == "warning"
    assert issue["expression"] == ["_revinclude"]
    assert f"more than {CAP}" in issue["diagnostics"]


@pytest.mark.parametrize(("iterate", "made"), [(False, CAP - 1), (True, CAP - 1), (False, CAP)])
def test_revinclude_up_to_the_cap_has_no_warning(
    client, monkeypatch, iterate: bool, made: int
) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setattr(search_breadth, "MAX_REVINCLUDE", CAP)
    a, _b, _ca, _cb, _gp = _world(client)
    r = client.get(f"/fhir/Practitioner?identifier={HPR}|{GP_A}")
    practitioner = r.json()["entry"][0]["resource"]["id"]
    # exactly the cap's worth is all of them: nothing left out, nothing to warn of
    mine = [_post(client, _plan(a, practitioner)) for _ in range(made)]
    key = "_revinclude:iterate" if iterate else "_revinclude"
    body = client.get(f"/fhir/Practitioner?_id={practitioner}&{key}=CarePlan:performer").json()
    assert {e["resource"]["id"] for e in _entries(body, "include")} == set(mine)
    assert not _entries(body, "outcome")
