"""Checks every measurement written passes, whatever the door (a store pre-write hook).

The ingest mapping refuses implausible values and future times item by item before it builds
an Observation; an Observation a client writes itself (``/fhir`` create/update, transaction
and batch Bundles) gets the same checks here, so a heart rate of 1e308 or a reading dated next
week never reaches the store or triage by another door. A refusal is a 422 OperationOutcome
naming the element (in a batch: that entry's outcome).

- Plausibility: the limits of ``mappings/plausibility.yaml`` for the measured concept (known by
  any of its codings), after converting the value to the concept's unit as the ingest mapping
  would. A value in a unit the mappings cannot convert is left to triage, which does not
  judge it (never a wrong zone).
- Time: an effective time (or period start) later than now plus the allowed clock skew.
"""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal, InvalidOperation
from typing import Any

from adapters.base import Code
from interop.fhir.dates import fhir_instant, format_instant, now_utc, to_micros
from interop.fhir.outcome import error
from interop.mapping import MappingSet
from interop.mapping.tables import Concept
from interop.store.repository import WriteTx

SKIPPED_STATUSES = frozenset({"entered-in-error", "cancelled"})


class MeasurementChecks:
    """The pre-write hook (:meth:`prepare`) with the mappings it checks against."""

    def __init__(self, mappings: MappingSet, *, future_skew_seconds: int = 300, zone: str) -> None:
        self.mappings = mappings
        self.future_skew = timedelta(seconds=future_skew_seconds)
        self.zone = zone

    def prepare(self, tx: WriteTx, resource: dict[str, Any]) -> dict[str, Any]:
        if resource.get("resourceType") != "Observation":
            return resource
        if resource.get("status") in SKIPPED_STATUSES:
            return resource
        self._check_time(resource)
        self._check_value(resource, "Observation")
        for i, component in enumerate(resource.get("component") or []):
            if isinstance(component, dict):
                self._check_value(component, f"Observation.component[{i}]")
        return resource

    def _check_time(self, resource: dict[str, Any]) -> None:
        if isinstance(resource.get("effectiveDateTime"), str):
            text, path = resource["effectiveDateTime"], "Observation.effectiveDateTime"
        elif isinstance(resource.get("effectivePeriod"), dict) and isinstance(
            resource["effectivePeriod"].get("start"), str
        ):
            text, path = resource["effectivePeriod"]["start"], "Observation.effectivePeriod.start"
        else:
            return
        try:
            when = fhir_instant(text, self.zone)
        except ValueError:
            return  # a malformed date is the validator's to refuse
        latest = now_utc() + self.future_skew
        if when > to_micros(latest):
            raise error(
                422,
                "business-rule",
                f"{path}: measurement time {text} is in the future (later than "
                f"{format_instant(latest)}, the allowed clock skew included)",
                expression=[path],
            )

    def _check_value(self, node: dict[str, Any], path: str) -> None:
        q = node.get("valueQuantity")
        if not isinstance(q, dict):
            return
        raw = q.get("value")
        if not isinstance(raw, int | float) or isinstance(raw, bool):
            return
        concept = self._concept(node)
        if concept is None:
            return
        lim = self.mappings.tables.limits.get(concept.id)
        if lim is None:
            return
        value = self._in_concept_unit(concept, raw, q)
        if value is None:
            return
        if (lim.low is not None and value < lim.low) or (lim.high is not None and value > lim.high):
            unit = concept.unit or ""
            raise error(
                422,
                "business-rule",
                f"{path}.valueQuantity.value: {raw} {q.get('code') or q.get('unit') or ''} is "
                f"outside the plausible range for {concept.loinc.code} ({concept.id}): "
                f"{_plain(lim.low)}–{_plain(lim.high)} {unit}".rstrip(),
                expression=[f"{path}.valueQuantity.value"],
            )

    def _concept(self, node: dict[str, Any]) -> Concept | None:
        codings = (node.get("code") or {}).get("coding") or []
        for c in codings:
            if isinstance(c, dict) and isinstance(c.get("code"), str):
                found = self.mappings.concept_for(Code(str(c.get("system") or ""), c["code"]))
                if found is not None:
                    return found
        return None

    def _in_concept_unit(
        self, concept: Concept, raw: int | float, q: dict[str, Any]
    ) -> Decimal | None:
        """The value in the concept's unit, or None when its unit is unknown or cannot be
        converted."""
        try:
            value = Decimal(str(raw))
        except InvalidOperation:
            return None
        if not value.is_finite():
            return None
        target = concept.unit
        if target is None:
            return value
        unit = q.get("code") if q.get("system") == "http://unitsofmeasure.org" else None
        ucum = self.mappings.ucum(unit or q.get("unit"))
        if ucum is None:
            return None
        if ucum == target:
            return value
        conv = self.mappings.tables.conversions.get((ucum, target))
        if conv is None or (conv.concepts is not None and concept.id not in conv.concepts):
            return None
        return value * conv.factor + conv.offset


def _plain(x: Decimal | None) -> str:
    return "" if x is None else format(x.normalize(), "f")
