"""Open mHealth data points → canonical measurements.

Accepts a data point (``header`` + ``body``), a bare body, or a JSON list of either. The body
schema comes from ``header.schema_id.name``, else ``meta.options["schema"]``, else its keys
(``systolic_blood_pressure`` → blood-pressure, …). Each schema's own unit rules are enforced
(blood pressure only ``mmHg``, heart rate ``beats/min``, …): a unit the schema does not allow is
refused even when it could be converted. A body with ``descriptive_statistic`` (an average,
minimum … over an interval) is not a single measurement and is reported as such. Codes are
reported as ``urn:dho-interop:code:omh|<schema field>``; OMH data carries no patient, so the
patient comes from ``meta.patient``.
"""

from __future__ import annotations

from decimal import Decimal, InvalidOperation
from typing import Any

import orjson

from adapters import jsonsafe
from adapters.base import (
    DIAG_INVALID,
    DIAG_MISSING_PATIENT,
    DIAG_MISSING_TIME,
    DIAG_NOT_A_MEASUREMENT,
    DIAG_PARSE_ERROR,
    DIAG_UNKNOWN_UNIT,
    DIAG_UNSUPPORTED,
    AdapterError,
    AdapterResult,
    Code,
    Component,
    DeviceRef,
    Diagnostic,
    IngestMeta,
    Measurement,
    item_guard,
)
from adapters.timeutil import parse_iso

SYSTEM = "urn:dho-interop:code:omh"

# schema name → (value fields, allowed units per field)
SCHEMAS: dict[str, dict[str, tuple[str, ...]]] = {
    "blood-pressure": {"systolic_blood_pressure": ("mmHg",), "diastolic_blood_pressure": ("mmHg",)},
    "heart-rate": {"heart_rate": ("beats/min",)},
    "oxygen-saturation": {"oxygen_saturation": ("%",)},
    "body-weight": {"body_weight": ("kg", "g", "lb", "oz")},
    "body-temperature": {"body_temperature": ("K", "F", "C")},
    "blood-glucose": {"blood_glucose": ("mg/dL", "mmol/L")},
    "step-count": {"step_count": ("steps",)},
    "respiratory-rate": {"respiratory_rate": ("breaths/min",)},
}
BARE_COUNTS = {"step_count": "steps"}
"""Fields a schema version gives as a bare number (step-count 2.0: ``"step_count": 6000``),
with the unit the schema means."""
KEY_TO_SCHEMA = {field: name for name, fields in SCHEMAS.items() for field in fields}
UNIT_TO_UCUM = {
    "mmHg": "mm[Hg]",
    "beats/min": "/min",
    "%": "%",
    "kg": "kg",
    "g": "g",
    "lb": "[lb_av]",
    "oz": "[oz_av]",
    "K": "K",
    "F": "[degF]",
    "C": "Cel",
    "mg/dL": "mg/dL",
    "mmol/L": "mmol/L",
    "steps": "{steps}",
    "breaths/min": "/min",
}
CONTEXT_KEYS = (
    "body_posture",
    "measurement_location",
    "temporal_relationship_to_meal",
    "temporal_relationship_to_sleep",
    "temporal_relationship_to_physical_activity",
    "specimen_source",
    "measurement_method",
    "system",
    "supplemental_oxygen_flow_rate",
)


class OpenMHealthAdapter:
    name = "openmhealth"
    content_types = ("application/json",)

    def parse(self, data: bytes, meta: IngestMeta) -> AdapterResult:
        try:
            doc = orjson.loads(data)
        except orjson.JSONDecodeError as exc:
            raise AdapterError(f"not JSON: {exc}", DIAG_PARSE_ERROR) from None
        try:
            jsonsafe.check(doc, raw=data)
        except jsonsafe.UnsafeJson as exc:
            raise AdapterError(str(exc), DIAG_PARSE_ERROR) from None
        points = doc if isinstance(doc, list) else [doc]
        result = AdapterResult()
        for i, point in enumerate(points):
            where = f"[{i}]" if isinstance(doc, list) else "$"
            result.items_seen += 1
            if not isinstance(point, dict):
                result.diagnostics.append(
                    Diagnostic("error", DIAG_INVALID, "not a JSON object", where)
                )
                continue
            with item_guard(result, where):
                self._point(point, where, meta, result)
        return result

    def _point(
        self, point: dict[str, Any], where: str, meta: IngestMeta, result: AdapterResult
    ) -> None:
        header = point.get("header") if isinstance(point.get("header"), dict) else None
        body = point.get("body") if header is not None else point
        if not isinstance(body, dict):
            result.diagnostics.append(
                Diagnostic("error", DIAG_INVALID, "data point without a body", where)
            )
            return
        schema = None
        if header is not None:
            schema = ((header.get("schema_id") or {}).get("name")) or None
        schema = (
            schema
            or meta.options.get("schema")
            or next((KEY_TO_SCHEMA[k] for k in body if k in KEY_TO_SCHEMA), None)
        )
        if schema not in SCHEMAS:
            result.diagnostics.append(
                Diagnostic(
                    "warning",
                    DIAG_UNSUPPORTED,
                    f"Open mHealth schema {schema or '(unknown)'!r} is not a measurement this service takes",
                    where,
                )
            )
            return
        if body.get("descriptive_statistic"):
            result.diagnostics.append(
                Diagnostic(
                    "warning",
                    DIAG_NOT_A_MEASUREMENT,
                    f"{schema}: a {body['descriptive_statistic']} over a time interval, not a single measurement",
                    where,
                )
            )
            return
        frame = body.get("effective_time_frame") or {}
        start_text = frame.get("date_time") or (frame.get("time_interval") or {}).get(
            "start_date_time"
        )
        end_text = (frame.get("time_interval") or {}).get("end_date_time")
        if not start_text:
            result.diagnostics.append(
                Diagnostic(
                    "error",
                    DIAG_MISSING_TIME,
                    f"{schema}: no effective_time_frame date-time",
                    where,
                )
            )
            return
        try:
            start = parse_iso(start_text, meta.default_timezone)
            end = parse_iso(end_text, meta.default_timezone).value if end_text else None
        except ValueError as exc:
            result.diagnostics.append(
                Diagnostic("error", DIAG_MISSING_TIME, f"{schema}: {exc}", where)
            )
            return
        if meta.patient is None:
            result.diagnostics.append(
                Diagnostic(
                    "error",
                    DIAG_MISSING_PATIENT,
                    "Open mHealth data carries no patient; give one with the upload",
                    where,
                )
            )
            return
        values: list[tuple[str, Decimal, str]] = []
        for fld, allowed in SCHEMAS[schema].items():
            uv = body.get(fld)
            if fld in BARE_COUNTS and isinstance(uv, int | float) and not isinstance(uv, bool):
                uv = {"value": uv, "unit": BARE_COUNTS[fld]}
            if not isinstance(uv, dict):
                result.diagnostics.append(
                    Diagnostic(
                        "error", DIAG_INVALID, f"{schema}: {fld} is missing", f"{where}.{fld}"
                    )
                )
                return
            unit = uv.get("unit")
            if unit not in allowed:
                result.diagnostics.append(
                    Diagnostic(
                        "error",
                        DIAG_UNKNOWN_UNIT,
                        f"{schema}: unit {unit!r} is not allowed for {fld} (allowed: {', '.join(allowed)})",
                        f"{where}.{fld}.unit",
                    )
                )
                return
            try:
                values.append((fld, Decimal(str(uv["value"])), UNIT_TO_UCUM[unit]))
            except (KeyError, InvalidOperation):
                result.diagnostics.append(
                    Diagnostic(
                        "error",
                        DIAG_INVALID,
                        f"{schema}: {fld}.value is not a number",
                        f"{where}.{fld}",
                    )
                )
                return
        device = None
        source_id = None
        if header is not None:
            if header.get("id") or header.get("uuid"):
                source_id = (
                    "urn:dho-interop:omh:data-point",
                    str(header.get("id") or header.get("uuid")),
                )
            prov = header.get("acquisition_provenance") or {}
            if prov.get("source_name"):
                device = DeviceRef(display=str(prov["source_name"]), model=str(prov["source_name"]))
        attributes = {k: body[k] for k in CONTEXT_KEYS if k in body}
        if schema == "blood-pressure":
            comps = tuple(Component(Code(SYSTEM, f.replace("_", "-")), v, u) for f, v, u in values)
            measurement = Measurement(
                Code(SYSTEM, schema),
                None,
                None,
                start.value,
                meta.patient,
                where,
                components=comps,
                device=device,
                source_id=source_id,
                timezone_assumed=start.zone_assumed,
                effective_end=end,
                attributes=attributes,
            )
        else:
            fld, v, u = values[0]
            measurement = Measurement(
                Code(SYSTEM, fld.replace("_", "-")),
                v,
                u,
                start.value,
                meta.patient,
                where,
                device=device,
                source_id=source_id,
                timezone_assumed=start.zone_assumed,
                effective_end=end,
                attributes=attributes,
            )
        result.measurements.append(measurement)
