"""``_revinclude`` adds at most a thousand resources to a page; when there are more, the page
says so (an OperationOutcome entry naming ``_revinclude``) rather than leaving them out
silently."""

from __future__ import annotations


def patients_of(client, oid: str, n: int) -> None:  # type: ignore[no-untyped-def]
    """``n`` Patients managed by Organization ``oid``, in one transaction."""
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {
                "request": {"method": "POST", "url": "Patient"},
                "resource": {
                    "resourceType": "Patient",
                    "managingOrganization": {"reference": f"Organization/{oid}"},
                },
            }
            for _ in range(n)
        ],
    }
    r = client.post("/fhir", json=bundle)
    assert r.status_code == 200, r.text[:300]


def test_a_capped_revinclude_says_so(client) -> None:  # type: ignore[no-untyped-def]
    org = client.post("/fhir/Organization", json={"resourceType": "Organization", "name": "K"})
    assert org.status_code == 201, org.text
    oid = org.json()["id"]
    patients_of(client, oid, 1001)
    url = f"/fhir/Organization?_id={oid}&_revinclude=Patient:organization"
    entries = client.get(url).json()["entry"]
    included = [e for e in entries if e["search"]["mode"] == "include"]
    outcomes = [e["resource"] for e in entries if e["search"]["mode"] == "outcome"]
    assert len(included) == 1000
    assert outcomes, "1 of 1001 Patients was left out without a word"
    text = " ".join(i["diagnostics"] for o in outcomes for i in o["issue"])
    assert "_revinclude" in text and "1000" in text, text
    # under the cap: no such warning
    small = client.get(f"/fhir/Organization?_id={oid}&_revinclude=Patient:general-practitioner")
    assert not [e for e in small.json().get("entry", []) if e["search"]["mode"] == "outcome"]
