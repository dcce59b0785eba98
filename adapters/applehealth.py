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
    Component,
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
TIME_FORMAT = "%Y-%m-%d %H:%M:%S %z"


NOT_MEASUREMENTS = {
    "Workout": "a workout (an activity session with its own statistics), not a measurement",
    "ActivitySummary": "a day's activity-ring summary (totals and goals), not a measurement",
}
"""Top-level export elements that are items but never measurements: each one is counted and
skipped with this reason."""
METADATA = frozenset({"ExportDate", "Me"})
"""Top-level export elements about the export itself, not items."""
BLOOD_PRESSURE = "HKCorrelationTypeIdentifierBloodPressure"
ROOT = "HealthData"


class AppleHealthAdapter:
    name = "apple-health"
    content_types = ("application/xml", "text/xml")

    def parse(self, data: bytes, meta: IngestMeta) -> AdapterResult:
        """Each element under ``HealthData`` is one item: a ``Record`` a measurement (or a
        category record, skipped), a blood-pressure ``Correlation`` one panel, a ``Workout``
        or ``ActivitySummary`` skipped with its reason; nothing is passed over unseen."""
        result = AdapterResult()
        depth = 0
        try:
            events = etree.iterparse(
                io.BytesIO(data),
                events=("start", "end"),
                resolve_entities=False,
                load_dtd=False,
                no_network=True,
                huge_tree=False,
            )
            for event, el in events:
                if event == "start":
                    depth += 1
                    if depth == 1 and el.tag != ROOT:
                        raise AdapterError(
                            f"root element {el.tag} is not an Apple Health export ({ROOT})",
                            DIAG_PARSE_ERROR,
                        )
                    continue
                depth -= 1
                if depth != 1 or not isinstance(el.tag, str):
                    continue
                tag = el.tag
                if tag in METADATA:
                    el.clear()
                    continue
                result.items_seen += 1
                where = f"{tag}[{result.items_seen}]"
                if tag == "Record":
                    where = f"Record[{result.items_seen}]"
                    m = self._record(el, where, meta, result)
                    if m is not None:
                        result.measurements.append(m)
                elif tag == "Correlation":
                    self._correlation(el, where, meta, result)
                else:
                    result.diagnostics.append(
                        Diagnostic(
                            "information",
                            DIAG_NOT_A_MEASUREMENT,
                            f"{tag}: "
                            + NOT_MEASUREMENTS.get(tag, "not an element this service takes"),
                            where,
                        )
                    )
                el.clear()
                while el.getprevious() is not None:  # an export is large: keep no item read
                    del el.getparent()[0]
        except etree.XMLSyntaxError as exc:
            raise AdapterError(
                f"not a well-formed Apple Health export: {exc}", DIAG_PARSE_ERROR
            ) from None
        if result.items_seen == 0:
            raise AdapterError("no Record elements: not an Apple Health export", DIAG_PARSE_ERROR)
        return result

    def _correlation(
        self, el: etree._Element, where: str, meta: IngestMeta, result: AdapterResult
    ) -> None:
        """A blood-pressure correlation is one measurement, a panel with its systolic and
        diastolic records as components (as the other paths store a blood pressure)."""
        ctype = el.get("type", "")
        if ctype != BLOOD_PRESSURE:
            result.diagnostics.append(
                Diagnostic(
                    "information",
                    DIAG_NOT_A_MEASUREMENT,
                    f"{ctype}: a correlation of this type is not a measurement",
                    where,
                )
            )
            return
        parts = []
        mark = len(result.diagnostics)
        for i, rec in enumerate(el.findall("Record")):
            m = self._record(rec, f"{where}.Record[{i + 1}]", meta, result)
            if m is not None:
                parts.append(m)
        if len(result.diagnostics) > mark or not parts:
            # a part that cannot be read makes the panel unreadable: refused as one item
            problems = [d.message for d in result.diagnostics[mark:]]
            del result.diagnostics[mark:]
            result.diagnostics.append(
                Diagnostic(
                    "error",
                    DIAG_INVALID,
                    f"{ctype}: " + ("; ".join(problems) or "no systolic or diastolic record"),
                    where,
                )
            )
            return
        first = parts[0]
        result.measurements.append(
            Measurement(
                Code(SYSTEM, ctype),
                None,
                None,
                first.effective,
                first.patient,
                where,
                components=tuple(Component(p.code, p.value, p.unit) for p in parts),
                device=first.device,
                effective_end=first.effective_end,
            )
        )

    def _record(
        self, rec: etree._Element, where: str, meta: IngestMeta, result: AdapterResult
    ) -> Measurement | None:
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
            return None
        if meta.patient is None:
            result.diagnostics.append(
                Diagnostic(
                    "error",
                    DIAG_MISSING_PATIENT,
                    "the export carries no patient; give one with the upload",
                    where,
                )
            )
            return None
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
            return None
        try:
            when = datetime.strptime(rec.get("startDate", ""), TIME_FORMAT)
            end_text = rec.get("endDate")
            end = datetime.strptime(end_text, TIME_FORMAT) if end_text else None
        except ValueError:
            result.diagnostics.append(
                Diagnostic(
                    "error",
                    DIAG_MISSING_TIME,
                    f"{rtype}: startDate {rec.get('startDate')!r} or endDate "
                    f"{rec.get('endDate')!r} is not valid",
                    where,
                )
            )
            return None
        unit = rec.get("unit")
        source = rec.get("sourceName")
        ucum = UNITS.get(unit or "", unit)
        if unit == "%" and 0 <= value <= 1:
            # HealthKit keeps a percentage as a fraction of one (an SpO2 of 97 % is exported
            # as value="0.97" unit="%"): reported as the fraction it is, for the mapping to
            # convert; a value above 1 was entered as a percentage
            ucum = "1"
        return Measurement(
            Code(SYSTEM, rtype),
            value,
            ucum,
            when,
            meta.patient,
            where,
            device=DeviceRef(display=source, model=source) if source else None,
            # a record over an interval (15-minute step counts) keeps it
            effective_end=end if end is not None and end > when else None,
        )
