"""A local Fastlegeregisteret (SOAP 1.2) held to the WSDL: the schemas inside
``nhn-fastlegeregisteret-read.wsdl`` are compiled with lxml, and every request body (and our
answer) is validated against them; HTTP Basic authentication is required, the SOAP action must
be the WSDL's. Answers take the shapes of ``examples/soap/`` (found, not-found fault)."""

from __future__ import annotations

import base64
import tempfile
from pathlib import Path
from typing import Any

from lxml import etree
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from tests.conftest import STANDARDS

WSDL = STANDARDS / "nhn" / "fastlegeregisteret" / "wsdl" / "nhn-fastlegeregisteret-read.wsdl"
XS = "http://www.w3.org/2001/XMLSchema"
SOAP12 = "http://www.w3.org/2003/05/soap-envelope"
FLR = "http://schemas.nhn.no/reg/flr"
ACTION = f"{FLR}/IFlrReadOperations/GetPatientGPDetails"


def wsdl_schema(wsdl: Path = WSDL) -> etree.XMLSchema:
    """The WSDL's inline schemas as one XMLSchema (their imports given file locations)."""
    tree = etree.parse(str(wsdl))
    schemas = tree.findall(f".//{{{XS}}}schema")
    folder = Path(tempfile.mkdtemp(prefix="flr-wsdl-"))
    by_ns = {s.get("targetNamespace"): folder / f"s{i}.xsd" for i, s in enumerate(schemas)}
    for s, path in zip(schemas, by_ns.values(), strict=True):
        for imp in s.findall(f"{{{XS}}}import"):
            if imp.get("namespace") in by_ns:
                imp.set("schemaLocation", by_ns[imp.get("namespace")].name)
        # namespaces declared on wsdl:definitions must be carried into the schema file
        copy = etree.fromstring(etree.tostring(s))
        path.write_bytes(etree.tostring(copy))
    main = folder / "all.xsd"
    imports = "".join(
        f'<xs:import namespace="{ns}" schemaLocation="{p.name}"/>' for ns, p in by_ns.items()
    )
    main.write_text(f'<xs:schema xmlns:xs="{XS}">{imports}</xs:schema>')
    return etree.XMLSchema(etree.parse(str(main)))


class Fastlegeregisteret:
    def __init__(self, username: str, password: str) -> None:
        self.schema = wsdl_schema()
        self.credentials = base64.b64encode(f"{username}:{password}".encode()).decode()
        self.gp: dict[str, int] = {}
        """patient NIN → GP HER-id"""
        self.violations: list[str] = []
        self.calls: list[str] = []

    def app(self) -> Starlette:
        return Starlette(routes=[Route("/v2/flr", self.handle, methods=["POST"])])

    def _fault(self, message: str, status: int = 500) -> Response:
        body = (
            f'<s:Envelope xmlns:s="{SOAP12}"><s:Body><s:Fault><s:Code><s:Value>s:Sender</s:Value>'
            f'</s:Code><s:Reason><s:Text xml:lang="nb-NO">{message}</s:Text></s:Reason>'
            f'<s:Detail><GenericFault xmlns="http://register.nhn.no/Common"><ErrorCode>Feil</ErrorCode>'
            f"<Message>{message}</Message></GenericFault></s:Detail></s:Fault></s:Body></s:Envelope>"
        )
        return Response(body, status, media_type="application/soap+xml; charset=utf-8")

    async def handle(self, request: Request) -> Response:
        if request.headers.get("authorization") != f"Basic {self.credentials}":
            return Response(status_code=401, headers={"WWW-Authenticate": 'Basic realm="flr"'})
        ctype = request.headers.get("content-type", "")
        if not ctype.startswith("application/soap+xml") or f'action="{ACTION}"' not in ctype:
            return self._fault("unsupported content type or SOAP action", 415)
        try:
            env = etree.fromstring(await request.body())
        except etree.XMLSyntaxError as exc:
            return self._fault(f"not XML: {exc}", 400)
        body = env.find(f"{{{SOAP12}}}Body")
        op = body[0] if body is not None and len(body) else None
        if op is None or not self.schema.validate(op):
            errors = [str(e) for e in self.schema.error_log] or ["no SOAP 1.2 Body"]
            self.violations += [f"request: {e}" for e in errors]
            return self._fault("request does not follow the WSDL: " + "; ".join(errors), 400)
        nin = op.findtext(f"{{{FLR}}}patientNin") or ""
        self.calls.append(nin)
        if len(nin) != 11 or not nin.isdigit():
            return self._fault("ArgumentException: Ugyldig fødselsnummer")
        her = self.gp.get(nin)
        if her is None:
            return self._fault("ArgumentException: Personen er ikke tilknyttet fastlegekontrakt")
        result = etree.fromstring(
            f'<GetPatientGPDetailsResponse xmlns="{FLR}"><GetPatientGPDetailsResult>'
            f"<GPHerId>{her}</GPHerId><PatientNIN>{nin}</PatientNIN>"
            f"</GetPatientGPDetailsResult></GetPatientGPDetailsResponse>"
        )
        if not self.schema.validate(result):
            self.violations += [f"response: {e}" for e in self.schema.error_log]
        envelope = f'<s:Envelope xmlns:s="{SOAP12}"><s:Body>{etree.tostring(result).decode()}</s:Body></s:Envelope>'
        return Response(envelope, 200, media_type="application/soap+xml; charset=utf-8")


__all__: list[Any] = ["Fastlegeregisteret", "wsdl_schema"]
