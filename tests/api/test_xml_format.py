"""FHIR XML in and out, through the hardened parser, and _pretty."""

from __future__ import annotations

from lxml import etree

NS = {"f": "http://hl7.org/fhir"}
XML = {"Content-Type": "application/fhir+xml", "Accept": "application/fhir+xml"}

PATIENT_XML = b"""<?xml version="1.0" encoding="UTF-8"?>
<Patient xmlns="http://hl7.org/fhir">
  <identifier><system value="urn:oid:2.16.578.1.12.4.1.4.1"/><value value="13031353453"/></identifier>
  <name><family value="S\xc3\xb8rensen"/><given value="Kari"/></name>
  <gender value="female"/>
  <birthDate value="2013-03-13"/>
</Patient>"""


def test_create_read_and_search_in_xml(client) -> None:  # type: ignore[no-untyped-def]
    r = client.post("/fhir/Patient", content=PATIENT_XML, headers=XML)
    assert r.status_code == 201, r.text
    assert r.headers["content-type"].startswith("application/fhir+xml")
    root = etree.fromstring(r.content)
    pid = root.find("f:id", NS).get("value")
    assert root.find("f:name/f:family", NS).get("value") == "Sørensen"
    # read as JSON (stored as JSON) and as XML through _format
    assert client.get(f"/fhir/Patient/{pid}").json()["name"][0]["family"] == "Sørensen"
    r = client.get(f"/fhir/Patient/{pid}?_format=xml")
    assert r.headers["content-type"].startswith("application/fhir+xml")
    assert etree.fromstring(r.content).find("f:gender", NS).get("value") == "female"
    r = client.get("/fhir/Patient?family=sorensen", headers={"Accept": "application/fhir+xml"})
    bundle = etree.fromstring(r.content)
    assert etree.QName(bundle).localname == "Bundle"
    assert len(bundle.findall("f:entry", NS)) == 1
    # _pretty indents JSON
    r = client.get(f"/fhir/Patient/{pid}?_pretty=true")
    assert r.text.startswith("{\n  ")


def test_bad_xml_is_a_4xx_outcome(client) -> None:  # type: ignore[no-untyped-def]
    bomb = (
        b'<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol">'
        b'<!ENTITY lol2 "&lol;&lol;&lol;&lol;">]><Patient xmlns="http://hl7.org/fhir">'
        b'<name><family value="&lol2;"/></name></Patient>'
    )
    for body in (
        bomb,
        b"<Patient",
        b"<Patient/>",
        b'<Nonsense xmlns="http://hl7.org/fhir"/>',
        b'<Patient xmlns="http://hl7.org/fhir"><gender value="robot"/></Patient>',
    ):
        r = client.post("/fhir/Patient", content=body, headers=XML)
        assert 400 <= r.status_code < 500, (body, r.status_code, r.text)
        assert etree.QName(etree.fromstring(r.content)).localname == "OperationOutcome"
    assert client.get("/fhir/metadata?_format=yaml").status_code == 406
    assert (
        client.get("/fhir/Patient/none", headers={"Accept": "application/fhir+xml"}).status_code
        == 404
    )
