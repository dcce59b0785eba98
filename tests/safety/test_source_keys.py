"""The same source id for another patient is never a duplicate or an update.

Source ids are unique per source *and patient* only (Fitbit's ``logId`` is unique per user,
devices are re-issued between patients): a measurement id that reappears for another patient
is stored on that patient, reported as ``identifier-conflict`` and kept for an operator; the
first patient's Observation never changes, least of all its subject. Real samples from
``../shared/corpus`` and ``../shared/conformance``.
"""

from __future__ import annotations

import json
import re
from datetime import date
from random import Random
from typing import Any

from adapters.base import FNR_OID, IngestMeta, PatientRef
from interop.identifiers import generate_fnr
from interop.ingest.pipeline import IngestPipeline, IngestReport
from tests.conftest import CONFORMANCE, SHARED

CORPUS = SHARED / "corpus" / "ingest"
FITBIT = CONFORMANCE / "vendor" / "shimmer" / "fitbit-body-log-weight.json"
_rng = Random(16)
A, B, C = (generate_fnr(date(1950 + i, 3, 4), rng=_rng, synthetic=True) for i in range(3))


def _patients(client) -> dict[str, str]:  # type: ignore[no-untyped-def]
    out = {}
    for fnr in (A, B, C):
        r = client.post(
            "/fhir/Patient",
            json={"resourceType": "Patient", "identifier": [{"system": FNR_OID, "value": fnr}]},
        )
        assert r.status_code == 201, r.text
        out[fnr] = r.json()["id"]
    return out


def _ingest(services, adapter: str, data: bytes, fnr: str | None, **options: str) -> IngestReport:  # type: ignore[no-untyped-def]
    meta = IngestMeta(
        source="corpus",
        patient=PatientRef(FNR_OID, fnr) if fnr else None,
        options=options,
    )
    return IngestPipeline(services).ingest(adapter, data, meta)


def _observations(client, pid: str) -> list[dict[str, Any]]:  # type: ignore[no-untyped-def]
    b = client.get("/fhir/Observation", params={"patient": pid, "_count": 500}).json()
    return [e["resource"] for e in b.get("entry", []) if e["search"]["mode"] == "match"]


def _conflicts(report: IngestReport) -> list[dict[str, Any]]:
    return [d for d in report.diagnostics if d.get("code") == "identifier-conflict"]


def test_fitbit_log_ids_are_per_user(client, services) -> None:  # type: ignore[no-untyped-def]
    pids = _patients(client)
    data = FITBIT.read_bytes()
    profile = {"profile": "fitbit-body-log-weight"}
    first = _ingest(services, "mapped-json", data, A, **profile)
    assert first.created == 4 and not _conflicts(first)
    before = {o["id"]: o for o in _observations(client, pids[A])}
    assert len(before) == 4

    # the same file for another patient: four new measurements of that patient, each reported
    second = _ingest(services, "mapped-json", data, B, **profile)
    assert (second.created, second.duplicate, second.updated) == (4, 0, 0), second.diagnostics
    assert len(_conflicts(second)) == 4
    assert all(d["severity"] == "warning" for d in _conflicts(second))
    assert len(_observations(client, pids[B])) == 4

    # the same ids with changed values for a third patient: new, never an update of A's
    changed = json.loads(data)
    for rec in changed["weight"]:
        rec["weight"] = rec["weight"] + 10
    third = _ingest(services, "mapped-json", json.dumps(changed).encode(), C, **profile)
    assert (third.created, third.updated, third.duplicate) == (4, 0, 0), third.diagnostics
    assert len(_conflicts(third)) == 4
    after = {o["id"]: o for o in _observations(client, pids[A])}
    assert after.keys() == before.keys()
    for oid, obs in after.items():
        assert obs["subject"] == {"reference": f"Patient/{pids[A]}"}
        assert obs["meta"]["versionId"] == "1"
        assert obs["valueQuantity"] == before[oid]["valueQuantity"]
        # the first patient's Observations keep the source's own id (as stored before)
        assert obs["identifier"][0]["system"] == "urn:dho-interop:source:fitbit"
        assert "@" not in obs["identifier"][0]["value"]
    weights_c = sorted(o["valueQuantity"]["value"] for o in _observations(client, pids[C]))
    assert weights_c == sorted(r["weight"] for r in changed["weight"])

    # re-sends are duplicates for each patient, and changes stay on their own patient
    for fnr in (A, B):
        again = _ingest(services, "mapped-json", data, fnr, **profile)
        assert (again.created, again.updated, again.duplicate) == (0, 0, 4), again.diagnostics
    corrected = _ingest(services, "mapped-json", data, C, **profile)
    assert (corrected.created, corrected.updated) == (0, 4)
    assert all(
        o["subject"]["reference"] == f"Patient/{pids[C]}" for o in _observations(client, pids[C])
    )
    assert {o["id"] for o in _observations(client, pids[A])} == before.keys()

    # the operator sees every conflict, with the item it became
    listed = client.get("/api/v1/quarantine", params={"status": "conflict"}).json()
    assert len(listed) == 8
    assert {x["reasonCode"] for x in listed} == {"identifier-conflict"}
    assert {x["patient"]["value"] for x in listed} == {B, C}


def test_open_mhealth_header_ids_are_per_patient(client, services) -> None:  # type: ignore[no-untyped-def]
    pids = _patients(client)
    body = json.loads(
        (CORPUS / "openmhealth" / "heart-rate-1.0_pass_with-everything.json").read_bytes()
    )
    point = {
        "header": {
            "id": "243c773b-8936-407e-9c23-270d0ea49cc4",
            "creation_date_time": "2013-02-05T07:25:00Z",
            "schema_id": {"namespace": "omh", "name": "heart-rate", "version": "1.0"},
        },
        "body": body,
    }
    data = json.dumps(point).encode()
    assert _ingest(services, "openmhealth", data, A).created == 1
    body["heart_rate"]["value"] = 140
    second = _ingest(services, "openmhealth", json.dumps(point).encode(), B)
    assert (second.created, second.updated, second.duplicate) == (1, 0, 0), second.diagnostics
    assert len(_conflicts(second)) == 1
    [a] = _observations(client, pids[A])
    [b] = _observations(client, pids[B])
    assert a["valueQuantity"]["value"] == 50 and a["subject"]["reference"] == f"Patient/{pids[A]}"
    assert b["valueQuantity"]["value"] == 140 and b["subject"]["reference"] == f"Patient/{pids[B]}"


def test_fhir_identifiers_are_per_patient(client, services) -> None:  # type: ignore[no-untyped-def]
    pids = _patients(client)
    obs = json.loads((CORPUS / "fhir" / "phd-numeric-spotnumeric.json").read_bytes())
    obs.pop("device", None)

    def for_patient(fnr: str, value: int) -> bytes:
        obs["subject"] = {"identifier": {"system": FNR_OID, "value": fnr}}
        obs["valueQuantity"]["value"] = value
        return json.dumps(obs).encode()

    assert _ingest(services, "fhir", for_patient(A, 48), None).created == 1
    second = _ingest(services, "fhir", for_patient(B, 48), None)
    assert (second.created, second.duplicate) == (1, 0), second.diagnostics
    third = _ingest(services, "fhir", for_patient(C, 99), None)
    assert (third.created, third.updated) == (1, 0), third.diagnostics
    [a] = _observations(client, pids[A])
    assert a["valueQuantity"]["value"] == 48 and a["subject"]["reference"] == f"Patient/{pids[A]}"
    assert [o["valueQuantity"]["value"] for o in _observations(client, pids[C])] == [99]


def test_hl7v2_from_a_reissued_device_is_per_patient(client, services) -> None:  # type: ignore[no-untyped-def]
    """A device (EUI-64 in OBX-18) re-issued to another patient: same device, same reading
    time, another PID-3 and message id — the second patient's reading, not a duplicate."""
    pids = _patients(client)
    raw = (CONFORMANCE / "vendor" / "continua-ipf" / "valid-bp-continua-wan.hl7v2").read_bytes()

    def for_patient(fnr: str, control_id: str) -> bytes:
        text = re.sub(rb"PID\|\|\|[^|]*", f"PID|||{fnr}^^^^FNR".encode(), raw)
        return text.replace(b"|MSGID1234|", f"|{control_id}|".encode())

    first = _ingest(services, "hl7v2", for_patient(A, "M1"), None)
    assert first.created >= 1, first.diagnostics
    second = _ingest(services, "hl7v2", for_patient(B, "M2"), None)
    assert (second.created, second.duplicate, second.updated) == (first.created, 0, 0)
    assert len(_observations(client, pids[A])) == first.created
    assert len(_observations(client, pids[B])) == first.created


def test_quarantined_items_of_two_unknown_patients_are_both_kept(client, services) -> None:  # type: ignore[no-untyped-def]
    """Held for patients not yet known, the same source id for two vendor users is two items;
    linking releases each onto its own patient."""
    pids = _patients(client)
    data = FITBIT.read_bytes()

    def as_user(user: str) -> IngestReport:
        meta = IngestMeta(
            source="fitbit",
            patient=PatientRef("urn:dho-interop:vendor-user:fitbit", user),
            options={"profile": "fitbit-body-log-weight"},
        )
        return IngestPipeline(services).ingest("mapped-json", data, meta)

    assert as_user("u-a").quarantined == 4
    second = as_user("u-b")
    assert (second.quarantined, second.duplicate) == (4, 0), second.diagnostics
    assert len(_conflicts(second)) == 4
    for user, fnr in (("u-a", A), ("u-b", B)):
        r = client.post(
            "/api/v1/patient-links",
            json={
                "system": "urn:dho-interop:vendor-user:fitbit",
                "userId": user,
                "nationalId": fnr,
            },
        )
        assert r.status_code == 201, r.text
    assert len(_observations(client, pids[A])) == 4
    assert len(_observations(client, pids[B])) == 4


def test_a_released_item_never_joins_another_patients_observation(client, services) -> None:  # type: ignore[no-untyped-def]
    pids = _patients(client)
    data = FITBIT.read_bytes()
    profile = {"profile": "fitbit-body-log-weight"}
    assert _ingest(services, "mapped-json", data, A, **profile).created == 4
    meta = IngestMeta(
        source="fitbit",
        patient=PatientRef("urn:dho-interop:vendor-user:fitbit", "u-b"),
        options=profile,
    )
    assert IngestPipeline(services).ingest("mapped-json", data, meta).quarantined == 4
    r = client.post(
        "/api/v1/patient-links",
        json={"system": "urn:dho-interop:vendor-user:fitbit", "userId": "u-b", "nationalId": B},
    )
    assert r.status_code == 201, r.text
    assert r.json()["quarantine"].get("conflict") == 4
    assert len(_observations(client, pids[B])) == 4
    assert all(
        o["subject"]["reference"] == f"Patient/{pids[A]}" for o in _observations(client, pids[A])
    )
    listed = client.get("/api/v1/quarantine", params={"status": "conflict"}).json()
    assert len(listed) == 4
