"""The mapping step: source codes and units → LOINC/SNOMED CT/MDC codings and UCUM units,
plausibility and time checks, and the FHIR Observation each measurement becomes.

Adapters report what the source said; :class:`MappingSet` decides what it means, from the
tables in ``mappings/`` (see :mod:`interop.mapping.tables`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_EVEN, Decimal, InvalidOperation
from pathlib import Path

from adapters.base import (
    DIAG_ANCIENT_TIME,
    DIAG_ASSUMED_TIMEZONE,
    DIAG_FUTURE_TIME,
    DIAG_IMPLAUSIBLE,
    DIAG_INVALID,
    DIAG_MISSING_VALUE,
    DIAG_UNKNOWN_CODE,
    DIAG_UNKNOWN_UNIT,
    Code,
    Component,
    Diagnostic,
    Measurement,
    OutOfRange,
)
from interop.mapping.build import (
    build_observation,
    build_questionnaire_response,
    observation_identifier,
)
from interop.mapping.tables import Concept, MappingError, Tables, load_tables

__all__ = [
    "Concept",
    "MappedComponent",
    "MappedMeasurement",
    "MappingError",
    "MappingOutcome",
    "MappingSet",
    "build_observation",
    "build_questionnaire_response",
    "observation_identifier",
]


_ANNOTATION = re.compile(r"\{[^{}]*\}|<[0-9.]+>")
PERIOD_TOLERANCE_HOURS = Decimal(1)
"""How far a day may differ from 24 hours (a day with a daylight-saving change has 23 or 25)."""


@dataclass(frozen=True, slots=True)
class MappedComponent:
    concept: Concept
    value: Decimal | None
    unit: str | None
    out_of_range: OutOfRange | None = None
    meter_limit: Decimal | None = None
    source_codes: tuple[Code, ...] = ()


@dataclass(frozen=True, slots=True)
class MappedMeasurement:
    concept: Concept
    value: Decimal | None
    unit: str | None
    source: Measurement
    components: tuple[MappedComponent, ...] = ()
    out_of_range: OutOfRange | None = None
    meter_limit: Decimal | None = None
    converted_from: str | None = None
    mapping_version: str = ""


@dataclass(slots=True)
class MappingOutcome:
    mapped: MappedMeasurement | None
    diagnostics: list[Diagnostic] = field(default_factory=list)


class _Reject(Exception):
    def __init__(self, diagnostic: Diagnostic) -> None:
        self.diagnostic = diagnostic


class MappingSet:
    def __init__(self, tables: Tables, *, future_skew_seconds: int = 300, oldest_year: int = 2000):
        self.tables = tables
        self.version = tables.version
        self.future_skew = timedelta(seconds=future_skew_seconds)
        self.oldest = datetime(oldest_year, 1, 1, tzinfo=UTC)

    @classmethod
    def load(cls, directory: Path | None = None, **kwargs: int) -> MappingSet:
        return cls(load_tables(directory), **kwargs)

    # ---- lookups ------------------------------------------------------------------------
    def concept_for(self, code: Code, extra: tuple[Code, ...] = ()) -> Concept | None:
        by_code = self.tables.by_code
        for c in (code, *extra):
            cid = by_code.get((c.system, c.code))
            if cid is not None:
                return self.tables.concepts[cid]
        return None

    def ucum(self, unit: str | None) -> str | None:
        if unit is None:
            return None
        hit = self._unit(unit)
        if hit is None:
            # annotations say what is counted or weighed, not the unit: UCUM's curly braces
            # ({beat}/min) and HealthKit's molar mass in angle brackets
            # (mmol<180.1558800000541>/L: mmol of glucose per litre)
            bare = _ANNOTATION.sub("", unit)
            if bare != unit and bare.strip("/. "):
                hit = self._unit(bare)
        return hit

    def _unit(self, unit: str) -> str | None:
        hit = self.tables.units_exact.get(unit)
        if hit is None:
            hit = self.tables.units_folded.get(unit.casefold().strip())
        return hit

    def period_concept(self, concept: Concept, m: Measurement, where: str) -> Concept:
        """The concept for a measurement over an interval: a code that names an interval
        (steps in 24 hours) takes only measurements over that interval; one over another
        interval becomes the concept for any interval, or is refused."""
        if concept.period_hours is None or m.effective_end is None:
            return concept
        hours = Decimal((m.effective_end - m.effective).total_seconds()) / 3600
        if abs(hours - concept.period_hours) <= PERIOD_TOLERANCE_HOURS:
            return concept
        if concept.other_period is not None:
            return self.tables.concepts[concept.other_period]
        raise _Reject(
            Diagnostic(
                "error",
                DIAG_INVALID,
                f"{concept.loinc.code} ({concept.loinc.display}) is a count over "
                f"{concept.period_hours} h; this one covers {hours.normalize():f} h",
                where,
            )
        )

    def _convert(
        self, concept: Concept, value: Decimal | None, unit: str | None, where: str
    ) -> tuple[Decimal | None, str | None, str | None]:
        """(value in the canonical unit, canonical unit, the unit converted from or None)."""
        target = concept.unit
        if target is None:
            return value, unit, None
        if unit is None:
            # a dimensionless SpO2 fraction may come without a unit; everything else needs one
            raise _Reject(
                Diagnostic(
                    "error",
                    DIAG_UNKNOWN_UNIT,
                    f"{concept.loinc.code}: no unit given (expected {target})",
                    where,
                )
            )
        ucum = self.ucum(unit)
        if ucum is None:
            raise _Reject(
                Diagnostic(
                    "error",
                    DIAG_UNKNOWN_UNIT,
                    f"unit {unit!r} is not known (expected {target} for {concept.loinc.code})",
                    where,
                )
            )
        if ucum == target:
            return value, target, None
        conv = self.tables.conversions.get((ucum, target))
        if conv is None or (conv.concepts is not None and concept.id not in conv.concepts):
            raise _Reject(
                Diagnostic(
                    "error",
                    DIAG_UNKNOWN_UNIT,
                    f"unit {unit!r} ({ucum}) cannot be converted to {target} for {concept.loinc.code}",
                    where,
                )
            )
        if value is None:
            return None, target, ucum
        converted = value * conv.factor + conv.offset
        quantum = Decimal(1).scaleb(-concept.decimals)
        return converted.quantize(quantum, rounding=ROUND_HALF_EVEN), target, ucum

    def _check_limits(self, concept: Concept, value: Decimal | None, where: str) -> None:
        lim = self.tables.limits.get(concept.id)
        if lim is None or value is None:
            return
        if (lim.low is not None and value < lim.low) or (lim.high is not None and value > lim.high):
            raise _Reject(
                Diagnostic(
                    "error",
                    DIAG_IMPLAUSIBLE,
                    f"{concept.loinc.code} {value} {concept.unit or ''} is outside the plausible range "
                    f"{lim.low}–{lim.high}".rstrip(),
                    where,
                )
            )

    def _meter_limit(self, concept: Concept, oor: OutOfRange | None) -> Decimal | None:
        lim = self.tables.limits.get(concept.id)
        if oor is None or lim is None:
            return None
        return lim.meter_high if oor == "HI" else lim.meter_low

    def _component(self, comp: Component, where: str) -> MappedComponent:
        concept = self.concept_for(comp.code, comp.extra_codes)
        if concept is None:
            raise _Reject(
                Diagnostic(
                    "error",
                    DIAG_UNKNOWN_CODE,
                    f"component code {comp.code.system}|{comp.code.code} is not mapped",
                    where,
                )
            )
        value, unit, _ = self._convert(concept, comp.value, comp.unit, where)
        if comp.out_of_range is None:
            if value is None:
                raise _Reject(
                    Diagnostic(
                        "error",
                        DIAG_MISSING_VALUE,
                        f"component {concept.loinc.code} has no value",
                        where,
                    )
                )
            self._check_limits(concept, value, where)
        return MappedComponent(
            concept,
            value if comp.out_of_range is None else None,
            unit,
            comp.out_of_range,
            self._meter_limit(concept, comp.out_of_range),
            (comp.code, *comp.extra_codes),
        )

    def _compound(self, m: Measurement) -> tuple[Concept, Measurement] | None:
        """A compound observation under a code of its own (a device's private compound
        glucose, PHD) whose one quantity is a measurement known here: that measurement
        (the compound's other parts, context such as the meal, were not quantities)."""
        if m.value is not None or m.out_of_range is not None or len(m.components) != 1:
            return None
        part = m.components[0]
        concept = self.concept_for(part.code, part.extra_codes)
        if concept is None or concept.components:
            return None
        return concept, replace(
            m,
            code=part.code,
            extra_codes=part.extra_codes,
            value=part.value,
            unit=part.unit,
            out_of_range=part.out_of_range,
            components=(),
        )

    # ---- the step -----------------------------------------------------------------------
    def map(self, m: Measurement, *, now: datetime) -> MappingOutcome:
        out = MappingOutcome(None)
        where = m.location
        try:
            concept = self.concept_for(m.code, m.extra_codes)
            if concept is None:
                compound = self._compound(m)
                if compound is not None:
                    concept, m = compound
                    out.diagnostics.append(
                        Diagnostic(
                            "information",
                            "compound-read",
                            f"{m.code.system}|{m.code.code}: the one quantity of a compound "
                            "observation whose own code is not mapped",
                            where,
                        )
                    )
            if concept is None:
                raise _Reject(
                    Diagnostic(
                        "error",
                        DIAG_UNKNOWN_CODE,
                        f"code {m.code.system}|{m.code.code}"
                        + (f" ({m.code.display})" if m.code.display else "")
                        + " is not mapped",
                        where,
                    )
                )
            concept = self.period_concept(concept, m, where)
            if m.effective > now + self.future_skew:
                raise _Reject(
                    Diagnostic(
                        "error",
                        DIAG_FUTURE_TIME,
                        f"measurement time {m.effective.isoformat()} is in the future",
                        where,
                    )
                )
            if m.effective < self.oldest:
                raise _Reject(
                    Diagnostic(
                        "error",
                        DIAG_ANCIENT_TIME,
                        f"measurement time {m.effective.isoformat()} is before {self.oldest.year}",
                        where,
                    )
                )
            mapped_components = []
            for c in m.components:
                if self.concept_for(c.code, c.extra_codes) is None:
                    # an unknown extra component (e.g. pulse pressure) is left out, not fatal
                    out.diagnostics.append(
                        Diagnostic(
                            "warning",
                            DIAG_UNKNOWN_CODE,
                            f"component {c.code.system}|{c.code.code} is not mapped; left out",
                            where,
                        )
                    )
                    continue
                mapped_components.append(self._component(c, where))
            components = tuple(mapped_components)
            if (
                concept.components
                and not components
                and m.value is None
                and m.status != "entered-in-error"
            ):
                raise _Reject(
                    Diagnostic(
                        "error",
                        DIAG_MISSING_VALUE,
                        f"{concept.loinc.code} has no components",
                        where,
                    )
                )
            value, unit, converted_from = None, concept.unit, None
            if not concept.components:
                if m.out_of_range is None and m.value is None and m.status != "entered-in-error":
                    raise _Reject(
                        Diagnostic(
                            "error", DIAG_MISSING_VALUE, f"{concept.loinc.code} has no value", where
                        )
                    )
                raw_value = m.value if m.out_of_range is None else None
                value, unit, converted_from = self._convert(concept, raw_value, m.unit, where)
                if m.out_of_range is None:
                    self._check_limits(concept, value, where)
            if self.tables.systolic_above_diastolic and components:
                sys_ = next((c.value for c in components if c.concept.id == "bp-systolic"), None)
                dia = next((c.value for c in components if c.concept.id == "bp-diastolic"), None)
                if sys_ is not None and dia is not None and sys_ <= dia:
                    raise _Reject(
                        Diagnostic(
                            "error",
                            DIAG_IMPLAUSIBLE,
                            f"systolic {sys_} is not above diastolic {dia}",
                            where,
                        )
                    )
        except _Reject as rej:
            out.diagnostics.append(rej.diagnostic)
            return out
        except (InvalidOperation, ArithmeticError) as exc:
            out.diagnostics.append(
                Diagnostic("error", DIAG_IMPLAUSIBLE, f"value cannot be used: {exc}", where)
            )
            return out
        if m.timezone_assumed:
            out.diagnostics.append(
                Diagnostic(
                    "information",
                    DIAG_ASSUMED_TIMEZONE,
                    f"no zone in the input; read as local time ({m.effective.tzinfo})",
                    where,
                )
            )
        if converted_from:
            out.diagnostics.append(
                Diagnostic(
                    "information",
                    "unit-converted",
                    f"{m.value} {converted_from} stored as {value} {unit}",
                    where,
                )
            )
        out.mapped = MappedMeasurement(
            concept,
            value,
            unit,
            m,
            components,
            m.out_of_range,
            self._meter_limit(concept, m.out_of_range),
            converted_from,
            self.version,
        )
        return out
