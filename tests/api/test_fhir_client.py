"""A real FHIR client library (fhirpy) against a running server: create, read, search, paging."""

from __future__ import annotations

from fhirpy import SyncFHIRClient

from interop.api.app import create_app
from tests.live_server import live_server

FNR_SYSTEM = "urn:oid:2.16.578.1.12.4.1.4.1"


def test_fhirpy_create_read_search_page(settings, services) -> None:  # type: ignore[no-untyped-def]
    app = create_app(settings, services=services)
    with live_server(app) as base:
        client = SyncFHIRClient(f"{base}/fhir", authorization="Bearer test-admin-key")
        patient = client.resource(
            "Patient",
            identifier=[{"system": FNR_SYSTEM, "value": "13031353453"}],
            name=[{"family": "Fjellheim", "given": ["Ola"]}],
        )
        patient.save()
        assert patient.id
        fetched = client.reference("Patient", patient.id).to_resource()
        assert fetched["name"][0]["family"] == "Fjellheim"

        for i in range(23):
            client.resource(
                "Observation",
                status="final",
                code={"coding": [{"system": "http://loinc.org", "code": "29463-7"}]},
                subject={"reference": f"Patient/{patient.id}"},
                effectiveDateTime=f"2026-02-{i + 1:02d}T07:30:00+01:00",
                valueQuantity={
                    "value": 80 + i / 10,
                    "unit": "kg",
                    "system": "http://unitsofmeasure.org",
                    "code": "kg",
                },
            ).save()

        found = client.resources("Patient").search(identifier=f"{FNR_SYSTEM}|13031353453").fetch()
        assert [p.id for p in found] == [patient.id]

        search = (
            client.resources("Observation")
            .search(
                patient=f"Patient/{patient.id}",
                code="http://loinc.org|29463-7",
                date__ge="2026-02-05",
            )
            .sort("date")
            .limit(5)
        )
        # fetch_all follows the server's `next` links page by page
        everything = search.fetch_all()
        dates = [o["effectiveDateTime"] for o in everything]
        assert len(dates) == 19
        assert dates == sorted(dates)
        assert len(set(o.id for o in everything)) == 19
        assert search.count() == 19
