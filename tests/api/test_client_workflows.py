"""The documented workflows of two FHIR client libraries nobody on the team wrote, unchanged,
against a running server: fhirpy (create, read, search with chains and includes, patch,
conditional update, paging) and SMART's fhirclient (capability, read, search, includes,
iterate pages, create, update, delete)."""

from __future__ import annotations

from typing import Any

import fhirclient.models.condition as fc_condition
import fhirclient.models.patient as fc_patient
from fhirclient import client as fc_client
from fhirpy import SyncFHIRClient

from interop.api.app import create_app
from tests.live_server import live_server

FNR_SYSTEM = "urn:oid:2.16.578.1.12.4.1.4.1"
SNOMED = "http://snomed.info/sct"


def test_fhirpy_documented_workflow(settings, services) -> None:  # type: ignore[no-untyped-def]
    with live_server(create_app(settings, services=services)) as base:
        client = SyncFHIRClient(f"{base}/fhir", authorization="Bearer test-admin-key")
        gp = client.resource("Practitioner", name=[{"family": "Lege", "given": ["Lise"]}])
        gp.save()
        patient = client.resource(
            "Patient",
            identifier=[{"system": FNR_SYSTEM, "value": "13031353453"}],
            name=[{"family": "Fjellheim", "given": ["Ola"]}],
            active=True,
            generalPractitioner=[gp.to_reference()],
        )
        patient.save()
        for code in ("38341003", "44054006", "195967001"):
            client.resource(
                "Condition",
                code={"coding": [{"system": SNOMED, "code": code}]},
                subject=patient.to_reference(),
            ).save()
        # read
        fetched = client.reference("Patient", patient.id).to_resource()
        assert fetched["name"][0]["family"] == "Fjellheim"
        # search with a chain (fhirpy: double underscores) and includes
        found = (
            client.resources("Condition")
            .search(subject__Patient__family="Fjellheim")
            .include("Condition", "subject")
            .fetch_raw()
        )
        modes = [e["search"]["mode"] for e in found["entry"]]
        assert modes.count("match") == 3 and modes.count("include") == 1
        pats = client.resources("Patient").search(identifier=f"{FNR_SYSTEM}|13031353453")
        with_gp = pats.include("Patient", "general-practitioner").revinclude("Condition", "subject")
        raw = with_gp.fetch_raw()
        types = sorted(e["resource"]["resourceType"] for e in raw["entry"])
        assert types == ["Condition"] * 3 + ["Patient", "Practitioner"]
        # patch (fhirpy sends the changed fields)
        patient.patch(active=False)
        assert client.reference("Patient", patient.id).to_resource()["active"] is False
        # conditional update: a search decides which resource is updated
        by_fnr = client.resources("Patient").search(identifier=f"{FNR_SYSTEM}|13031353453")
        updated, created = by_fnr.update(
            client.resource(
                "Patient",
                identifier=[{"system": FNR_SYSTEM, "value": "13031353453"}],
                name=[{"family": "Fjellheim", "given": ["Ola", "Kristian"]}],
            )
        )
        assert updated.id == patient.id and not created
        # conditional patch, and get_or_create (a conditional create)
        by_fnr.patch(active=True)
        same, created = by_fnr.get_or_create(
            client.resource("Patient", identifier=[{"system": FNR_SYSTEM, "value": "13031353453"}])
        )
        assert same.id == patient.id and not created
        again = client.resources("Patient").search(identifier=f"{FNR_SYSTEM}|13031353453").fetch()
        assert [p.id for p in again] == [patient.id]
        assert again[0]["name"][0]["given"] == ["Ola", "Kristian"]
        assert again[0]["active"] is True
        # paging: fetch_all follows the next links
        all_conditions = (
            client.resources("Condition").search(patient=patient.id).limit(2).fetch_all()
        )
        assert len(all_conditions) == 3
        assert client.resources("Condition").search(patient=patient.id).count() == 3
        # validation through the server
        assert client.resource("Condition", subject=patient.to_reference()).is_valid()
        assert not client.resource("Condition", subject={"reference": 7}).is_valid()


def _smart(base: str) -> Any:
    smart = fc_client.FHIRClient(settings={"app_id": "dho-test", "api_base": f"{base}/fhir/"})
    smart.server.session.headers["Authorization"] = "Bearer test-admin-key"
    return smart


def test_fhirclient_documented_workflow(settings, services) -> None:  # type: ignore[no-untyped-def]
    with live_server(create_app(settings, services=services)) as base:
        smart = _smart(base)
        smart.prepare()  # reads and parses the CapabilityStatement
        assert smart.server.capabilityStatement.fhirVersion == "4.0.1"
        patient = fc_patient.Patient(
            {
                "identifier": [{"system": FNR_SYSTEM, "value": "02028099471"}],
                "name": [{"family": "Hansen", "given": ["Kari"]}],
                "birthDate": "1980-02-02",
            }
        )
        created = patient.create(smart.server)
        pid = created["id"]
        read = fc_patient.Patient.read(pid, smart.server)
        assert read.birthDate.isostring == "1980-02-02"
        assert smart.human_name(read.name[0]) == "Kari Hansen"
        for i in range(5):
            fc_condition.Condition(
                {
                    "code": {"coding": [{"system": SNOMED, "code": f"3834100{i}"}]},
                    "subject": {"reference": f"Patient/{pid}"},
                }
            ).create(smart.server)
        search = fc_condition.Condition.where(struct={"subject": f"Patient/{pid}", "_count": "2"})
        conditions = list(search.perform_resources_iter(smart.server))
        assert len(conditions) == 5
        bundle = (
            fc_condition.Condition.where(struct={"patient": pid})
            .include("subject")
            .perform(smart.server)
        )
        kinds = [e.resource.resource_type for e in bundle.entry]
        assert kinds.count("Patient") == 1 and kinds.count("Condition") == 5
        rev = (
            fc_patient.Patient.where(struct={"_id": pid})
            .include("subject", fc_condition.Condition, reverse=True)
            .perform(smart.server)
        )
        assert len(rev.entry) == 6
        read.active = False
        read.update(smart.server)
        assert fc_patient.Patient.read(pid, smart.server).active is False
        conditions[0].delete(smart.server)
        assert len(list(search.perform_resources_iter(smart.server))) == 4
