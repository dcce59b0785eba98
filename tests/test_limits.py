"""Limits on what a client may send, and the inputs that used to end in a 500: body sizes
(413, enforced while the body streams in), JSON nesting depth, malformed operation bodies,
long value lists in searches, hostile CSV and XML."""

from __future__ import annotations

import json
import select
import socket
import time
from typing import Any

import pytest
from fastapi.testclient import TestClient

from interop.api.app import create_app
from tests.conftest import ADMIN_HEADERS
from tests.live_server import live_server

FNR = "13031353453"
LOINC = "http://loinc.org"


def _observation(**extra: Any) -> dict[str, Any]:
    return {
        "resourceType": "Observation",
        "status": "final",
        "code": {"coding": [{"system": LOINC, "code": "8867-4"}]},
        "subject": {"reference": "Patient/p1"},
        "effectiveDateTime": "2026-04-01T08:00:00+02:00",
        "valueQuantity": {
            "value": 70,
            "unit": "/min",
            "system": "http://unitsofmeasure.org",
            "code": "/min",
        },
        **extra,
    }


def _client_with(settings: Any, services: Any, **limits: Any) -> TestClient:
    services.settings = settings.model_copy(update=limits)
    return TestClient(create_app(services.settings, services=services), headers=ADMIN_HEADERS)


def _outcome(r: Any, status: int, code: str | None = None) -> dict[str, Any]:
    assert r.status_code == status, r.text
    body = r.json()
    assert body["resourceType"] == "OperationOutcome", body
    if code is not None:
        assert body["issue"][0]["code"] == code, body
    return body  # type: ignore[no-any-return]


# ---- body size ----------------------------------------------------------------------------


def test_fhir_body_over_the_limit_is_413(settings, services) -> None:  # type: ignore[no-untyped-def]
    with _client_with(settings, services, max_body_size=4096) as c:
        big = _observation(note=[{"text": "x" * 5000}])
        body = _outcome(c.post("/fhir/Observation", json=big), 413, "too-long")
        assert "4096" in body["issue"][0]["diagnostics"]
        _outcome(
            c.post("/fhir", json={"resourceType": "Bundle", "type": "batch", "x": "y" * 5000}), 413
        )
        _outcome(c.put("/fhir/Observation/x", json=dict(big, id="x")), 413)
        _outcome(c.post("/fhir/Observation/$stats", content=b"code=" + b"1" * 5000), 413)
        # under the limit: stored as before
        assert (
            c.put("/fhir/Patient/p1", json={"resourceType": "Patient", "id": "p1"}).status_code
            == 201
        )
        assert c.post("/fhir/Observation", json=_observation()).status_code == 201


def test_a_streamed_body_without_content_length_is_cut_off_at_the_limit(settings, services) -> None:  # type: ignore[no-untyped-def]
    """No Content-Length (chunked): the bytes are counted as they arrive."""
    sent = 0

    def chunks():  # type: ignore[no-untyped-def]
        nonlocal sent
        for _ in range(100):
            sent += 1024
            yield b" " * 1024

    with _client_with(settings, services, max_body_size=8192) as c:
        r = c.post("/fhir/Observation", content=chunks())
        _outcome(r, 413, "too-long")
        r = c.post(f"/ingest/hl7v2?patient={FNR}", content=chunks())
        _outcome(r, 413, "too-long")


def test_limits_per_route(settings, services) -> None:  # type: ignore[no-untyped-def]
    with _client_with(
        settings,
        services,
        max_body_size=4096,
        max_kith_message_size=8192,
        ingest_max_body_size={"apple-health": 16384},
    ) as c:
        xml = b"<x>" + b"a" * 6000 + b"</x>"
        # a KITH message has its own (larger) limit: this one is read, and refused as a message
        r = c.post("/api/v1/messages/inbound", content=xml, headers={"Content-Type": "text/xml"})
        assert r.status_code == 422, r.text
        _outcome(
            c.post(
                "/api/v1/messages/inbound", content=xml * 2, headers={"Content-Type": "text/xml"}
            ),
            413,
        )
        # Apple Health exports have theirs; other adapters the general one
        r = c.post(f"/ingest/apple-health?patient={FNR}", content=xml)
        assert r.status_code in (200, 422), r.text
        body = _outcome(c.post(f"/ingest/apple-health?patient={FNR}", content=xml * 3), 413)
        assert "apple-health" in body["issue"][0]["diagnostics"]
        _outcome(c.post(f"/ingest/cda-phmr?patient={FNR}", content=xml), 413)


def test_a_live_server_stops_reading_a_chunked_body_past_the_limit(settings, services) -> None:  # type: ignore[no-untyped-def]
    """Over a real socket: the answer (413) comes while the client is still sending, long
    before the whole body has gone: the server did not read (or keep) the rest."""
    services.settings = settings.model_copy(update={"max_body_size": 65536})
    app = create_app(services.settings, services=services)
    with live_server(app) as base:
        port = int(base.rsplit(":", 1)[1])
        s = socket.create_connection(("127.0.0.1", port), timeout=10)
        s.sendall(
            b"POST /fhir/Observation HTTP/1.1\r\nHost: x\r\n"
            b"Authorization: Bearer test-admin-key\r\nContent-Type: application/fhir+json\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n"
        )
        chunk = b"4000\r\n" + b" " * 0x4000 + b"\r\n"
        sent = 0
        answer = b""
        try:
            while sent < 50 * 1024 * 1024:
                if select.select([s], [], [], 0)[0]:
                    break
                s.sendall(chunk)
                sent += 0x4000
        except (BrokenPipeError, ConnectionResetError):
            pass
        deadline = time.monotonic() + 10
        try:
            while b"\r\n\r\n" not in answer and time.monotonic() < deadline:
                data = s.recv(65536)
                if not data:
                    break
                answer += data
        except ConnectionResetError:
            pass
        s.close()
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
    assert sent < 5 * 1024 * 1024, sent


# ---- JSON nesting depth -----------------------------------------------------------------


def _nested_extension(depth: int) -> str:
    return '[{"url":"http://x","extension":' * depth + "[]" + "}]" * depth


@pytest.mark.parametrize("depth", [100, 900, 10_000])
def test_deeply_nested_json_is_400_not_500(client, depth: int) -> None:  # type: ignore[no-untyped-def]
    obs = json.dumps(_observation())[:-1] + ',"extension":' + _nested_extension(depth) + "}"
    body = _outcome(client.post("/fhir/Observation", content=obs), 400, "structure")
    text = body["issue"][0]["diagnostics"]
    assert "deeper" in text or "depth" in text, text
    bundle = (
        '{"resourceType":"Bundle","type":"batch","entry":[{"request":{"method":"POST",'
        '"url":"Observation"},"resource":' + obs + "}]}"
    )
    _outcome(client.post("/fhir", content=bundle), 400, "structure")
    _outcome(client.put("/fhir/Observation/x", content=obs), 400, "structure")
    params = '{"resourceType":"Parameters","parameter":' + _nested_extension(depth) + "}"
    _outcome(client.post("/fhir/Observation/$stats", content=params), 400)
    # the ingest door: the item is refused with a diagnostic, never a 500
    r = client.post(f"/ingest/fhir?patient={FNR}", content=obs)
    assert r.status_code < 500, r.text


def test_ordinary_nesting_is_accepted(client) -> None:  # type: ignore[no-untyped-def]
    obs = json.dumps(_observation())[:-1] + ',"extension":' + _nested_extension(20) + "}"
    r = client.post("/fhir/Observation", content=obs)
    assert r.status_code in (201, 422), r.text  # judged by validation, not refused for depth
    assert "deeper" not in r.text


# ---- $lastn / $stats bodies ---------------------------------------------------------------


@pytest.mark.parametrize("op", ["$lastn", "$stats"])
@pytest.mark.parametrize(
    "body",
    [
        b"{bad",
        b"[1,2",
        b"[1,2]",
        b'"text"',
        b'{"resourceType":"Patient"}',
        b'{"parameter":{"name":"code"}}',
        b'{"parameter":[1]}',
        b'{"parameter":[{"valueString":"x"}]}',
        b'{"parameter":[{"name":"code","valueCoding":{"code":"x"}}]}',
    ],
)
def test_malformed_operation_bodies_are_400(client, op: str, body: bytes) -> None:  # type: ignore[no-untyped-def]
    _outcome(client.post(f"/fhir/Observation/{op}", content=body), 400)


def test_a_well_formed_operation_body_still_works(client) -> None:  # type: ignore[no-untyped-def]
    body = {
        "resourceType": "Parameters",
        "parameter": [
            {"name": "code", "valueString": f"{LOINC}|8867-4"},
            {"name": "max", "valueInteger": 1},
        ],
    }
    r = client.post("/fhir/Observation/$lastn", json=body)
    assert r.status_code == 200, r.text
    assert r.json()["type"] == "searchset"


def test_reprocess_with_a_malformed_body_is_400(client) -> None:  # type: ignore[no-untyped-def]
    _outcome(client.post("/api/v1/messages/x/reprocess", content=b"{bad"), 400)
    _outcome(client.post("/api/v1/messages/x/reprocess", content=b'{"address": 1}'), 400)


# ---- long value lists in searches ---------------------------------------------------------


def _patient(client: Any) -> str:
    r = client.post(
        "/fhir/Patient",
        json={
            "resourceType": "Patient",
            "identifier": [{"system": "urn:oid:2.16.578.1.12.4.1.4.1", "value": FNR}],
        },
    )
    assert r.status_code == 201, r.text
    return str(r.json()["id"])


def _store_obs(client: Any, pid: str, code: str, day: int) -> str:
    obs = _observation(subject={"reference": f"Patient/{pid}"})
    obs["code"] = {"coding": [{"system": LOINC, "code": code}]}
    obs["effectiveDateTime"] = f"2026-04-{day:02d}T08:00:00+02:00"
    r = client.post("/fhir/Observation", json=obs)
    assert r.status_code == 201, r.text
    return str(r.json()["id"])


def _ids(bundle: dict[str, Any]) -> set[str]:
    return {e["resource"]["id"] for e in bundle.get("entry", []) if e["search"]["mode"] == "match"}


def test_a_thousand_codes_in_a_search_match_exactly_the_listed_codes(client) -> None:  # type: ignore[no-untyped-def]
    pid = _patient(client)
    pulse = _store_obs(client, pid, "8867-4", 1)
    spo2 = _store_obs(client, pid, "59408-5", 2)
    _store_obs(client, pid, "29463-7", 3)  # weight: not listed, must not come back
    listed = [f"{LOINC}|{i}-0" for i in range(998)] + [f"{LOINC}|8867-4", "59408-5"]
    r = client.get("/fhir/Observation", params={"code": ",".join(listed), "_count": "100"})
    assert r.status_code == 200, r.text
    assert _ids(r.json()) == {pulse, spo2}
    # :not with the same list: only the weight
    r = client.get("/fhir/Observation", params={"code:not": ",".join(listed)})
    assert r.status_code == 200, r.text
    assert len(_ids(r.json())) == 1 and _ids(r.json()).isdisjoint({pulse, spo2})
    # a system-only token and a code-only token still mean what they meant
    r = client.get("/fhir/Observation", params={"code": "http://snomed.info/sct|,8867-4"})
    assert _ids(r.json()) == {pulse}
    for op in ("$lastn", "$stats"):
        r = client.get(
            f"/fhir/Observation/{op}",
            params={"code": ",".join(listed), "patient": f"Patient/{pid}", "max": "1"},
        )
        assert r.status_code == 200, r.text
    r = client.get("/fhir/Observation/$lastn", params={"code": ",".join(listed)})
    assert {e["resource"]["id"] for e in r.json()["entry"]} == {pulse, spo2}


@pytest.mark.parametrize(
    ("path", "param", "make"),
    [
        ("/fhir/Observation", "date", lambda i: f"2026-04-{i % 28 + 1:02d}"),
        ("/fhir/Observation", "_lastUpdated", lambda i: f"ge2020-01-{i % 28 + 1:02d}"),
        ("/fhir/Observation", "patient:identifier", lambda i: f"urn:x|{i}"),
        ("/fhir/Patient", "identifier", lambda i: f"urn:x|{i}"),
        ("/fhir/Patient", "name", lambda i: f"a{i}"),
        ("/fhir/Patient", "_id", lambda i: f"id{i}"),
        ("/fhir/Task", "status", lambda i: f"s{i}"),
    ],
)
def test_other_list_valued_parameters_take_a_thousand_values(client, path, param, make) -> None:  # type: ignore[no-untyped-def]
    r = client.get(path, params={param: ",".join(make(i) for i in range(1000))})
    assert r.status_code == 200, r.text


def test_more_values_than_the_limit_is_400_naming_it(client) -> None:  # type: ignore[no-untyped-def]
    many = ",".join(f"{LOINC}|{i}" for i in range(2001))
    body = _outcome(client.get("/fhir/Observation", params={"code": many}), 400)
    assert "search_max_values" in body["issue"][0]["diagnostics"]
    _outcome(client.get("/fhir/Observation/$lastn", params={"code": many}), 400)
    # the limit counts every parameter: repeating the parameter does not get around it
    split = [("code", ",".join(f"{LOINC}|{i}" for i in range(700)))] * 3
    _outcome(client.get("/fhir/Observation", params=split), 400)


# ---- CSV --------------------------------------------------------------------------------

DIARY = "vendor/accu-chek-csv/ProperDiary.csv"


def _ingest_csv(client: Any, data: bytes) -> Any:
    return client.post(
        f"/ingest/mapped-csv?profile=accu-chek-csv&patient={FNR}",
        content=data,
        headers={"Content-Type": "text/csv"},
    )


def _diary_with(conformance_dir: Any, insert: bytes) -> tuple[bytes, bytes]:
    original = (conformance_dir / DIARY).read_bytes()
    lines = original.split(b"\r\n")
    header = next(i for i, line in enumerate(lines) if line.startswith(b"Dato"))
    lines.insert(header + 2, insert)
    return original, b"\r\n".join(lines)


def test_a_csv_field_over_the_csv_limit_is_one_diagnostic_and_the_rest_is_read(  # type: ignore[no-untyped-def]
    client, conformance_dir
) -> None:
    _patient(client)
    original, damaged = _diary_with(conformance_dir, b'"' + b"x" * 200_000 + b'";09:00;5.0')
    r = _ingest_csv(client, damaged)
    assert r.status_code == 200, r.text
    report = r.json()
    parse_errors = [d for d in report["diagnostics"] if d["code"] == "parse-error"]
    assert len(parse_errors) == 1, report["diagnostics"]
    assert "field larger than field limit" in parse_errors[0]["message"]
    assert report["created"] > 0
    # everything in the undamaged file was already taken from the damaged one
    again = _ingest_csv(client, original).json()
    assert again["created"] == 0 and again["duplicate"] == report["created"], again


def test_a_csv_with_bare_carriage_returns_is_read(client, conformance_dir) -> None:  # type: ignore[no-untyped-def]
    _patient(client)
    original = (conformance_dir / DIARY).read_bytes()
    r = _ingest_csv(client, original.replace(b"\r\n", b"\r"))
    assert r.status_code == 200, r.text
    created = r.json()["created"]
    assert created > 0
    again = _ingest_csv(client, original).json()
    assert again["created"] == 0 and again["duplicate"] == created, again
    # a stray CR inside a field of one row: that row only
    _original, damaged = _diary_with(conformance_dir, b"21.01.2013;09:4\r8;5.2;mmol/l")
    r = _ingest_csv(client, damaged)
    assert r.status_code == 200, r.text


# ---- hostile XML and HL7 v2 ---------------------------------------------------------------

XML_DOORS = [
    "/api/v1/messages/inbound",
    f"/ingest/apple-health?patient={FNR}",
    f"/ingest/cda-phmr?patient={FNR}",
    f"/ingest/opentele?patient={FNR}",
]

BILLION_LAUGHS = b"""<?xml version="1.0"?>
<!DOCTYPE lolz [
 <!ENTITY lol "lol">
 <!ENTITY lol1 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
 <!ENTITY lol2 "&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;">
 <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
 <!ENTITY lol4 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">
 <!ENTITY lol5 "&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;">
 <!ENTITY lol6 "&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;">
 <!ENTITY lol7 "&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;">
 <!ENTITY lol8 "&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;">
 <!ENTITY lol9 "&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;">
]>
<HealthData><Record type="HKQuantityTypeIdentifierHeartRate" value="&lol9;" unit="count/min"
 startDate="2026-01-01 10:00:00 +0100"/><lolz>&lol9;</lolz></HealthData>"""


def _xml(client: Any, door: str, body: bytes) -> Any:
    return client.post(door, content=body, headers={"Content-Type": "application/xml"})


def _refused_or_diagnosed(r: Any) -> None:
    assert 400 <= r.status_code < 500 or (r.status_code == 200 and r.json()["created"] == 0), r.text


@pytest.mark.parametrize("door", XML_DOORS)
def test_entity_expansion_bombs_are_refused_in_bounded_memory(client, door: str) -> None:  # type: ignore[no-untyped-def]
    import resource

    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    r = _xml(client, door, BILLION_LAUGHS)
    _refused_or_diagnosed(r)
    assert b"lollol" not in r.content
    # expanded, the bomb is 3 GB; the peak memory of the process must not have moved much
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 200_000  # KiB


@pytest.mark.parametrize("door", XML_DOORS)
def test_external_entities_and_dtds_are_never_fetched(client, door: str, tmp_path) -> None:  # type: ignore[no-untyped-def]
    import http.server
    import threading

    fetched: list[str] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802
            fetched.append(self.path)
            self.send_response(200)
            self.end_headers()
            self.wfile.write(b'<!ENTITY x "fetched">')

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    secret = tmp_path / "secret.txt"
    secret.write_text("TOPSECRET-1234")
    url = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        for body in (
            f'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY e SYSTEM "file://{secret}">]>'
            f'<HealthData><Record value="&e;"/>&e;</HealthData>'.encode(),
            f'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY e SYSTEM "{url}/e">]><x>&e;</x>'.encode(),
            f'<?xml version="1.0"?><!DOCTYPE x SYSTEM "{url}/dtd"><x>&x;</x>'.encode(),
            f'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY % p SYSTEM "{url}/p"> %p;]><x/>'.encode(),
            f'<x xmlns:xi="http://www.w3.org/2001/XInclude"><xi:include href="{url}/xi"/></x>'.encode(),
        ):
            r = _xml(client, door, body)
            _refused_or_diagnosed(r)
            assert b"TOPSECRET" not in r.content and b"fetched" not in r.content
    finally:
        server.shutdown()
    assert fetched == []


@pytest.mark.parametrize("door", XML_DOORS[1:])
def test_huge_and_deep_xml_is_a_diagnostic(settings, services, door: str) -> None:  # type: ignore[no-untyped-def]
    adapter = door.split("/")[2].split("?")[0]
    with _client_with(settings, services, ingest_max_body_size={adapter: 64 * 1024 * 1024}) as c:
        huge_text = (
            b"<HealthData><Record value='1'>" + b"x" * 12_000_000 + b"</Record></HealthData>"
        )
        _refused_or_diagnosed(_xml(c, door, huge_text))
        deep = b"<a>" * 100_000 + b"</a>" * 100_000
        _refused_or_diagnosed(_xml(c, door, deep))


@pytest.mark.parametrize(
    "payload",
    [
        b"\x00\x01\x02\xff\xfe" * 40,
        b"MSH",
        b"MSH|",
        b"MSH|^~\\&",
        b"MSH|^~\\&|A|B|C|D|20260101||ORU^R01",
        b"MSH|^~\\&|A|B|C|D|20260101||ORU^R01|X1|P|2.5\rOBX|" + b"9" * 2_000_000,
        b"MSH" + b"|" * 60_000,
        b"MSH|^~\\&|A|B|C|D|20260101||ORU^R01|X1|P|2.5\r" + b"PID|\r" * 50_000,
    ],
)
def test_malformed_hl7_over_http_is_4xx(client, payload: bytes) -> None:  # type: ignore[no-untyped-def]
    r = client.post(
        f"/ingest/hl7v2?patient={FNR}",
        content=payload,
        headers={"Content-Type": "x-application/hl7-v2+er7"},
    )
    assert 400 <= r.status_code < 500 or (
        r.status_code == 200 and r.json()["created"] == 0 and r.json()["diagnostics"]
    ), r.text


# ---- NUL characters (PostgreSQL text cannot hold them) ---------------------------------


@pytest.mark.parametrize(
    "path",
    [
        "/fhir/Observation?code=%00",
        "/fhir/Observation?code=http://loinc.org|8867-4%00",
        "/fhir/Patient?name=a%00b",
        "/fhir/Patient?identifier=urn:x|%00",
        "/fhir/Observation?date=2026%00",
        "/fhir/Observation?patient=Patient/%00",
        "/fhir/Observation?_id=%00",
        "/fhir/Observation/$lastn?code=%00",
        "/fhir/Observation/$stats?code=%00&patient=Patient/p1",
    ],
)
def test_a_nul_character_in_a_search_is_400(client, path: str) -> None:  # type: ignore[no-untyped-def]
    _outcome(client.get(path), 400)


def test_a_nul_character_in_the_url_is_400_on_every_route(client) -> None:  # type: ignore[no-untyped-def]
    for path in (
        "/api/v1/messages/%00",
        "/api/v1/messages?status=%00",
        "/api/v1/quarantine?status=a%00",
        "/fhir/Observation/%00",
        "/fhir/Observation/x/_history/%00",
    ):
        _outcome(client.get(path), 400)
    _outcome(client.post(f"/ingest/hl7v2?patient={FNR}&source=%00", content=b"MSH|"), 400)


def test_a_nul_character_in_a_posted_search_is_400(client) -> None:  # type: ignore[no-untyped-def]
    form = {"Content-Type": "application/x-www-form-urlencoded"}
    _outcome(client.post("/fhir/Observation/_search", content=b"code=%00", headers=form), 400)
    _outcome(client.post("/fhir/Observation/$lastn", content=b"code=a%00", headers=form), 400)
    body = {"resourceType": "Parameters", "parameter": [{"name": "code", "valueString": "\u0000"}]}
    _outcome(client.post("/fhir/Observation/$stats", json=body), 400)


def test_a_nul_character_in_a_resource_is_400_naming_the_element(client) -> None:  # type: ignore[no-untyped-def]
    pid = _patient(client)
    obs = _observation(subject={"reference": f"Patient/{pid}"})
    obs["identifier"] = [{"system": "urn:x", "value": "a\u0000b"}]
    body = _outcome(client.post("/fhir/Observation", json=obs), 400, "structure")
    assert "identifier[0].value" in body["issue"][0]["diagnostics"]
    _outcome(client.put("/fhir/Observation/x", json=dict(obs, id="x")), 400)
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [{"resource": obs, "request": {"method": "POST", "url": "Observation"}}],
    }
    _outcome(client.post("/fhir", json=bundle), 400)
    _outcome(client.post("/fhir/Patient", json={"resourceType": "Patient", "n\u0000": 1}), 400)


def _hl7_with(field: bytes) -> bytes:
    return (
        b"MSH|^~\\&|A|B|C|D|20260101||ORU^R01|NUL-" + field[:1].hex().encode() + b"|P|2.5\r"
        b"PID|||" + FNR.encode() + b"^^^^FNR\r"
        b"OBX|1|NM|8867-4^Puls^LN||70" + field + b"|/min^^UCUM|||||F|||20260101115000+0100\r"
    )


@pytest.mark.parametrize(
    ("adapter", "body"),
    [
        ("hl7v2", _hl7_with(b"\x00")),
        ("hl7v2", _hl7_with(b"").replace(b"/min", b"/m\x00in")),
        ("hl7v2", _hl7_with(b"").replace(b"Puls", b"Pu\x00ls")),
        (
            "fhir",
            json.dumps(_observation(identifier=[{"system": "urn:x\u0000", "value": "v"}])).encode(),
        ),
        (
            "fhir",
            json.dumps(_observation(valueQuantity={"value": 70, "unit": "/m\u0000in"})).encode(),
        ),
        (
            "mapped-csv?profile=accu-chek-csv",
            b"Dato;Tid;M\xc3\xa5leresultat\r\n21.01.2013;09:4\x008;5.2\r\n",
        ),
        (
            "openmhealth",
            b'{"header":{"id":"a\\u0000","schema_id":{"namespace":"omh","name":"heart-rate","version":"1.0"}},'
            b'"body":{"heart_rate":{"value":70,"unit":"beats/min\\u0000"},'
            b'"effective_time_frame":{"date_time":"2026-01-01T10:00:00Z"}}}',
        ),
    ],
)
def test_a_nul_character_in_ingested_data_is_never_a_500(client, adapter: str, body: bytes) -> None:  # type: ignore[no-untyped-def]
    _patient(client)
    sep = "&" if "?" in adapter else "?"
    r = client.post(f"/ingest/{adapter}{sep}patient={FNR}", content=body)
    assert r.status_code < 500, r.text


# ---- adapters reading documents of an unexpected shape ----------------------------------


def test_an_open_mhealth_point_of_an_unexpected_shape_is_that_points_diagnostic(client) -> None:  # type: ignore[no-untyped-def]
    _patient(client)
    good = {
        "header": {
            "id": "p-good",
            "schema_id": {"namespace": "omh", "name": "heart-rate", "version": "1.0"},
        },
        "body": {
            "heart_rate": {"value": 70, "unit": "beats/min"},
            "effective_time_frame": {"date_time": "2026-01-01T10:00:00Z"},
        },
    }
    bad = {
        "header": {
            "id": "p-bad",
            "schema_id": {"namespace": "omh", "name": "blood-glucose", "version": "4.0"},
        },
        "body": {"blood_glucose": {"unit": "mg/dL", "value": 95}, "effective_time_frame": True},
    }
    r = client.post(f"/ingest/openmhealth?patient={FNR}", json=[bad, good])
    assert r.status_code == 200, r.text
    report = r.json()
    assert report["created"] + report["quarantined"] == 1, report
    assert any(d["location"] == "[0]" for d in report["diagnostics"]), report["diagnostics"]
    # a single point of that shape: refused with its diagnostic, never a 500
    r = client.post(f"/ingest/openmhealth?patient={FNR}", json=bad)
    assert r.status_code < 500 and r.json()["created"] == 0, r.text


def test_an_adapter_failing_on_its_input_is_a_parse_error_not_a_fault() -> None:
    from adapters.base import AdapterError, AdapterResult, IngestMeta
    from adapters.registry import Guarded

    class Fragile:
        name = "fragile"
        content_types = ("application/json",)

        def parse(self, data: bytes, meta: IngestMeta) -> AdapterResult:
            return {"a": 1}[data.decode()]  # type: ignore[return-value]

    with pytest.raises(AdapterError) as caught:
        Guarded(Fragile()).parse(b"b", None)  # type: ignore[arg-type]
    assert caught.value.code == "parse-error" and "KeyError" in str(caught.value)


def test_an_hl7_message_with_a_nul_byte_is_refused(client) -> None:  # type: ignore[no-untyped-def]
    raw = _hl7_with(b"").replace(b"|NUL-|", b"|NUL-\x00|")
    r = client.post(f"/ingest/hl7v2?patient={FNR}", content=raw)
    assert r.status_code == 422, r.text
    assert "NUL" in r.text


@pytest.mark.parametrize(
    ("category", "where"),
    [
        ([{"coding": None}], "category[0].coding"),
        ([{"coding": None, "text": "vital signs"}], "category[0].coding"),
        ([None], None),  # null inside an array: FHIR's primitive-extension shape, judged later
        (None, "category"),
    ],
)
def test_null_members_are_422_naming_the_element(client, category: Any, where: str | None) -> None:  # type: ignore[no-untyped-def]
    """FHIR JSON has no null members; they used to pass validation and fail the indexer (500)."""
    obs = _observation(category=category)
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [{"resource": obs, "request": {"method": "POST", "url": "Observation"}}],
    }
    for r in (
        client.post("/fhir/Observation", json=obs),
        client.put("/fhir/Observation/n1", json=dict(obs, id="n1")),
        client.post("/fhir", json=bundle),
    ):
        assert r.status_code < 500, r.text
        if where is not None:
            body = _outcome(r, 422, "structure")
            assert where in body["issue"][0]["diagnostics"], body
