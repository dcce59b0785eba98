"""HL7 CDA Personal Health Monitoring Report (Continua PHMR) → canonical measurements.

Every ``observation`` with a physical-quantity ``value`` (``xsi:type="PQ"``) becomes a
measurement: its code (OIDs 2.16.840.1.113883.6.1 = LOINC, …6.96 = SNOMED CT,
2.16.840.1.113883.6.24 = MDC), value, UCUM unit and ``effectiveTime`` (HL7 TS; zone-less times
get the configured zone). Systolic and diastolic observations stay separate measurements (the
PHMR does not group them). The patient is ``recordTarget/patientRole/id`` (a fødselsnummer OID
identifies directly, any other id goes through the patient-link table). Hardened XML parsing.
"""

from __future__ import annotations

from decimal import Decimal, InvalidOperation

from lxml import etree

from adapters.base import (
    DIAG_MISSING_TIME,
    DIAG_PARSE_ERROR,
    DIAG_UNSUPPORTED,
    DNR_OID,
    FNR_OID,
    LOINC,
    MDC,
    SNOMED,
    AdapterError,
    AdapterResult,
    Code,
    Diagnostic,
    IngestMeta,
    Measurement,
    PatientRef,
    vendor_user_system,
)
from adapters.timeutil import parse_hl7_ts

NS = {"h": "urn:hl7-org:v3", "xsi": "http://www.w3.org/2001/XMLSchema-instance"}
XSI_TYPE = "{http://www.w3.org/2001/XMLSchema-instance}type"
SYSTEMS = {
    "2.16.840.1.113883.6.1": LOINC,
    "2.16.840.1.113883.6.96": SNOMED,
    "2.16.840.1.113883.6.24": MDC,
}
PARSER = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False, huge_tree=False)


class PhmrAdapter:
    name = "cda-phmr"
    content_types = ("application/xml", "text/xml")

    def parse(self, data: bytes, meta: IngestMeta) -> AdapterResult:
        if b"<!DOCTYPE" in data[:4096]:
            raise AdapterError("XML with a DOCTYPE is not accepted", DIAG_PARSE_ERROR)
        try:
            root = etree.fromstring(data, PARSER)
        except etree.XMLSyntaxError as exc:
            raise AdapterError(f"not well-formed XML: {exc}", DIAG_PARSE_ERROR) from None
        if root.tag != "{urn:hl7-org:v3}ClinicalDocument":
            raise AdapterError(
                f"root element {root.tag} is not a CDA ClinicalDocument", DIAG_UNSUPPORTED
            )
        patient = meta.patient
        pid = root.find("h:recordTarget/h:patientRole/h:id", NS)
        if pid is not None and pid.get("extension"):
            oid = pid.get("root", "")
            system = {"2.16.578.1.12.4.1.4.1": FNR_OID, "2.16.578.1.12.4.1.4.2": DNR_OID}.get(oid)
            patient = PatientRef(
                system or vendor_user_system(f"{meta.source}:{oid}"), pid.get("extension", "")
            )
        doc_id = root.find("h:id", NS)
        result = AdapterResult(
            message_id=f"{doc_id.get('root')}:{doc_id.get('extension', '')}"
            if doc_id is not None
            else None
        )
        for i, obs in enumerate(root.iterfind(".//h:observation", NS)):
            value = obs.find("h:value", NS)
            if value is None:
                continue
            where = f"observation[{i + 1}]"
            result.items_seen += 1
            code_el = obs.find("h:code", NS)
            vtype = value.get(XSI_TYPE)
            if vtype not in ("PQ", "RTO_PQ_PQ") or code_el is None:
                result.diagnostics.append(
                    Diagnostic(
                        "information",
                        DIAG_UNSUPPORTED,
                        f"observation value of type {value.get(XSI_TYPE)} is not a quantity",
                        where,
                    )
                )
                continue
            code = Code(
                SYSTEMS.get(code_el.get("codeSystem", ""), f"urn:oid:{code_el.get('codeSystem')}"),
                code_el.get("code", ""),
                code_el.get("displayName"),
            )
            eff = obs.find("h:effectiveTime", NS)
            ts = (eff.get("value") if eff is not None else None) or (
                eff.find("h:low", NS).get("value")
                if eff is not None and eff.find("h:low", NS) is not None
                else None
            )
            if not ts:
                result.diagnostics.append(
                    Diagnostic(
                        "error",
                        DIAG_MISSING_TIME,
                        f"{code.display or code.code}: no effectiveTime",
                        where,
                    )
                )
                continue
            try:
                when = parse_hl7_ts(ts, meta.default_timezone)
                if vtype == "RTO_PQ_PQ":
                    number, unit = _ratio(value)
                else:
                    number, unit = Decimal(value.get("value", "")), value.get("unit")
            except (ValueError, InvalidOperation, ArithmeticError) as exc:
                result.diagnostics.append(
                    Diagnostic(
                        "error", DIAG_PARSE_ERROR, f"{code.display or code.code}: {exc}", where
                    )
                )
                continue
            if patient is None:
                result.diagnostics.append(
                    Diagnostic("error", "missing-patient", "no patientRole id", where)
                )
                continue
            result.measurements.append(
                Measurement(
                    code,
                    number,
                    unit,
                    when.value,
                    patient,
                    where,
                    timezone_assumed=when.zone_assumed,
                )
            )
        return result


def _ratio(value: etree._Element) -> tuple[Decimal, str]:
    """A ratio of quantities (RTO_PQ_PQ: a pulse as 67 per 1 min) as one quantity: the
    numerator over the denominator, in the numerator's unit per the denominator's."""
    num, den = value.find("h:numerator", NS), value.find("h:denominator", NS)
    if num is None or den is None:
        raise ValueError("a ratio without its numerator or denominator")
    divisor = Decimal(den.get("value", "1"))
    if divisor == 0:
        raise ValueError("a ratio with the denominator 0")
    top = num.get("unit", "1")
    unit = f"{'' if top == '1' else top}/{den.get('unit', '1')}"
    return Decimal(num.get("value", "")) / divisor, unit
