"""FHIR XML in and out (``application/fhir+xml``, ``_format``) and ``_pretty``, for every
``/fhir`` route, as an ASGI middleware around the JSON API.

In: an XML body is parsed with the same hardened parser as the KITH messages (no DTD, no
entities, no network: an XML bomb is refused with 400), turned into the resource's JSON by
the R4B models, and handed on as ``application/fhir+json``; everything after that (validation,
the access policy, the store) is the JSON path. Out: when ``_format`` or ``Accept`` asks for
XML, the JSON answer (resource, Bundle or OperationOutcome) is written as FHIR XML.
``_pretty=true`` indents either. Requests that ask for neither pass through untouched.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qsl, urlencode

import orjson
from fhir.resources.R4B import get_fhir_model_class
from lxml import etree
from pydantic import ValidationError
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from interop.fhir.outcome import Issue, operation_outcome
from plo_messages.xmlsafe import NotWellFormed, parse_xml

FHIR_XML = "application/fhir+xml"
XML_TYPES = (FHIR_XML, "application/xml", "text/xml", "application/xml+fhir")
XML_FORMATS = frozenset({"xml", "text/xml", "application/xml", FHIR_XML})
JSON_FORMATS = frozenset({"json", "application/json", "application/fhir+json"})
FHIR_NS = "http://hl7.org/fhir"


def _header(scope: Scope, name: bytes) -> str:
    for k, v in scope["headers"]:
        if k == name:
            return str(v.decode("latin-1"))
    return ""


def _wants_xml(fmt: str | None, accept: str) -> bool:
    if fmt:
        return fmt.split(";")[0].strip().lower() in XML_FORMATS
    accept = accept.lower()
    if "xml" not in accept:
        return False
    # xml unless JSON is asked for as well (first one wins)
    xml_at = min(accept.find(t) for t in ("fhir+xml", "application/xml", "text/xml") if t in accept)
    json_at = accept.find("json")
    return json_at < 0 or xml_at < json_at


def xml_to_json(data: bytes) -> dict[str, Any]:
    """FHIR XML → the resource's JSON; ValueError naming the problem."""
    try:
        root = parse_xml(data)
    except NotWellFormed as exc:
        raise ValueError(str(exc)) from None
    qname = etree.QName(root)
    if qname.namespace != FHIR_NS:
        raise ValueError(f"the root element is not in the FHIR namespace ({FHIR_NS})")
    try:
        model = get_fhir_model_class(qname.localname)
    except (KeyError, ValueError):
        raise ValueError(f"unknown resource type {qname.localname!r}") from None
    try:
        # the tree checked above, written again without anything the hardened parser dropped
        resource = model.model_validate_xml(etree.tostring(root))
    except (ValidationError, ValueError) as exc:
        raise ValueError(f"{qname.localname}: {str(exc).splitlines()[0]}"[:500]) from None
    out: dict[str, Any] = orjson.loads(resource.model_dump_json(exclude_none=True))
    return out


def json_to_xml(body: bytes, pretty: bool) -> bytes:
    doc = orjson.loads(body)
    model = get_fhir_model_class(doc["resourceType"])
    raw: Any = model.model_validate(doc).model_dump_xml()
    xml: bytes = raw.encode() if isinstance(raw, str) else bytes(raw)
    if pretty:
        xml = etree.tostring(
            etree.fromstring(xml), pretty_print=True, xml_declaration=True, encoding="utf-8"
        )
    return xml


class FhirFormats:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith("/fhir"):
            await self.app(scope, receive, send)
            return
        query: bytes = scope.get("query_string") or b""
        ctype = _header(scope, b"content-type").split(";")[0].strip().lower()
        accept = _header(scope, b"accept")
        xml_in = ctype in XML_TYPES
        if (
            b"_format" not in query
            and b"_pretty" not in query
            and not xml_in
            and "xml" not in accept
        ):
            await self.app(scope, receive, send)  # the common case: untouched
            return
        params = parse_qsl(query.decode("latin-1"), keep_blank_values=True)
        fmt = next((v for k, v in params if k == "_format"), None)
        pretty = any(k == "_pretty" and v == "true" for k, v in params)
        if fmt and fmt.split(";")[0].strip().lower() not in XML_FORMATS | JSON_FORMATS:
            await self._answer(
                send, 406, f"_format {fmt!r} is not supported (json or xml)", False, pretty
            )
            return
        xml_out = _wants_xml(fmt, accept)
        rest = [(k, v) for k, v in params if k not in ("_format", "_pretty")]
        headers = [
            (k, v)
            for k, v in scope["headers"]
            if k not in (b"accept", b"content-type", b"content-length")
        ]
        headers.append((b"accept", b"application/fhir+json"))
        scope = dict(scope)
        scope["query_string"] = urlencode(rest).encode()
        if xml_in:
            body = await _read_all(receive)
            try:
                converted = orjson.dumps(xml_to_json(body))
            except ValueError as exc:
                await self._answer(send, 400, f"the XML body: {exc}", xml_out, pretty)
                return
            headers += [
                (b"content-type", b"application/fhir+json"),
                (b"content-length", str(len(converted)).encode()),
            ]
            receive = _replay(converted)
        else:
            for k, v in scope["headers"]:
                if k in (b"content-type", b"content-length"):
                    headers.append((k, v))
        scope["headers"] = headers
        if not xml_out and not pretty:
            await self.app(scope, receive, send)
            return
        await self.app(scope, receive, _Rewriter(send, xml_out, pretty))

    @staticmethod
    async def _answer(send: Send, status: int, text: str, xml: bool, pretty: bool) -> None:
        body = orjson.dumps(
            operation_outcome(
                [Issue("error", "not-supported" if status == 406 else "structure", text)]
            )
        )
        ctype = b"application/fhir+json"
        if xml:
            body, ctype = json_to_xml(body, pretty), FHIR_XML.encode()
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [(b"content-type", ctype), (b"content-length", str(len(body)).encode())],
            }
        )
        await send({"type": "http.response.body", "body": body})


async def _read_all(receive: Receive) -> bytes:
    chunks = []
    while True:
        message = await receive()
        chunks.append(message.get("body", b""))
        if not message.get("more_body"):
            return b"".join(chunks)


def _replay(body: bytes) -> Receive:
    sent = False

    async def receive() -> Message:
        nonlocal sent
        if sent:
            return {"type": "http.disconnect"}
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    return receive


class _Rewriter:
    """Collects a JSON answer and sends it as XML and/or indented."""

    def __init__(self, send: Send, xml: bool, pretty: bool) -> None:
        self.send = send
        self.xml = xml
        self.pretty = pretty
        self.start: Message | None = None
        self.chunks: list[bytes] = []

    async def __call__(self, message: Message) -> None:
        if message["type"] == "http.response.start":
            self.start = message
            return
        if message["type"] != "http.response.body" or self.start is None:
            await self.send(message)
            return
        self.chunks.append(message.get("body", b""))
        if message.get("more_body"):
            return
        body = b"".join(self.chunks)
        headers = [(k, v) for k, v in self.start.get("headers", []) if k != b"content-length"]
        ctype = dict(headers).get(b"content-type", b"")
        if body and b"json" in ctype:
            try:
                if self.xml:
                    body = json_to_xml(body, self.pretty)
                    headers = [(k, v) for k, v in headers if k != b"content-type"]
                    headers.append((b"content-type", b"application/fhir+xml; charset=utf-8"))
                else:
                    body = orjson.dumps(orjson.loads(body), option=orjson.OPT_INDENT_2)
            except (ValueError, KeyError, ValidationError, orjson.JSONDecodeError):
                pass  # not a FHIR resource (a service document): sent as it is
        headers.append((b"content-length", str(len(body)).encode()))
        await self.send({**self.start, "headers": headers})
        await self.send({"type": "http.response.body", "body": body})
