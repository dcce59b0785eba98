"""FHIR R4 JSON → canonical measurements: single Observations and Bundles (transaction,
batch, collection, message, searchset), including Norwegian VkpObservation/PMD batches and
PHD IG bundles (their Devices become :class:`DeviceRef` for a conditional create).

Each Observation reports all its codings (the first LOINC, else MDC, else the first coding as
``code``; the rest as ``extra_codes``); ``valueQuantity`` gives the UCUM ``code`` when the
system is UCUM, else the ``unit`` text. The subject is a national id when
``subject.identifier`` (or the Bundle's Patient) carries one, else the literal reference.
The source's stable id is ``Observation.identifier[0]`` when present.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import orjson

from adapters import jsonsafe
from adapters.base import (
    DIAG_INVALID,
    DIAG_MISSING_PATIENT,
    DIAG_MISSING_TIME,
    DIAG_MISSING_VALUE,
    DIAG_NOT_A_MEASUREMENT,
    DIAG_PARSE_ERROR,
    DIAG_UNSUPPORTED,
    DNR_OID,
    FHIR_REFERENCE,
    FNR_OID,
    LOINC,
    MDC,
    UCUM,
    AdapterError,
    AdapterResult,
    Code,
    Component,
    DeviceRef,
    Diagnostic,
    IngestMeta,
    Measurement,
    PatientRef,
)
from adapters.timeutil import parse_iso

NATIONAL = (FNR_OID, DNR_OID)
IGNORED_TYPES = frozenset(
    {
        "Patient",
        "Device",
        "Provenance",
        "Organization",
        "Practitioner",
        "PractitionerRole",
        "DeviceMetric",
        "OperationOutcome",
        "MessageHeader",
    }
)


def _codes(cc: Any) -> tuple[Code, tuple[Code, ...]] | None:
    codings = [
        Code(c.get("system", ""), str(c["code"]), c.get("display"))
        for c in (cc or {}).get("coding", [])
        if isinstance(c, dict) and c.get("code")
    ]
    if not codings:
        return None
    primary = next((c for c in codings if c.system == LOINC), None) or next(
        (c for c in codings if c.system == MDC), codings[0]
    )
    return primary, tuple(c for c in codings if c is not primary)


def _quantity(node: dict[str, Any]) -> tuple[Decimal | None, str | None, str | None]:
    """(value, unit, out-of-range) from valueQuantity; comparator >/< means off scale."""
    q = node.get("valueQuantity")
    if not isinstance(q, dict) or q.get("value") is None:
        return None, None, None
    unit = (
        q.get("code")
        if q.get("system") == UCUM and q.get("code")
        else (q.get("unit") or q.get("code"))
    )
    comparator = q.get("comparator")
    oor = "HI" if comparator in (">", ">=") else "LO" if comparator in ("<", "<=") else None
    return Decimal(str(q["value"])), unit, oor


COMPARATORS = ("<", "<=", ">=", ">")


class FhirAdapter:
    name = "fhir"
    content_types = ("application/fhir+json", "application/json")

    def parse(self, data: bytes, meta: IngestMeta) -> AdapterResult:
        try:
            doc = orjson.loads(data)
        except orjson.JSONDecodeError as exc:
            raise AdapterError(f"not JSON: {exc}", DIAG_PARSE_ERROR) from None
        try:
            jsonsafe.check(doc, raw=data)
        except jsonsafe.UnsafeJson as exc:
            raise AdapterError(str(exc), DIAG_PARSE_ERROR) from None
        if not isinstance(doc, dict) or "resourceType" not in doc:
            raise AdapterError("not a FHIR resource (no resourceType)", DIAG_PARSE_ERROR)
        result = AdapterResult()
        if doc["resourceType"] == "Bundle":
            ident = doc.get("identifier")
            if isinstance(ident, dict) and ident.get("value"):
                result.message_id = f"{ident.get('system', '')}|{ident['value']}"
            entries = [e for e in doc.get("entry") or [] if isinstance(e, dict)]
            by_url = {e.get("fullUrl"): e.get("resource") for e in entries if e.get("fullUrl")}
            for i, e in enumerate(entries):
                res = e.get("resource")
                if not isinstance(res, dict):
                    continue
                self._resource(res, f"entry[{i}]", meta, result, by_url)
        else:
            self._resource(doc, doc["resourceType"], meta, result, {})
        return result

    def _resource(
        self,
        res: dict[str, Any],
        where: str,
        meta: IngestMeta,
        result: AdapterResult,
        by_url: dict[Any, Any],
    ) -> None:
        rtype = res.get("resourceType")
        if rtype == "Device":
            for ident in res.get("identifier") or []:
                if isinstance(ident, dict) and ident.get("system") and ident.get("value"):
                    result.devices.append(
                        DeviceRef(
                            ident["system"],
                            ident["value"],
                            manufacturer=res.get("manufacturer"),
                            model=res.get("modelNumber"),
                            serial=res.get("serialNumber"),
                        )
                    )
                    break
            return
        if rtype in IGNORED_TYPES:
            return
        result.items_seen += 1
        if rtype != "Observation":
            result.diagnostics.append(
                Diagnostic("warning", DIAG_UNSUPPORTED, f"{rtype} is not a measurement", where)
            )
            return
        self._observation(res, where, meta, result, by_url)

    def _patient(
        self, obs: dict[str, Any], meta: IngestMeta, by_url: dict[Any, Any]
    ) -> PatientRef | None:
        subject = obs.get("subject")
        if isinstance(subject, dict):
            ident = subject.get("identifier")
            if isinstance(ident, dict) and ident.get("value"):
                return PatientRef(ident.get("system", ""), str(ident["value"]))
            ref = subject.get("reference")
            if isinstance(ref, str):
                target = by_url.get(ref)
                if isinstance(target, dict) and target.get("resourceType") == "Patient":
                    for i in target.get("identifier") or []:
                        if isinstance(i, dict) and i.get("system") in NATIONAL and i.get("value"):
                            return PatientRef(i["system"], i["value"])
                if not ref.startswith("urn:"):
                    return PatientRef(FHIR_REFERENCE, ref)
        return meta.patient

    def _device(
        self, obs: dict[str, Any], result: AdapterResult, by_url: dict[Any, Any]
    ) -> DeviceRef | None:
        dev = obs.get("device")
        if isinstance(dev, dict):
            ref = dev.get("reference")
            target = by_url.get(ref) if isinstance(ref, str) else None
            if isinstance(target, dict):
                for ident in target.get("identifier") or []:
                    if isinstance(ident, dict) and ident.get("system") and ident.get("value"):
                        return DeviceRef(
                            ident["system"],
                            ident["value"],
                            manufacturer=target.get("manufacturer"),
                            model=target.get("modelNumber"),
                        )
            ident = dev.get("identifier")
            if isinstance(ident, dict) and ident.get("value"):
                return DeviceRef(ident.get("system"), ident["value"])
        return None

    def _observation(
        self,
        obs: dict[str, Any],
        where: str,
        meta: IngestMeta,
        result: AdapterResult,
        by_url: dict[Any, Any],
    ) -> None:
        codes = _codes(obs.get("code"))
        if codes is None:
            result.diagnostics.append(
                Diagnostic("error", DIAG_INVALID, "Observation.code has no coding", where)
            )
            return
        code, extra = codes
        label = f"{code.display or code.code}"
        if (
            obs.get("hasMember")
            and not obs.get("component")
            and not any(k.startswith("value") for k in obs)
        ):
            result.diagnostics.append(
                Diagnostic(
                    "information",
                    DIAG_NOT_A_MEASUREMENT,
                    f"{label}: a panel grouping other Observations (hasMember)",
                    where,
                )
            )
            return
        if obs.get("dataAbsentReason") and not obs.get("component"):
            reason = (obs["dataAbsentReason"].get("coding") or [{}])[0].get("code", "unknown")
            result.diagnostics.append(
                Diagnostic(
                    "warning",
                    DIAG_MISSING_VALUE,
                    f"{label}: no value (dataAbsentReason {reason})",
                    where,
                )
            )
            return
        value_keys = [k for k in obs if k.startswith("value")]
        if value_keys and "valueQuantity" not in value_keys:
            result.diagnostics.append(
                Diagnostic(
                    "warning",
                    DIAG_UNSUPPORTED,
                    f"{label}: {value_keys[0]} is not a numeric measurement",
                    where,
                )
            )
            return
        patient = self._patient(obs, meta, by_url)
        if patient is None:
            ref = (obs.get("subject") or {}).get("reference")
            why = (
                f"subject {ref} is a Patient in the Bundle without a fødselsnummer/D-nummer"
                if ref
                else "no subject"
            )
            result.diagnostics.append(
                Diagnostic("error", DIAG_MISSING_PATIENT, f"{label}: {why}", where)
            )
            return
        when_text = (
            obs.get("effectiveDateTime")
            or obs.get("effectiveInstant")
            or (obs.get("effectivePeriod") or {}).get("start")
        )
        if not when_text:
            result.diagnostics.append(
                Diagnostic("error", DIAG_MISSING_TIME, f"{label}: no effective time", where)
            )
            return
        try:
            when = parse_iso(when_text, meta.default_timezone)
        except ValueError as exc:
            result.diagnostics.append(
                Diagnostic("error", DIAG_MISSING_TIME, f"{label}: {exc}", where)
            )
            return
        components: list[Component] = []
        for j, comp in enumerate(obs.get("component") or []):
            cc = _codes(comp.get("code"))
            if cc is None:
                continue
            if comp.get("dataAbsentReason"):
                result.diagnostics.append(
                    Diagnostic(
                        "warning",
                        DIAG_MISSING_VALUE,
                        f"{cc[0].code}: component without a value",
                        f"{where}.component[{j}]",
                    )
                )
                continue
            v, u, oor = _quantity(comp)
            if v is None and oor is None:
                result.diagnostics.append(
                    Diagnostic(
                        "warning",
                        DIAG_UNSUPPORTED,
                        f"{cc[0].code}: component value is not a quantity",
                        f"{where}.component[{j}]",
                    )
                )
                continue
            components.append(Component(cc[0], None if oor else v, u, oor, cc[1]))  # type: ignore[arg-type]
        value, unit, oor = _quantity(obs)
        comparator = (obs.get("valueQuantity") or {}).get("comparator")
        if comparator is not None:
            # a bound ("> 11") is a value with its comparator, kept as sent; it is not the
            # meter's off-scale reading, whose limit is the meter's and not the sender's
            if comparator not in COMPARATORS:
                result.diagnostics.append(
                    Diagnostic(
                        "error",
                        DIAG_INVALID,
                        f"{label}: valueQuantity.comparator {comparator!r} is not one of "
                        f"{', '.join(COMPARATORS)}",
                        f"{where}.valueQuantity.comparator",
                    )
                )
                return
            oor = None
        if not components and value is None:
            result.diagnostics.append(
                Diagnostic("warning", DIAG_MISSING_VALUE, f"{label}: no usable value", where)
            )
            return
        ident = (obs.get("identifier") or [None])[0]
        source_id = (
            (ident.get("system", "urn:dho-interop:fhir"), str(ident["value"]))
            if isinstance(ident, dict) and ident.get("value")
            else None
        )
        status = obs.get("status", "final")
        if status not in ("final", "preliminary", "amended", "corrected", "entered-in-error"):
            result.diagnostics.append(
                Diagnostic(
                    "warning",
                    DIAG_UNSUPPORTED,
                    f"{label}: status {status!r} is not a result",
                    where,
                )
            )
            return
        end_text = (obs.get("effectivePeriod") or {}).get("end")
        result.measurements.append(
            Measurement(
                code=code,
                value=None if oor else value,
                unit=unit,
                effective=when.value,
                timezone_assumed=when.zone_assumed,
                patient=patient,
                location=where,
                components=tuple(components),
                extra_codes=extra,
                device=self._device(obs, result, by_url),
                source_id=source_id,
                status=status,
                out_of_range=oor,  # type: ignore[arg-type]
                comparator=comparator,
                effective_end=parse_iso(end_text, meta.default_timezone).value
                if end_text
                else None,
            )
        )
