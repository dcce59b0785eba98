"""A KITH message refused at ``POST /api/v1/messages/inbound`` is answered with an
OperationOutcome that says what is wrong with it (the AppRec's error code and its text: the
element the schema missed, the DOCTYPE that is not allowed), not only the code."""

from __future__ import annotations

MSGHEAD = "http://www.kith.no/xmlstds/msghead/2006-05-24"
XML = {"Content-Type": "application/xml"}


def _issues(client, body: bytes) -> list[str]:  # type: ignore[no-untyped-def]
    r = client.post("/api/v1/messages/inbound", content=body, headers=XML)
    assert r.status_code == 422, r.text
    outcome = r.json()
    assert outcome["resourceType"] == "OperationOutcome"
    return [i["diagnostics"] for i in outcome["issue"]]


def test_a_refused_message_is_told_what_is_wrong(client) -> None:  # type: ignore[no-untyped-def]
    missing_type = f'<MsgHead xmlns="{MSGHEAD}"><MsgInfo/></MsgHead>'.encode()
    text = " ".join(_issues(client, missing_type))
    assert "T02" in text and "MsgInfo" in text and "Type" in text, text

    doctype = (
        b'<?xml version="1.0"?><!DOCTYPE r [<!ENTITY x SYSTEM "file:///etc/passwd">]>'
        + f'<MsgHead xmlns="{MSGHEAD}"><x>&x;</x></MsgHead>'.encode()
    )
    text = " ".join(_issues(client, doctype))
    assert "T01" in text and "DOCTYPE" in text, text
    assert "root:" not in text  # the entity was never read

    text = " ".join(_issues(client, b"not xml"))
    assert "T01" in text and "well-formed" in text, text
