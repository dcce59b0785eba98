"""Loading and validating the mapping tables in ``mappings/`` (YAML, pydantic-checked).

Everything is resolved into plain dictionaries at load time so the per-measurement work on
the ingest hot path is a handful of dict lookups.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from decimal import Decimal
from importlib.resources import files
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError, field_validator

from adapters.base import LOINC, MDC, SNOMED, Code

FILES = ("concepts.yaml", "codes.yaml", "units.yaml", "plausibility.yaml")


class MappingError(Exception):
    """A mapping file is missing or invalid; the message names the file and entry."""


class _CodeModel(BaseModel):
    model_config = ConfigDict(extra="forbid")
    code: str
    display: str | None = None

    @field_validator("code", mode="before")
    @classmethod
    def _str(cls, v: Any) -> str:
        return str(v)


class _ExtraCodeModel(_CodeModel):
    system: str


class _ConceptModel(BaseModel):
    model_config = ConfigDict(extra="forbid")
    loinc: _CodeModel
    snomed: _CodeModel | None = None
    mdc: _CodeModel | None = None
    extra: list[_ExtraCodeModel] = []
    unit: str | None = None
    decimals: int = 2
    category: str = "vital-signs"
    profile: str | None = None
    components: list[str] = []
    period_hours: Decimal | None = None
    """The interval the code itself names (41950-7: steps in 24 hours)."""
    other_period: str | None = None
    """The concept for a measurement over another interval (its code names no interval)."""


class _ConceptsFile(BaseModel):
    model_config = ConfigDict(extra="forbid")
    version: str
    concepts: dict[str, _ConceptModel]


class _CodeMapModel(BaseModel):
    model_config = ConfigDict(extra="forbid")
    system: str
    code: str
    concept: str

    @field_validator("code", mode="before")
    @classmethod
    def _str(cls, v: Any) -> str:
        return str(v)


class _CodesFile(BaseModel):
    model_config = ConfigDict(extra="forbid")
    version: str
    codes: list[_CodeMapModel]


class _ConversionModel(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)
    from_: str
    to: str
    factor: Decimal
    offset: Decimal = Decimal(0)
    concepts: list[str] | None = None

    def __init__(self, **data: Any) -> None:
        if "from" in data:
            data["from_"] = data.pop("from")
        super().__init__(**data)


class _UnitsFile(BaseModel):
    model_config = ConfigDict(extra="forbid")
    version: str
    synonyms: dict[str, list[str]]
    conversions: list[_ConversionModel]


class _RangeModel(BaseModel):
    model_config = ConfigDict(extra="forbid")
    low: Decimal | None = None
    high: Decimal | None = None


class _LimitModel(_RangeModel):
    meter: _RangeModel | None = None


class _PlausibilityFile(BaseModel):
    model_config = ConfigDict(extra="forbid")
    version: str
    limits: dict[str, _LimitModel]
    rules: dict[str, bool] = {}


@dataclass(frozen=True, slots=True)
class Concept:
    id: str
    loinc: Code
    codings: tuple[Code, ...]
    """LOINC first, then SNOMED CT, MDC and extra codings."""
    unit: str | None
    decimals: int
    category: str
    profile: str | None
    components: tuple[str, ...]
    period_hours: Decimal | None = None
    """The interval the code names: a measurement over another interval is not this concept."""
    other_period: str | None = None
    """The concept a measurement over another interval becomes (none: it is refused)."""


@dataclass(frozen=True, slots=True)
class Conversion:
    factor: Decimal
    offset: Decimal
    concepts: frozenset[str] | None


@dataclass(frozen=True, slots=True)
class Limits:
    low: Decimal | None
    high: Decimal | None
    meter_low: Decimal | None
    meter_high: Decimal | None


@dataclass(frozen=True, slots=True)
class Tables:
    version: str
    concepts: dict[str, Concept]
    by_code: dict[tuple[str, str], str]
    units_exact: dict[str, str]
    units_folded: dict[str, str]
    conversions: dict[tuple[str, str], Conversion]
    limits: dict[str, Limits]
    systolic_above_diastolic: bool


def _read(directory: Path | None, name: str) -> tuple[Any, bytes]:
    try:
        if directory is not None:
            raw = (directory / name).read_bytes()
        else:
            raw = (files("mappings") / name).read_bytes()
    except OSError as exc:
        raise MappingError(f"{name}: cannot read: {exc}") from exc
    try:
        return yaml.safe_load(raw), raw
    except yaml.YAMLError as exc:
        raise MappingError(f"{name}: not valid YAML: {exc}") from exc


def _validate(model: type[BaseModel], name: str, data: Any) -> Any:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(x) for x in first.get("loc", ()))
        raise MappingError(f"{name}: {where}: {first.get('msg')}") from None


def load_tables(directory: Path | None = None) -> Tables:
    digest = hashlib.sha256()
    raw: dict[str, Any] = {}
    versions = []
    for name in FILES:
        data, content = _read(directory, name)
        digest.update(content)
        raw[name] = data
    cf = _validate(_ConceptsFile, "concepts.yaml", raw["concepts.yaml"])
    kf = _validate(_CodesFile, "codes.yaml", raw["codes.yaml"])
    uf = _validate(_UnitsFile, "units.yaml", raw["units.yaml"])
    pf = _validate(_PlausibilityFile, "plausibility.yaml", raw["plausibility.yaml"])
    versions = [cf.version, kf.version, uf.version, pf.version]

    concepts: dict[str, Concept] = {}
    by_code: dict[tuple[str, str], str] = {}
    for cid, c in cf.concepts.items():
        codings = [Code(LOINC, c.loinc.code, c.loinc.display)]
        if c.snomed:
            codings.append(Code(SNOMED, c.snomed.code, c.snomed.display))
        if c.mdc:
            codings.append(Code(MDC, c.mdc.code, c.mdc.display))
        codings.extend(Code(e.system, e.code, e.display) for e in c.extra)
        for comp in c.components:
            if comp not in cf.concepts:
                raise MappingError(f"concepts.yaml: {cid}.components: unknown concept {comp!r}")
        concepts[cid] = Concept(
            cid,
            codings[0],
            tuple(codings),
            c.unit,
            c.decimals,
            c.category,
            c.profile,
            tuple(c.components),
            c.period_hours,
            c.other_period,
        )
        by_code.setdefault((LOINC, c.loinc.code), cid)
        if c.mdc:
            by_code.setdefault((MDC, c.mdc.code), cid)
    for cid, c in cf.concepts.items():
        if c.other_period is not None and c.other_period not in cf.concepts:
            raise MappingError(
                f"concepts.yaml: {cid}.other_period: unknown concept {c.other_period!r}"
            )
    for i, m in enumerate(kf.codes):
        if m.concept not in concepts:
            raise MappingError(f"codes.yaml: codes.{i}: unknown concept {m.concept!r}")
        by_code[(m.system, m.code)] = m.concept
    # SNOMED codes shared by several concepts (glucose) are only used when codes.yaml says so
    for cid, c in cf.concepts.items():
        if (
            c.snomed
            and sum(1 for x in cf.concepts.values() if x.snomed and x.snomed.code == c.snomed.code)
            == 1
        ):
            by_code.setdefault((SNOMED, c.snomed.code), cid)

    units_exact: dict[str, str] = {}
    units_folded: dict[str, str] = {}
    for ucum, syns in uf.synonyms.items():
        units_exact[ucum] = ucum
        for s in syns:
            units_exact.setdefault(s, ucum)
    for k, v in units_exact.items():
        units_folded.setdefault(k.casefold().strip(), v)
    conversions: dict[tuple[str, str], Conversion] = {}
    for i, conv in enumerate(uf.conversions):
        for c in conv.concepts or []:
            if c not in concepts:
                raise MappingError(f"units.yaml: conversions.{i}: unknown concept {c!r}")
        conversions[(conv.from_, conv.to)] = Conversion(
            conv.factor, conv.offset, frozenset(conv.concepts) if conv.concepts else None
        )
    limits: dict[str, Limits] = {}
    for cid, lim in pf.limits.items():
        if cid not in concepts:
            raise MappingError(f"plausibility.yaml: limits.{cid}: unknown concept")
        limits[cid] = Limits(
            lim.low,
            lim.high,
            lim.meter.low if lim.meter else None,
            lim.meter.high if lim.meter else None,
        )
    version = "+".join(sorted(set(versions))) + "." + digest.hexdigest()[:10]
    return Tables(
        version=version,
        concepts=concepts,
        by_code=by_code,
        units_exact=units_exact,
        units_folded=units_folded,
        conversions=conversions,
        limits=limits,
        systolic_above_diastolic=pf.rules.get("systolic_above_diastolic", True),
    )
