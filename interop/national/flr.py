"""Fastlegeregisteret (the GP register): who is a patient's regular GP now.

SOAP 1.2 per ``standards/nhn/fastlegeregisteret/wsdl/nhn-fastlegeregisteret-read.wsdl``
(``FlrReadOperationsService``, HTTP Basic authentication with a Grunndata account). Only
``GetPatientGPDetails`` is used: its ``GPHerId`` is the GP's HER-id in Adresseregisteret.
"Not on any GP list" comes back as a SOAP fault and is a normal answer (None).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from xml.sax.saxutils import escape

import httpx
from lxml import etree

FLR_NS = "http://schemas.nhn.no/reg/flr"
SOAP12_NS = "http://www.w3.org/2003/05/soap-envelope"
COMMON_NS = "http://register.nhn.no/Common"
ACTION = f"{FLR_NS}/IFlrReadOperations/GetPatientGPDetails"

NOT_ON_A_LIST = ("ikke tilknyttet fastlegekontrakt",)
"""Fault messages that mean "this person has no GP" (Norwegian, as FLR words them)."""


class FlrError(Exception):
    def __init__(self, message: str, *, transient: bool) -> None:
        super().__init__(message)
        self.transient = transient


@dataclass(frozen=True)
class PatientGp:
    patient_nin: str
    gp_her_id: str
    contract_id: str | None


def _envelope(nin: str) -> bytes:
    return (
        f'<?xml version="1.0" encoding="utf-8"?>'
        f'<s:Envelope xmlns:s="{SOAP12_NS}"><s:Body>'
        f'<GetPatientGPDetails xmlns="{FLR_NS}"><patientNin>{escape(nin)}</patientNin>'
        f"</GetPatientGPDetails></s:Body></s:Envelope>"
    ).encode()


class FlrClient:
    def __init__(
        self, url: str, *, username: str, password: str, http: httpx.Client | None = None
    ) -> None:
        self.url = url
        self.auth = httpx.BasicAuth(username, password)
        self.http = http or httpx.Client(timeout=30.0)

    def patient_gp(self, nin: str) -> PatientGp | None:
        headers = {"Content-Type": f'application/soap+xml; charset=utf-8; action="{ACTION}"'}
        try:
            r = self.http.post(self.url, content=_envelope(nin), headers=headers, auth=self.auth)
        except httpx.HTTPError as exc:
            raise FlrError(f"FLR {self.url}: {type(exc).__name__}: {exc}", transient=True) from exc
        parser = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False)
        try:
            root = etree.fromstring(r.content, parser)
        except etree.XMLSyntaxError:
            raise FlrError(
                f"FLR {self.url}: HTTP {r.status_code}, not SOAP: {r.text[:200]}",
                transient=r.status_code >= 500 or r.status_code == 401,
            ) from None
        ns = {"s": SOAP12_NS, "f": FLR_NS, "c": COMMON_NS}
        fault = root.find(".//s:Fault", ns)
        if fault is not None:
            texts: Any = fault.xpath(".//c:Message/text()", namespaces=ns) or fault.xpath(
                ".//s:Reason/s:Text/text()", namespaces=ns
            )
            message = "".join(str(t) for t in texts)
            if any(m in message for m in NOT_ON_A_LIST):
                return None
            raise FlrError(f"FLR refused GetPatientGPDetails: {message}", transient=False)
        if r.status_code != 200:
            raise FlrError(f"FLR {self.url}: HTTP {r.status_code}", transient=r.status_code >= 500)
        result = root.find(".//f:GetPatientGPDetailsResult", ns)
        her = result.findtext("f:GPHerId", namespaces=ns) if result is not None else None
        if not her or not her.strip():
            return None
        return PatientGp(
            result.findtext("f:PatientNIN", default=nin, namespaces=ns),  # type: ignore[union-attr]
            her.strip(),
            result.findtext("f:GPContractId", namespaces=ns),  # type: ignore[union-attr]
        )
