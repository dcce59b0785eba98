"""Apple Health "Export All Health Data" (``export.xml``) → canonical measurements.

Streams the file (exports are large) with a hardened parser: the export's internal DTD is
never loaded or used for entities. Each ``Record`` of a quantity type becomes a measurement
coded ``urn:dho-interop:code:apple-health|<HK type>`` with its unit and start time; category
records (sleep analysis …) are not measurements. Apple Health carries no patient identity:
the patient comes from the upload.
"""

from __future__ import annotations

import io
from datetime import datetime
from decimal import Decimal, InvalidOperation

from lxml import etree

from adapters.base import (
    DIAG_INVALID,
    DIAG_MISSING_PATIENT,
    DIAG_MISSING_TIME,
    DIAG_NOT_A_MEASUREMENT,
    DIAG_PARSE_ERROR,
    AdapterError,
    AdapterResult,
    Code,
    DeviceRef,
    Diagnostic,
    IngestMeta,
    Measurement,
)

SYSTEM = "urn:dho-interop:code:apple-health"
UNITS = {
    "count/min": "/min",
    "degC": "Cel",
    "degF": "[degF]",
    "mmHg": "mm[Hg]",
    "lb": "[lb_av]",
    "count": "{steps}",
}


class AppleHealthAdapter:
    name = "apple-health"
    content_types = ("application/xml", "text/xml")

    def parse(self, data: bytes, meta: IngestMeta) -> AdapterResult:
        result = AdapterResult()
        try:
            events = etree.iterparse(
                io.BytesIO(data),
                events=("end",),
                tag="Record",
                resolve_entities=False,
                load_dtd=False,
                no_network=True,
                huge_tree=False,
            )
            for i, (_, rec) in enumerate(events):
                result.items_seen += 1
                self._record(rec, f"Record[{i + 1}]", meta, result)
                rec.clear()
        except etree.XMLSyntaxError as exc:
            raise AdapterError(
                f"not a well-formed Apple Health export: {exc}", DIAG_PARSE_ERROR
            ) from None
        if result.items_seen == 0:
            raise AdapterError("no Record elements: not an Apple Health export", DIAG_PARSE_ERROR)
        return result

    def _record(
        self, rec: etree._Element, where: str, meta: IngestMeta, result: AdapterResult
    ) -> None:
        rtype = rec.get("type", "")
        if not rtype.startswith("HKQuantityTypeIdentifier"):
            result.diagnostics.append(
                Diagnostic(
                    "information",
                    DIAG_NOT_A_MEASUREMENT,
                    f"{rtype}: a category record, not a measurement",
                    where,
                )
            )
            return
        if meta.patient is None:
            result.diagnostics.append(
                Diagnostic(
                    "error",
                    DIAG_MISSING_PATIENT,
                    "the export carries no patient; give one with the upload",
                    where,
                )
            )
            return
        try:
            value = Decimal(rec.get("value", ""))
        except InvalidOperation:
            result.diagnostics.append(
                Diagnostic(
                    "error",
                    DIAG_INVALID,
                    f"{rtype}: value {rec.get('value')!r} is not a number",
                    where,
                )
            )
            return
        try:
            when = datetime.strptime(rec.get("startDate", ""), "%Y-%m-%d %H:%M:%S %z")
        except ValueError:
            result.diagnostics.append(
                Diagnostic(
                    "error",
                    DIAG_MISSING_TIME,
                    f"{rtype}: startDate {rec.get('startDate')!r} is not valid",
                    where,
                )
            )
            return
        unit = rec.get("unit")
        source = rec.get("sourceName")
        result.measurements.append(
            Measurement(
                Code(SYSTEM, rtype),
                value,
                UNITS.get(unit or "", unit),
                when,
                meta.patient,
                where,
                device=DeviceRef(display=source, model=source) if source else None,
            )
        )
