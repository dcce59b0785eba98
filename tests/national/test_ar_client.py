"""The Adresseregisteret client against the local CommunicationParty API (OpenAPI-validated,
HelseID + DPoP): a HER-id, its parent, an organisation's level-2 services and persons, by
org.nr, the certificates; unknown is None, a token for another API is refused."""

from __future__ import annotations

import base64

import pytest

from interop.national.ar import ArClient, ArError
from tests.live_server import live_server
from tests.national.ar_server import Adresseregisteret, organisation, person
from tests.national.conftest import National
from tests.national.nhn_auth import ApiGuard

PRACTICE = (80010, "Kattskinnet legesenter", "891417772")


def test_lookups_parent_services_and_certificates(national: National) -> None:
    ar = Adresseregisteret(
        ApiGuard(national.helseid.issuer, "nhn:cp-api", "nhn:cp-api/access-v2-dpop")
    )
    ar.parties[80010] = organisation(*PRACTICE, persons=[80011])
    ar.parties[80010]["organizationDetails"]["services"] = [80015]
    ar.parties[80011] = person(80011, "Rita Lin", 9144900, PRACTICE)
    ar.parties[80015] = {
        "herId": 80015,
        "name": "Legekontorets sekretariat",
        "type": "Service",
        "serviceDetails": {
            "serviceType": {"codeListId": "S62", "value": "KONTOR", "name": "Kontor"},
            "parentOrganization": {"herId": 80010, "name": PRACTICE[1]},
        },
        "amqpTransportStatus": "Inherited",
        "validTo": "2020-01-01T00:00:00Z",
    }
    der = base64.b64encode(b"0\x82\x01\x0a").decode()
    ar.certificates[(80010, "encryption")] = {
        "thumbprint": "AB12",
        "validFrom": "2025-01-01T00:00:00Z",
        "validTo": "2028-01-01T00:00:00Z",
        "certificateValue": der,
    }
    tenant = national.helseid.config.tenants[0]
    helseid = national.clients.for_tenant(tenant)
    with live_server(ar.app()) as base:
        client = ArClient(base, auth=helseid.auth("ar"), http=national.clients.http)
        gp = client.party("80011")
        assert gp is not None and gp.type == "Person" and gp.hpr_number == "9144900"
        assert gp.parent_her_id == "80010" and gp.parent_organization_number == PRACTICE[2]
        practice = client.party("80010")
        assert practice is not None and practice.services == ("80015",)
        [service] = client.parties(list(practice.services))
        assert service.type == "Service" and service.parent_her_id == "80010"
        assert not service.active  # validTo has passed
        assert client.organization(PRACTICE[2]).her_id == "80010"  # type: ignore[union-attr]
        assert client.certificate("80010", "encryption")["thumbprint"] == "AB12"  # type: ignore[index]
        assert client.certificate("80010", "signing") is None
        assert client.party("99999") is None
        wrong = ArClient(base, auth=helseid.auth("edi2"), http=national.clients.http)
        with pytest.raises(ArError) as refused:
            wrong.party("80011")
        assert "401" in str(refused.value)
    assert ar.violations == []
    assert ("GET", "/api/v1/communicationparty/80011", 200) in ar.calls
