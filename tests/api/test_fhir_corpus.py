"""Every resource and Bundle in ../shared/corpus/fhir (official R4 examples and Synthea patients,
see its PROVENANCE.md) either lands and reads back as sent, or is refused with a 4xx
OperationOutcome naming the problem. Never a 5xx.

The spec examples are written with their own ids (update-as-create), the people and
organisations first, so that the references between them resolve. A file is compared with
what is read back number for number as written (``0.010`` stays ``0.010``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import SHARED

FHIR_JSON = "application/fhir+json"
CORPUS = SHARED / "corpus" / "fhir"
SPEC = sorted((CORPUS / "spec-r4").glob("*.json"))
SYNTHEA = sorted((CORPUS / "synthea").glob("*.json"))

# written first: what the other examples refer to
FIRST = ("Organization", "Practitioner", "Patient", "PractitionerRole", "Endpoint", "Device")

# file → (HTTP status, text the OperationOutcome must contain, why refusing is correct)
REFUSED: dict[str, tuple[int, str, str]] = {
    **{
        name: (
            403,
            "written by the server only",
            "AuditEvents are the server's own record of who accessed what; a client-written one "
            "would forge the audit log",
        )
        for name in (
            "audit-event-example-login.json",
            "audit-event-example-logout.json",
            "audit-event-example-media.json",
            "audit-event-example-pixQuery.json",
            "audit-event-example-search.json",
            "audit-event-example-vread.json",
            "auditevent-example-error.json",
            "auditevent-example.json",
        )
    },
    **{
        name: (
            422,
            f"'Patient/{pid}' names no Patient on this server",
            "the example refers to a Patient that is in none of the examples; a record about a "
            "Patient who is not there would be filed under nobody (or under whoever later gets "
            "that id)",
        )
        for name, pid in (
            ("careplan-example-GPVisit.json", "100"),
            ("careplan-example-pregnancy.json", "1"),
            ("communication-example-fm-attachment.json", "1"),
            ("communication-example-fm-solicited-attachment.json", "1"),
            ("consent-example-signature.json", "72"),
            ("observation-example-bgpanel.json", "infant"),
            ("observation-example-bloodgroup.json", "infant"),
            ("observation-example-rhstatus.json", "infant"),
            ("observation-example-secondsmoke.json", "infant"),
            ("observation-example-trachcare.json", "infant"),
            ("observation-example-vomiting.json", "infant"),
            ("observation-example-diplotype1.json", "727127"),
            ("observation-example-haplotype1.json", "727127"),
            ("observation-example-haplotype2.json", "727127"),
            ("observation-example-phenotype.json", "727127"),
            ("observation-example-genetics-brcapat.json", "brcapat"),
        )
    },
    "observation-example-clinical-gender.json": (
        422,
        "Observation.performer[0]: 'Encounter/example' refers to type Encounter",
        "an Encounter is not a performer (R4: Practitioner, PractitionerRole, Organization, "
        "CareTeam, Patient, RelatedPerson); a reference of the wrong type is refused",
    ),
}


def _exact(raw: str) -> Any:
    """JSON with every decimal kept as the text it was written in."""
    return json.loads(raw, parse_float=lambda s: ("decimal", s))


def _strip(resource: Any) -> Any:
    return {k: v for k, v in resource.items() if k not in ("id", "meta")}


def _order(path: Path) -> tuple[int, str]:
    rtype = json.loads(path.read_text(encoding="utf-8"))["resourceType"]
    return (FIRST.index(rtype) if rtype in FIRST else len(FIRST), path.name)


def test_corpus_is_there() -> None:
    assert len(SPEC) == 158, f"expected the 158 R4 examples under {CORPUS}"
    assert len(SYNTHEA) == 5
    assert set(REFUSED) <= {p.name for p in SPEC}


def _first_in_one_transaction(client) -> None:  # type: ignore[no-untyped-def]
    """The people and organisations go in one transaction: two Patients link to each other
    (patient-example-a/-b), which one transaction can write and two separate writes cannot."""
    entries = []
    for path in SPEC:
        raw = path.read_text(encoding="utf-8")
        resource = json.loads(raw)
        if resource["resourceType"] in FIRST and path.name not in REFUSED:
            url = f"{resource['resourceType']}/{resource['id']}"
            entries.append(f'{{"resource":{raw},"request":{{"method":"PUT","url":"{url}"}}}}')
    bundle = '{"resourceType":"Bundle","type":"transaction","entry":[' + ",".join(entries) + "]}"
    r = client.post("/fhir", content=bundle.encode(), headers={"Content-Type": FHIR_JSON})
    assert r.status_code == 200, r.text


def test_spec_examples_land_or_are_refused(client) -> None:  # type: ignore[no-untyped-def]
    problems: list[str] = []
    _first_in_one_transaction(client)
    for path in sorted(SPEC, key=_order):
        raw = path.read_text(encoding="utf-8")
        sent = _exact(raw)
        rtype, rid = sent["resourceType"], sent["id"]
        if rtype in FIRST and path.name not in REFUSED:
            r = client.get(f"/fhir/{rtype}/{rid}")  # written by the transaction
        else:
            r = client.put(
                f"/fhir/{rtype}/{rid}", content=raw.encode(), headers={"Content-Type": FHIR_JSON}
            )
        if path.name in REFUSED:
            status, needle, _why = REFUSED[path.name]
            if r.status_code != status or needle not in r.text:
                problems.append(f"{path.name}: expected {status} naming {needle!r}, got {r.text}")
            elif r.json().get("resourceType") != "OperationOutcome":
                problems.append(f"{path.name}: refusal is not an OperationOutcome")
            continue
        if r.status_code not in (200, 201):
            problems.append(f"{path.name}: {r.status_code} {r.text[:300]}")
            continue
        back = client.get(f"/fhir/{rtype}/{rid}")
        if back.status_code != 200:
            problems.append(f"{path.name}: read back {back.status_code}")
            continue
        read = _strip(_exact(back.text))
        if rtype == "Task" and sent.get("status") == "completed" and "executionPeriod" not in sent:
            # a completed Task records when it was completed (issue 14 item 14)
            read.pop("executionPeriod", None)
        if read != _strip(sent):
            problems.append(f"{path.name}: read back differs from what was sent")
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("path", SYNTHEA, ids=lambda p: p.name.split("_")[0])
def test_synthea_transaction_lands_whole_or_not_at_all(client, path: Path) -> None:  # type: ignore[no-untyped-def]
    raw = path.read_text(encoding="utf-8")
    bundle = _exact(raw)
    assert bundle["type"] == "transaction"
    r = client.post(
        "/fhir", content=raw.encode(), headers={"Content-Type": "application/fhir+json"}
    )
    assert r.status_code < 500, r.text
    if r.status_code != 200:
        # all or nothing: a refused transaction names the entry and stores nothing
        outcome = r.json()
        assert 400 <= r.status_code < 500
        assert outcome["resourceType"] == "OperationOutcome"
        diagnostics = " ".join(i.get("diagnostics", "") for i in outcome["issue"])
        assert "Bundle.entry[" in diagnostics, diagnostics
        assert client.get("/fhir/Patient", params={"_summary": "count"}).json()["total"] == 0
        assert client.get("/fhir/Observation", params={"_summary": "count"}).json()["total"] == 0
        return
    answer = r.json()
    assert len(answer["entry"]) == len(bundle["entry"])
    for sent, got in zip(bundle["entry"], answer["entry"], strict=True):
        assert got["response"]["status"].startswith("201"), got
        location = got["response"]["location"].split("/_history")[0]
        back = client.get(f"/fhir/{location}")
        assert back.status_code == 200
        read = _exact(back.text)
        sent_resource = sent["resource"]
        # references to other entries were rewritten to server ids; everything else is as sent
        for key in ("resourceType", "status", "code", "valueQuantity", "component", "name"):
            if key in sent_resource:
                assert read[key] == sent_resource[key], (location, key)
