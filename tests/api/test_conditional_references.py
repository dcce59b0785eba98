"""A conditional reference (``Patient?identifier=…``) is not resolved by this server: a write
that carries one is refused with a 400 naming the element, on every door, rather than stored
with a search string where the patient should be (a red Flag about nobody, in no patient's
record)."""

from __future__ import annotations

from typing import Any

FNR = "urn:oid:2.16.578.1.12.4.1.4.1|13031353453"


def _flag(reference: str) -> dict[str, Any]:
    return {
        "resourceType": "Flag",
        "status": "active",
        "code": {"text": "rød"},
        "subject": {"reference": reference},
    }


def _bundle(kind: str, resource: dict[str, Any]) -> dict[str, Any]:
    return {
        "resourceType": "Bundle",
        "type": kind,
        "entry": [{"request": {"method": "POST", "url": "Flag"}, "resource": resource}],
    }


def _flags(client: Any) -> int:
    return int(client.get("/fhir/Flag?_summary=count").json()["total"])


def test_a_conditional_reference_is_refused_not_stored(client) -> None:  # type: ignore[no-untyped-def]
    r = client.post(
        "/fhir/Patient",
        json={
            "resourceType": "Patient",
            "identifier": [{"system": FNR.split("|")[0], "value": FNR.split("|")[1]}],
        },
    )
    assert r.status_code == 201, r.text
    for reference in (f"Patient?identifier={FNR}", f"Patient?_id={r.json()['id']}"):
        writes = [
            client.post("/fhir/Flag", json=_flag(reference)),
            client.put("/fhir/Flag/cond-ref-1", json={**_flag(reference), "id": "cond-ref-1"}),
            client.post("/fhir", json=_bundle("transaction", _flag(reference))),
        ]
        for w in writes:
            assert w.status_code == 400, w.text
            issue = w.json()["issue"][0]
            assert "Flag.subject" in (issue.get("expression") or [""])[0] + issue["diagnostics"], (
                w.text
            )
        batch = client.post("/fhir", json=_bundle("batch", _flag(reference)))
        assert batch.status_code == 200 and batch.json()["entry"][0]["response"][
            "status"
        ].startswith("400")
    assert _flags(client) == 0
