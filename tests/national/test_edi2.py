"""The EDI 2.0 client against the local Meldingstjener, which validates every request and
answer against msh-api-v2.json and checks HelseID token and DPoP proof."""

from __future__ import annotations

import base64
import uuid

import httpx
import pytest

from interop.national.edi2 import Edi2Client, Edi2Error, Edi2Locked, Edi2TooLarge
from tests.national.conftest import National

GP, PRACTICE = "80011", "80010"


def msghead(sender: list[str], receiver: list[str], *, filler: bytes = b"") -> bytes:
    def party(tag: str, hers: list[str]) -> str:
        inner = ""
        for her in reversed(hers):
            inner = (
                f"<Organisation><OrganisationName>x</OrganisationName>"
                f"<Ident><Id>{her}</Id><TypeId V='HER' DN='HER-id' S='2.16.578.1.12.4.1.1.9051'/>"
                f"</Ident>{inner}</Organisation>"
            )
        return f"<{tag}>{inner}</{tag}>"

    return (
        '<?xml version="1.0" encoding="UTF-8"?>'
        '<MsgHead xmlns="http://www.kith.no/xmlstds/msghead/2006-05-24"><MsgInfo>'
        f"<MsgId>{uuid.uuid4()}</MsgId>{party('Sender', sender)}{party('Receiver', receiver)}"
        "</MsgInfo></MsgHead>"
    ).encode() + filler


def edi(national: National, tenant: str = "fjordvik", **kw) -> Edi2Client:  # type: ignore[no-untyped-def]
    t = next(x for x in national.helseid.config.tenants if x.name == tenant)
    return Edi2Client(national.edi2_url, auth=national.clients.for_tenant(t).auth("edi2"), **kw)


def test_send_receive_apprec_and_read_per_contract(national: National) -> None:
    client = edi(national)
    sent_id = client.send(msghead(["80001", "80002"], [PRACTICE, GP]))
    sent = national.mt.messages[sent_id]
    assert sent.receiver_her_id == int(GP) and sent.sender_her_ids == [80001, 80002]
    # a message from the GP arrives for the centre
    reply = msghead([PRACTICE, GP], ["80001", "80002"])
    national.mt.inject(reply)
    [item] = client.unread(80002)
    assert item.receiver_her_id == 80002 and item.sender_her_id == int(GP)
    assert client.business_document(item.id) == reply
    client.post_apprec(item.id, 80002, "1", [])
    client.mark_read(item.id, 80002)
    assert client.unread(80002) == []
    assert national.mt.messages[item.id].apprecs == [{"appRecStatus": "Ok", "senderHerId": 80002}]
    # a rejection carries its error list; the status reads the wire enum
    national.mt.inject(reply)
    [second] = client.unread(80002)
    client.post_apprec(second.id, 80002, "2", [{"errorCode": "E21", "details": "ukjent"}])
    assert national.mt.messages[second.id].apprecs[0]["appRecStatus"] == "Rejected"
    assert client.status(sent_id)[0]["transportDeliveryState"] == "Unconfirmed"
    # every call went through the contract and the DPoP check
    assert national.mt.guard.checked == len(national.mt.calls)
    assert {c[2] for c in national.mt.calls} <= {200, 201, 204}


def test_the_contract_refuses_what_the_old_client_sent(national: National) -> None:
    client = edi(national)
    national.mt.inject(msghead([GP], ["80002"]))
    [item] = client.unread(80002)
    auth = client.auth
    headers = {"api-version": "2", "nhn-source-system": "x"}
    # the AppRec status spelled "OK" is not in the schema's enum
    r = httpx.post(
        f"{national.edi2_url}/Messages/{item.id}/apprec/80002",
        json={"appRecStatus": "OK", "appRecErrorList": []},
        headers=headers,
        auth=auth,
    )
    assert r.status_code == 400 and "'OK' is not one of" in str(r.json()["validationErrors"])
    # the query parameters are PascalCase
    r = httpx.get(
        f"{national.edi2_url}/Messages",
        params={"receiverHerIds": 80002},
        headers=headers,
        auth=auth,
    )
    assert r.status_code == 400 and "ReceiverHerIds" in str(r.json()["validationErrors"])
    # without api-version / nhn-source-system
    r = httpx.get(f"{national.edi2_url}/Messages", params={"ReceiverHerIds": 80002}, auth=auth)
    assert r.status_code == 400
    # no DPoP proof: 401 with a DPoP challenge
    token = national.clients.for_tenant(national.helseid.config.tenants[0]).token("edi2").value
    r = httpx.get(
        f"{national.edi2_url}/Messages",
        params={"ReceiverHerIds": 80002},
        headers={**headers, "Authorization": f"DPoP {token}"},
    )
    assert r.status_code == 401 and r.headers["www-authenticate"].startswith("DPoP")


def test_a_tenant_acts_only_for_its_own_her_ids(national: National) -> None:
    havbygd = edi(national, "havbygd")
    with pytest.raises(Edi2Error) as refused:
        havbygd.send(msghead(["80001", "80002"], [PRACTICE, GP]))
    assert refused.value.status == 403 and not refused.value.transient
    with pytest.raises(Edi2Error, match="403"):
        havbygd.unread(80002)
    assert havbygd.send(msghead(["81001"], [PRACTICE, GP]))


def test_the_35_mb_limit_is_kept_before_sending(national: National) -> None:
    client = edi(national)
    big = msghead(["80002"], [GP], filler=b"<!--" + b"x" * 27_000_000 + b"-->")
    assert len(base64.b64encode(big)) > 35_000_000
    calls = len(national.mt.calls)
    with pytest.raises(Edi2TooLarge) as too_large:
        client.send(big)
    assert not too_large.value.transient and "35000000" in str(too_large.value)
    assert len(national.mt.calls) == calls  # nothing was posted


def test_api_version_3_accepted_202_and_locked_423(national: National) -> None:
    client = edi(national, api_version="3")
    mid = client.send(msghead(["80002"], [GP]), sender_her_id=80002, receiver_her_ids=[int(GP)])
    assert national.mt.messages[mid].receiver_her_id == int(GP)
    assert ("POST", "/messages", 202) in national.mt.calls
    national.mt.locked[80002] = "another-client"
    with pytest.raises(Edi2Locked) as locked:
        client.send(msghead(["80002"], [GP]), sender_her_id=80002, receiver_her_ids=[int(GP)])
    assert locked.value.status == 423 and not locked.value.transient
