"""Mapped measurements → FHIR R4 JSON (Observation, QuestionnaireResponse).

The Observations follow the R4 vital-signs profiles where one applies: category
``vital-signs``, the LOINC coding first, SNOMED CT/MDC/source codings after it, UCUM
``valueQuantity``, BP as a panel with systolic/diastolic components and no value of its own.
A meter's HI/LO reading is a ``valueQuantity`` with comparator ``>``/``<`` and the meter's
limit (interpretation ``>``/``<``: off scale), never a made-up number. When the input had no
time zone, ``effectiveDateTime`` carries the extension
``https://dho-interop.no/fhir/StructureDefinition/timezone-assumed``.

They are not validated here: the builder's output shape is fixed and covered by tests
against the ``fhir.resources`` models; the store validates client input at its edge.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from decimal import Decimal
from functools import lru_cache
from typing import TYPE_CHECKING, Any

from adapters.base import LOINC, UCUM, Code, Measurement, QuestionnaireAnswers
from interop.fhir.dates import format_instant

if TYPE_CHECKING:
    from interop.mapping import MappedComponent, MappedMeasurement

KEY_SYSTEM = "urn:dho-interop:measurement-key"
TZ_ASSUMED_URL = "https://dho-interop.no/fhir/StructureDefinition/timezone-assumed"
SEVERITY_URL = "https://dho-interop.no/fhir/StructureDefinition/source-severity"
"""Extension on a QuestionnaireResponse (and its items): the zone the source's own triage gave."""
ZONE_SYSTEM = "https://dho-interop.no/fhir/CodeSystem/zone"
"""The traffic-light zones (the same CodeSystem as ``interop.care.triage.ZONE_SYSTEM``)."""
ZONES = ("green", "yellow", "red")
CATEGORY_SYSTEM = "http://terminology.hl7.org/CodeSystem/observation-category"
INTERPRETATION_SYSTEM = "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation"
CATEGORY_DISPLAY = {
    "vital-signs": "Vital Signs",
    "laboratory": "Laboratory",
    "survey": "Survey",
    "activity": "Activity",
    "exam": "Exam",
}


def observation_identifier(m: Measurement) -> tuple[str, str]:
    """The idempotency key: the source's stable id, else sha256(device, patient, code, UTC time)."""
    if m.source_id:
        return m.source_id
    device = ""
    if m.device is not None:
        device = f"{m.device.identifier_system or ''}|{m.device.identifier_value or m.device.serial or ''}"
    when = m.effective.astimezone(UTC).isoformat()
    key = "\x1f".join([device, m.patient.system, m.patient.value, m.code.system, m.code.code, when])
    return KEY_SYSTEM, hashlib.sha256(key.encode()).hexdigest()


@lru_cache(maxsize=16)
def _issued_text(issued: datetime) -> str:
    # every Observation of an ingest has the same issued time
    return format_instant(issued)


def number(value: Decimal) -> int | float:
    """JSON number for a Decimal (integers stay integers)."""
    exponent = value.as_tuple().exponent
    if isinstance(exponent, int) and exponent >= 0 and value == value.to_integral_value():
        return int(value)
    return float(value)


def _coding(c: Code) -> dict[str, str]:
    d = {"system": c.system, "code": c.code}
    if c.display:
        d["display"] = c.display
    return d


def _codings(concept_codings: tuple[Code, ...], source: tuple[Code, ...]) -> list[dict[str, str]]:
    out = [_coding(c) for c in concept_codings]
    seen = {(c.system, c.code) for c in concept_codings}
    for c in source:
        # a source LOINC code other than the concept's (e.g. the mg/dL glucose code of a value
        # now stored in mmol/L) would contradict the value; other source codings are kept
        if (c.system, c.code) in seen or c.system == LOINC:
            continue
        seen.add((c.system, c.code))
        out.append(_coding(c))
    return out


def _quantity(
    value: Decimal | None, unit: str | None, oor: str | None, limit: Decimal | None
) -> dict[str, Any] | None:
    if oor is not None:
        if limit is None:
            return None
        q: dict[str, Any] = {"value": number(limit), "comparator": ">" if oor == "HI" else "<"}
    elif value is None:
        return None
    else:
        q = {"value": number(value)}
    if unit:
        q.update({"unit": unit, "system": UCUM, "code": unit})
    return q


def _off_scale(oor: str) -> list[dict[str, Any]]:
    code, display = (">", "Off scale high") if oor == "HI" else ("<", "Off scale low")
    return [
        {
            "coding": [{"system": INTERPRETATION_SYSTEM, "code": code, "display": display}],
            "text": f"meter reading {oor}",
        }
    ]


def _absent(oor: str | None) -> dict[str, Any]:
    if oor == "HI":
        return {
            "coding": [
                {
                    "system": "http://terminology.hl7.org/CodeSystem/data-absent-reason",
                    "code": "positive-infinity",
                }
            ]
        }
    if oor == "LO":
        return {
            "coding": [
                {
                    "system": "http://terminology.hl7.org/CodeSystem/data-absent-reason",
                    "code": "negative-infinity",
                }
            ]
        }
    return {
        "coding": [
            {
                "system": "http://terminology.hl7.org/CodeSystem/data-absent-reason",
                "code": "unknown",
            }
        ]
    }


def _component_json(c: MappedComponent) -> dict[str, Any]:
    d: dict[str, Any] = {
        "code": {
            "coding": _codings(c.concept.codings, c.source_codes),
            "text": c.concept.loinc.display,
        }
    }
    q = _quantity(c.value, c.unit, c.out_of_range, c.meter_limit)
    if q is not None:
        d["valueQuantity"] = q
    else:
        d["dataAbsentReason"] = _absent(c.out_of_range)
    if c.out_of_range:
        d["interpretation"] = _off_scale(c.out_of_range)
    return d


def build_observation(
    mapped: MappedMeasurement,
    *,
    patient_reference: str,
    identifier: tuple[str, str],
    issued: datetime,
    device_reference: str | None = None,
    status: str | None = None,
) -> dict[str, Any]:
    m = mapped.source
    concept = mapped.concept
    obs: dict[str, Any] = {"resourceType": "Observation"}
    if concept.profile:
        obs["meta"] = {"profile": [concept.profile]}
    obs["identifier"] = [{"system": identifier[0], "value": identifier[1]}]
    obs["status"] = status or m.status
    obs["category"] = [
        {
            "coding": [
                {
                    "system": CATEGORY_SYSTEM,
                    "code": concept.category,
                    "display": CATEGORY_DISPLAY.get(concept.category, concept.category),
                }
            ]
        }
    ]
    obs["code"] = {
        "coding": _codings(concept.codings, (m.code, *m.extra_codes)),
        "text": concept.loinc.display,
    }
    obs["subject"] = {"reference": patient_reference}
    if m.effective_end is not None:
        obs["effectivePeriod"] = {
            "start": format_instant(m.effective),
            "end": format_instant(m.effective_end),
        }
    else:
        obs["effectiveDateTime"] = format_instant(m.effective)
        if m.timezone_assumed:
            obs["_effectiveDateTime"] = {
                "extension": [{"url": TZ_ASSUMED_URL, "valueBoolean": True}]
            }
    obs["issued"] = _issued_text(issued)
    if device_reference:
        obs["device"] = {"reference": device_reference}
    if mapped.components:
        obs["component"] = [_component_json(c) for c in mapped.components]
    elif not concept.components:
        q = _quantity(mapped.value, mapped.unit, mapped.out_of_range, mapped.meter_limit)
        if q is not None and m.comparator is not None and mapped.out_of_range is None:
            q = {"value": q["value"], "comparator": m.comparator, **q}
        if q is not None:
            obs["valueQuantity"] = q
        else:
            obs["dataAbsentReason"] = _absent(mapped.out_of_range)
    else:
        obs["dataAbsentReason"] = _absent(None)
    if mapped.out_of_range:
        obs["interpretation"] = _off_scale(mapped.out_of_range)
    if m.method is not None:
        obs["method"] = {"coding": [_coding(m.method)]}
    if m.body_site is not None:
        obs["bodySite"] = {"coding": [_coding(m.body_site)]}
    notes = [m.note] if m.note else []
    if mapped.converted_from:
        notes.append(f"converted from {m.value} {mapped.converted_from}")
    if notes:
        obs["note"] = [{"text": n} for n in notes]
    return obs


def _answer_value(value: Any) -> dict[str, Any] | None:
    if value is None:
        return None
    if isinstance(value, bool):
        return {"valueBoolean": value}
    if isinstance(value, int):
        return {"valueInteger": value}
    if isinstance(value, Decimal):
        return {"valueDecimal": number(value)}
    if isinstance(value, float):
        return {"valueDecimal": value}
    if isinstance(value, Code):
        return {"valueCoding": _coding(value)}
    return {"valueString": str(value)}


def _severity_extension(severity: str) -> dict[str, Any]:
    zone = severity.lower()
    if zone in ZONES:
        return {
            "url": SEVERITY_URL,
            "valueCoding": {"system": ZONE_SYSTEM, "code": zone, "display": zone},
        }
    return {"url": SEVERITY_URL, "valueCode": zone}


def build_questionnaire_response(
    q: QuestionnaireAnswers,
    *,
    patient_reference: str,
    identifier: tuple[str, str],
) -> dict[str, Any]:
    """The QuestionnaireResponse for a set of answers; the source's own severity (a zone) is
    carried as a ``source-severity`` extension (``valueCoding`` from the zone CodeSystem) on
    the response and on each item the source triaged."""
    items = []
    for a in q.answers:
        item: dict[str, Any] = {"linkId": a.link_id}
        if a.severity:
            item["extension"] = [_severity_extension(a.severity)]
        if a.text:
            item["text"] = a.text
        v = _answer_value(a.value)
        if v is not None:
            item["answer"] = [v]
        items.append(item)
    qr: dict[str, Any] = {
        "resourceType": "QuestionnaireResponse",
        "identifier": {"system": identifier[0], "value": identifier[1]},
        "status": "completed",
        "subject": {"reference": patient_reference},
        "authored": format_instant(q.authored),
        "item": items,
    }
    if q.timezone_assumed:
        qr["_authored"] = {"extension": [{"url": TZ_ASSUMED_URL, "valueBoolean": True}]}
    display = q.title
    if q.questionnaire.startswith(("http://", "https://", "urn:")):
        qr["questionnaire"] = q.questionnaire
    else:
        display = q.questionnaire
    if display:
        qr["_questionnaire"] = {
            "extension": [
                {
                    "url": "http://hl7.org/fhir/StructureDefinition/display",
                    "valueString": display,
                }
            ]
        }
    if q.severity:
        qr["extension"] = [_severity_extension(q.severity)]
    return qr
