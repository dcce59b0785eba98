"""The benchmark's real users: a GP (fastlege) for half the data set's patients, the follow-up
centre managing all of them, and a vendor linked to all of them — so that reads, searches
and creates are measured through the access policy and the audit log, as those users meet
them, and not only with the admin key that skips both."""

from __future__ import annotations

from dataclasses import dataclass

import httpx
from sqlalchemy import insert, select

from adapters.base import vendor_user_system
from interop.bench import data
from interop.fhir.dates import now_utc, to_micros
from interop.store.context import WriteContext
from interop.store.generation import bump
from interop.store.repository import FhirStore
from interop.store.schema import patient_link_table

HPR = "urn:oid:2.16.578.1.12.4.1.4.4"
ORGNR = "urn:oid:2.16.578.1.12.4.1.4.101"
GP_HPR = "9144889"
CENTRE_ORGNR = "974760673"
VENDOR_ORGNR = "841672119"
GP_ID = "bench-gp"
CENTRE_ID = "bench-followup-centre"


def gp_patient(i: int) -> bool:
    """Whether patient ``i`` has the benchmark's GP as fastlege (every other patient)."""
    return i % 2 == 0


def ensure_care_relations(store: FhirStore, patients: int) -> None:
    """Give the data set's patients a GP, a follow-up centre and a vendor (once)."""
    with store.write(WriteContext.service()) as tx:
        if tx.get("Practitioner", GP_ID) is not None:
            return
        tx.update(
            "Practitioner",
            GP_ID,
            {
                "resourceType": "Practitioner",
                "id": GP_ID,
                "identifier": [{"system": HPR, "value": GP_HPR}],
                "name": [{"family": "Lege", "given": ["Bench"]}],
            },
        )
        tx.update(
            "Organization",
            CENTRE_ID,
            {
                "resourceType": "Organization",
                "id": CENTRE_ID,
                "identifier": [{"system": ORGNR, "value": CENTRE_ORGNR}],
                "name": "Oppfølgingstjenesten (bench)",
            },
        )
        linked = {
            r[0]
            for r in tx.conn.execute(
                select(patient_link_table.c.patient_id).where(
                    patient_link_table.c.system == vendor_user_system(VENDOR_ORGNR)
                )
            )
        }
        bump(tx.conn)
        for i in range(patients):
            pid = data.patient_id(i)
            current = tx.get("Patient", pid)
            if current is None:
                continue
            patient = current.json()
            patient.pop("meta", None)
            patient["managingOrganization"] = {"reference": f"Organization/{CENTRE_ID}"}
            if gp_patient(i):
                patient["generalPractitioner"] = [{"reference": f"Practitioner/{GP_ID}"}]
            tx.update("Patient", pid, patient)
            if pid not in linked:
                tx.conn.execute(
                    insert(patient_link_table).values(
                        system=vendor_user_system(VENDOR_ORGNR),
                        value=f"bench-user-{i}",
                        patient_id=pid,
                        created=to_micros(now_utc()),
                        created_by="bench",
                    )
                )


@dataclass(frozen=True)
class Users:
    gp: dict[str, str]
    followup: dict[str, str]
    vendor: dict[str, str]


def keys(base: str, admin_headers: dict[str, str]) -> Users:
    """API keys for the three users, made through the API as an operator would."""

    def key(body: dict[str, object]) -> dict[str, str]:
        r = httpx.post(f"{base}/api/v1/actors", json=body, headers=admin_headers, timeout=30)
        r.raise_for_status()
        return {
            "Authorization": f"Bearer {r.json()['key']}",
            "Content-Type": "application/fhir+json",
        }

    return Users(
        gp=key({"role": "gp", "hpr": GP_HPR, "name": "Bench Lege"}),
        followup=key(
            {
                "role": "followup",
                "organization": {"orgnr": CENTRE_ORGNR},
                "name": "Bench Sykepleier",
            }
        ),
        vendor=key({"role": "vendor", "organization": {"orgnr": VENDOR_ORGNR}}),
    )
