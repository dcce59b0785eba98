"""Outgoing *Helseopplysninger til lege*: who answers for the report (AnsvarForRapport: the
patient's primary contact with profession, HPR-nummer and phone), the sender's org.nr, and the
GP person's HER-id coded as in the official HTL 1.6 example (kodeverk 8116)."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

from sqlalchemy import select

from interop.identifiers import HPR_OID, generate_hpr
from interop.store.schema import outbox_table
from plo_messages.xmlsafe import parse_xml
from tests.conftest import SHARED
from tests.messaging.test_gp_flow import HER, _heart_rate, _ingest, _post, address_book

OFFICIAL = SHARED / "conformance/kith/plo-1.6/Helseopplysninger_til_lege_v1-6_Ny.xml"
ROLE_9034 = "2.16.578.1.12.4.1.1.9034"


def _nurse(client: Any, patient: str, centre: str) -> str:
    hpr = generate_hpr(random.Random(9))
    nurse = _post(
        client,
        {
            "resourceType": "Practitioner",
            "identifier": [{"system": HPR_OID, "value": hpr}],
            "name": [{"family": "Omsorg", "given": ["Gunn"]}],
        },
    )
    role = _post(
        client,
        {
            "resourceType": "PractitionerRole",
            "practitioner": {"reference": f"Practitioner/{nurse}"},
            "organization": {"reference": f"Organization/{centre}"},
            "telecom": [{"system": "phone", "value": "73 55 55 55", "use": "work"}],
        },
    )
    _post(
        client,
        {
            "resourceType": "CareTeam",
            "status": "active",
            "subject": {"reference": f"Patient/{patient}"},
            "participant": [
                {
                    "role": [
                        {"coding": [{"system": ROLE_9034, "code": "9", "display": "Primærkontakt"}]}
                    ],
                    "member": {"reference": f"PractitionerRole/{role}"},
                }
            ],
        },
    )
    return hpr


def _sent(services: Any) -> Any:
    with services.engine.connect() as conn:
        [row] = conn.execute(select(outbox_table)).all()
    return parse_xml(bytes(row.payload))


def test_the_report_names_the_responsible_nurse_org_nr_and_codes_the_gp_her_id(
    client: Any, services: Any, tmp_path: Path
) -> None:
    ids = address_book(client, tmp_path)
    hpr = _nurse(client, ids["patient"], ids["centre"])
    _ingest(services, _heart_rate("150", 5))
    root = _sent(services)
    afr = root.find(".//{*}AnsvarForRapport/{*}AnsvarligRapport")
    assert afr is not None
    assert afr.find("{*}TypeHealthcareProfessional").get("V") == "SP"  # type: ignore[union-attr]
    role = afr.find("{*}RoleToPatient")
    assert role is not None and (role.get("V"), role.get("S")) == ("9", ROLE_9034)
    assert afr.findtext("{*}FamilyName") == "Omsorg" and afr.findtext("{*}GivenName") == "Gunn"
    assert afr.findtext("{*}Ident/{*}Id") == hpr
    assert afr.find("{*}Ident/{*}TypeId").get("V") == "HPR"  # type: ignore[union-attr]
    assert afr.find("{*}TeleCom/{*}TeleAddress").get("V") == "tel:73555555"  # type: ignore[union-attr]
    assert root.find(".//{*}AnsvarForRapport/{*}GodkjentDato") is not None
    # the sending organisations carry their org.nr beside the HER-id
    sender = root.find(".//{*}MsgInfo/{*}Sender/{*}Organisation")
    assert sender is not None
    types = [t.get("V") for t in sender.findall("{*}Ident/{*}TypeId")]
    assert "ENH" in types and "HER" in types
    # the GP person's HER-id coded as the official example codes it
    official = parse_xml(OFFICIAL.read_bytes())
    want = official.find(
        ".//{*}Receiver/{*}Organisation/{*}HealthcareProfessional/{*}Ident/{*}TypeId"
    )
    got_el = root.find(".//{*}Receiver/{*}Organisation/{*}HealthcareProfessional/{*}Ident")
    assert want is not None and got_el is not None
    assert got_el.findtext("{*}Id") == HER["gp"]
    got = got_el.find("{*}TypeId")
    assert got is not None and (got.get("V"), got.get("S")) == (want.get("V"), want.get("S"))
    org_her = root.find(".//{*}Receiver/{*}Organisation/{*}Ident/{*}TypeId")
    assert org_her is not None and org_her.get("S") == "2.16.578.1.12.4.1.1.9051"


def test_without_a_primary_contact_the_report_has_no_ansvar_for_rapport(
    client: Any, services: Any, tmp_path: Path
) -> None:
    address_book(client, tmp_path)
    _ingest(services, _heart_rate("150", 5))
    assert _sent(services).find(".//{*}AnsvarForRapport") is None
