"""Every FHIR example in ../shared/conformance/fhir: accepted and read back, or refused precisely.

Accepted examples are written with their own ids (update-as-create) so their references to each
other stay meaningful; Bundles go to the base as transaction/batch. Each refusal below states
why refusing is the right behaviour.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.conftest import CONFORMANCE

FHIR_DIR = CONFORMANCE / "fhir"
ALL = sorted(p.relative_to(FHIR_DIR).as_posix() for p in FHIR_DIR.rglob("*.json"))

# file → (HTTP status, text the OperationOutcome must contain, why refusing is correct)
REFUSED: dict[str, tuple[int, str, str]] = {
    "no-basis/Patient-EspenEksempel.json": (
        422,
        "210377xxxxx",
        "the example's fødselsnummer is masked ('210377xxxxx'); storing a national id that fails "
        "the mod-11 check would break patient identity resolution",
    ),
    "no-vkp-pmd/Observation-vkp-blood-pressure-profile-create.json": (
        422,
        "1000807",
        "subject.identifier claims the fødselsnummer system with the placeholder '1000807' "
        "(7 digits); measurements must never be filed under an invalid national id",
    ),
    "no-vkp-pmd/Observation-vkp-cfs-create.json": (422, "1000807", "as above"),
    "no-vkp-pmd/Observation-vkp-glucose-create.json": (422, "1000239", "as above"),
    "no-vkp-pmd/Observation-vkp-oxygen-saturation-create.json": (422, "1000239", "as above"),
    "no-vkp-pmd/Bundle-pmd-Bundle-Response-example.json": (
        400,
        "batch-response",
        "a batch-response is the answer to a batch, not something a client can submit",
    ),
    "r4-core/devicemetric-example.json": (
        422,
        "DeviceMetric.parent may only refer to Device",
        "the example's parent is a DeviceDefinition, but R4 types DeviceMetric.parent as "
        "Reference(Device); a reference of the wrong type is refused",
    ),
    "r4-core/auditevent-example-disclosure.json": (
        403,
        "written by the server only",
        "AuditEvents are the server's own record of who accessed what; no client writes them, "
        "or the audit log could be forged",
    ),
    "r4-core/bundle-transaction.json": (
        400,
        "Parameters",
        "the transaction carries a ValueSet/$lookup call (terminology operations are not offered) "
        "besides conditional update/delete (not offered, see the CapabilityStatement); a "
        "transaction is all-or-nothing, so the whole Bundle is refused and nothing is stored",
    ),
}
# batch Bundles whose entries are each refused (the batch itself is processed)
BATCH_ENTRIES_REFUSED = {
    "no-vkp-pmd/Bundle-pmd-Bundle-Request-example.json": (
        "422",
        "the PMD test batch files Observations under the placeholder fødselsnummer '1000239'",
    ),
}


def _load(rel: str) -> dict[str, Any]:
    return json.loads((FHIR_DIR / rel).read_text(encoding="utf-8"))


def _patients_referred_to(client, resource: dict[str, Any]) -> int:  # type: ignore[no-untyped-def]
    """Store the Patients an example refers to (a write naming a Patient that is not there is
    refused): the conformance set's own Patient with that id, or a Patient with just the id.
    Returns how many Patients are stored then."""
    from interop.fhir.references import references

    resources = [e.get("resource") or {} for e in resource.get("entry", [])] or [resource]
    own = {f"{r.get('resourceType')}/{r.get('id')}" for r in resources}
    for r in resources:
        if not isinstance(r, dict) or "resourceType" not in r:
            continue
        for ref in references(r):
            if ref.target_type != "Patient" or ref.base is not None:
                continue
            if f"Patient/{ref.target_id}" in own:
                continue
            known = PATIENTS.get(
                str(ref.target_id), {"resourceType": "Patient", "id": ref.target_id}
            )
            r = client.put(f"/fhir/Patient/{ref.target_id}", json=known)
            assert r.status_code in (200, 201), r.text
    return int(client.get("/fhir/Patient", params={"_summary": "count"}).json()["total"])


def _patients() -> dict[str, dict[str, Any]]:
    out = {}
    for rel in ALL:
        resource = _load(rel)
        if resource.get("resourceType") == "Patient" and rel not in REFUSED:
            out[resource["id"]] = resource
    return out


def _strip(resource: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in resource.items() if k not in ("id", "meta")}


def _first_coding(obs: dict[str, Any]) -> str:
    c = obs["code"]["coding"][0]
    return f"{c.get('system', '')}|{c['code']}"


PATIENTS = _patients()


def test_every_example_is_classified() -> None:
    assert ALL, f"no examples found under {FHIR_DIR}"
    assert set(REFUSED) | set(BATCH_ENTRIES_REFUSED) <= set(ALL)


def _findable(client, resource: dict[str, Any], rid: str) -> None:  # type: ignore[no-untyped-def]
    rtype = resource["resourceType"]
    subject = resource.get("subject") or resource.get("patient")
    if not isinstance(subject, dict) or "reference" not in subject:
        return
    ref = subject["reference"]
    if not ref.startswith("Patient/"):
        return
    params = {"patient": ref}
    if rtype == "Observation":
        params["code"] = _first_coding(resource)
    r = client.get(f"/fhir/{rtype}", params=params)
    assert r.status_code == 200, r.text
    ids = [e["resource"]["id"] for e in r.json().get("entry", []) if e["search"]["mode"] == "match"]
    assert rid in ids, f"{rtype}/{rid} not found by {params}"


@pytest.mark.parametrize("rel", ALL)
def test_example(client, rel: str) -> None:  # type: ignore[no-untyped-def]
    resource = _load(rel)
    rtype = resource["resourceType"]
    patients = _patients_referred_to(client, resource)
    if rel in REFUSED:
        status, needle, _why = REFUSED[rel]
        if rtype == "Bundle":
            r = client.post("/fhir", json=resource)
        else:
            r = client.put(f"/fhir/{rtype}/{resource['id']}", json=resource)
        assert r.status_code == status, r.text
        outcome = r.json()
        assert outcome["resourceType"] == "OperationOutcome"
        assert needle in json.dumps(outcome), outcome
        if rtype == "Bundle":
            # all or nothing: nothing from a refused transaction was stored
            count = client.get("/fhir/Patient", params={"_summary": "count"}).json()["total"]
            assert count == patients
        return
    if rtype == "Bundle":
        r = client.post("/fhir", json=resource)
        assert r.status_code == 200, r.text
        answer = r.json()
        assert answer["type"] == f"{resource['type']}-response"
        if rel in BATCH_ENTRIES_REFUSED:
            code, _why = BATCH_ENTRIES_REFUSED[rel]
            for e in answer["entry"]:
                assert e["response"]["status"].startswith(code)
                assert e["response"]["outcome"]["resourceType"] == "OperationOutcome"
            return
        assert len(answer["entry"]) == len(resource["entry"])
        for sent, got in zip(resource["entry"], answer["entry"], strict=True):
            assert got["response"]["status"].startswith("201"), got
            stored = got["resource"]
            assert stored["resourceType"] == sent["resource"]["resourceType"]
            read = client.get(f"/fhir/{stored['resourceType']}/{stored['id']}").json()
            assert read == stored
            _findable(client, read, read["id"])
        return
    r = client.put(f"/fhir/{rtype}/{resource['id']}", json=resource)
    assert r.status_code == 201, r.text
    read = client.get(f"/fhir/{rtype}/{resource['id']}")
    assert read.status_code == 200
    assert _strip(read.json()) == _strip(resource)
    _findable(client, resource, resource["id"])


def test_examples_ingested_twice_change_nothing(client) -> None:  # type: ignore[no-untyped-def]
    rel = "r4-core/observation-example-heart-rate.json"
    resource = _load(rel)
    _patients_referred_to(client, resource)
    assert client.put(f"/fhir/Observation/{resource['id']}", json=resource).status_code == 201
    r = client.put(f"/fhir/Observation/{resource['id']}", json=resource)
    # an unchanged final Observation cannot be "updated": immutability holds
    assert r.status_code == 409
