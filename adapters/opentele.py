"""OpenTele (Danish open-source telemedicine) input.

* MedCom chronic dataset XML (``urn:oio:medcom:chronicdataset:1.0.0``/``1.0.1``, the
  self-monitored samples OpenTele sends to the Danish KIH database): each LaboratoryReport
  (or LaboratoryReportExtended) becomes a measurement coded with its NPU/MCS/DNK code
  (``urn:oid:1.2.208.176.2.1``), value, unit text and time; the citizen's CPR number is
  reported as ``urn:oid:1.2.208.176.1.2`` and so waits in quarantine until a person links it.
  Non-numeric results are reported, not guessed.
* OpenTele completed-questionnaire uploads (the JSON the OpenTele app posts to the server:
  ``QuestionnaireId``, ``version``, ``date``, ``output`` variables per node): measurement nodes
  become measurements, the answers one QuestionnaireResponse carrying the flow's
  GREEN/YELLOW/RED severity as a zone — see :mod:`adapters.opentele_results` for the format,
  where it was learned from, and the rules.
* OpenTele questionnaire *definitions* (JSON flow graphs with measurement nodes and
  GREEN/YELLOW/RED branches) hold no patient data: each is reported as such.

The input's shape decides which: XML, a definition (``nodes``), or an upload (``output``).
"""

from __future__ import annotations

from decimal import Decimal, InvalidOperation
from typing import Any

import orjson
from lxml import etree

from adapters import jsonsafe
from adapters.base import (
    DIAG_INVALID,
    DIAG_MISSING_TIME,
    DIAG_NOT_A_MEASUREMENT,
    DIAG_PARSE_ERROR,
    DIAG_UNSUPPORTED,
    AdapterError,
    AdapterResult,
    Code,
    Comparator,
    DeviceRef,
    Diagnostic,
    IngestMeta,
    Measurement,
    PatientRef,
)
from adapters.opentele_results import CPR_SYSTEM, is_upload, parse_uploads
from adapters.timeutil import parse_iso

NPU_SYSTEM = "urn:oid:1.2.208.176.2.1"
MCS_SYSTEM = "urn:oid:1.2.208.184.100.8"
"""MedCom's own codes (MCS…) for what NPU has no code for (FEV1, symptom scores …)."""
NS = {
    "mc": "urn:oio:medcom:chronicdataset:1.0.0",
    "mc101": "urn:oio:medcom:chronicdataset:1.0.1",
    "cpr": "http://rep.oio.dk/cpr.dk/xml/schemas/core/2005/03/18/",
}
UNIT_TEXT = {"mm/HG": "mm[Hg]", "Liter": "L", "1/min": "/min", "mmol/l": "mmol/L"}
OPERATORS: dict[str, Comparator] = {
    "greater_than": ">",
    "less_than": "<",
    "greater_than_or_equal": ">=",
    "less_than_or_equal": "<=",
}
"""MedCom's ResultOperatorIdentifier: the result is a bound ("> 11"), kept as a comparator."""
PARSER = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False, huge_tree=False)


class OpenTeleAdapter:
    name = "opentele"
    content_types = ("application/xml", "application/json")

    def parse(self, data: bytes, meta: IngestMeta) -> AdapterResult:
        head = data.lstrip()[:1]
        if head in (b"{", b"["):
            return self._json(data, meta)
        if head == b"<":
            return self._xml(data, meta)
        raise AdapterError("neither OpenTele JSON nor MedCom chronic dataset XML", DIAG_PARSE_ERROR)

    def _json(self, data: bytes, meta: IngestMeta) -> AdapterResult:
        try:
            doc = orjson.loads(data)
        except orjson.JSONDecodeError as exc:
            raise AdapterError(
                f"not JSON: {exc.msg}", DIAG_PARSE_ERROR, f"line {exc.lineno} column {exc.colno}"
            ) from None
        try:
            jsonsafe.check(doc, raw=data)
        except jsonsafe.UnsafeJson as exc:
            raise AdapterError(str(exc), DIAG_PARSE_ERROR) from None
        if is_upload(doc) or (isinstance(doc, list) and doc and is_upload(doc[0])):
            return parse_uploads(doc, meta)
        result = AdapterResult(items_seen=1)
        if isinstance(doc, dict) and isinstance(doc.get("nodes"), dict):
            kinds = sorted(
                {n.get("type", "?") for n in doc["nodes"].values() if isinstance(n, dict)}
            )
            result.diagnostics.append(
                Diagnostic(
                    "warning",
                    DIAG_NOT_A_MEASUREMENT,
                    f"OpenTele questionnaire definition {doc.get('title')!r} (node types: {', '.join(kinds)}), not results",
                    "$.nodes",
                )
            )
            return result
        result.diagnostics.append(
            Diagnostic(
                "error",
                DIAG_UNSUPPORTED,
                "JSON is not an OpenTele document this adapter knows",
                "$",
            )
        )
        return result

    def _xml(self, data: bytes, meta: IngestMeta) -> AdapterResult:
        if b"<!DOCTYPE" in data[:2048]:
            raise AdapterError("XML with a DOCTYPE is not accepted", DIAG_PARSE_ERROR)
        try:
            root = etree.fromstring(data, PARSER)
        except etree.XMLSyntaxError as exc:
            raise AdapterError(f"not well-formed XML: {exc}", DIAG_PARSE_ERROR) from None
        if not (root.tag.startswith("{urn:oio:medcom:chronicdataset")):
            raise AdapterError(
                f"root element {root.tag} is not a MedCom chronic dataset", DIAG_UNSUPPORTED
            )
        cpr = root.findtext(".//cpr:PersonCivilRegistrationIdentifier", namespaces=NS)
        patient = PatientRef(CPR_SYSTEM, cpr.strip()) if cpr else meta.patient
        result = AdapterResult()
        reports: list[Any] = root.xpath(  # type: ignore[assignment]
            ".//mc:LaboratoryReport | .//mc101:LaboratoryReportExtended", namespaces=NS
        )
        for i, rep in enumerate(reports):
            where = f"LaboratoryReport[{i + 1}]"
            result.items_seen += 1

            def text(tag: str, rep: etree._Element = rep) -> str:
                return (
                    rep.findtext(f"mc:{tag}", namespaces=NS)
                    or rep.findtext(f"mc101:{tag}", namespaces=NS)
                    or ""
                ).strip()

            code = text("IupacIdentifier")
            label = text("AnalysisText") or code
            if patient is None:
                result.diagnostics.append(
                    Diagnostic("error", "missing-patient", "no citizen identifier", where)
                )
                continue
            if text("ResultEncodingIdentifier") not in ("numeric", ""):
                result.diagnostics.append(
                    Diagnostic(
                        "warning",
                        DIAG_UNSUPPORTED,
                        f"{label}: result encoding {text('ResultEncodingIdentifier')!r} is not numeric",
                        where,
                    )
                )
                continue
            try:
                value = Decimal(text("ResultText").replace(",", "."))
            except InvalidOperation:
                result.diagnostics.append(
                    Diagnostic(
                        "error",
                        DIAG_INVALID,
                        f"{label}: result {text('ResultText')!r} is not a number",
                        where,
                    )
                )
                continue
            try:
                when = parse_iso(text("CreatedDateTime"), meta.default_timezone)
            except ValueError as exc:
                result.diagnostics.append(
                    Diagnostic("error", DIAG_MISSING_TIME, f"{label}: {exc}", where)
                )
                continue
            unit = text("ResultUnitText")
            device = None
            instrument = rep.find("mc101:Instrument", namespaces=NS)
            if instrument is not None:
                mid = instrument.findtext("mc101:MedComID", namespaces=NS)
                device = DeviceRef(
                    "urn:dho-interop:device:medcom",
                    mid,
                    manufacturer=instrument.findtext("mc101:Manufacturer", namespaces=NS),
                    model=instrument.findtext("mc101:Model", namespaces=NS),
                )
            uuid = text("UuidIdentifier")
            operator = text("ResultOperatorIdentifier")
            if operator and operator not in OPERATORS:
                result.diagnostics.append(
                    Diagnostic(
                        "error",
                        DIAG_INVALID,
                        f"{label}: result operator {operator!r} is not known, so what "
                        f"{text('ResultText')} bounds cannot be told",
                        where,
                    )
                )
                continue
            result.measurements.append(
                Measurement(
                    Code(MCS_SYSTEM if code.startswith("MCS") else NPU_SYSTEM, code, label),
                    value,
                    UNIT_TEXT.get(unit, unit) or None,
                    when.value,
                    patient,
                    where,
                    device=device,
                    timezone_assumed=when.zone_assumed,
                    source_id=("urn:dho-interop:medcom:sample", uuid) if uuid else None,
                    comparator=OPERATORS.get(operator),
                )
            )
        return result
