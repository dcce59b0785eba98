"""Declarative vendor formats: ``mapped-json`` and ``mapped-csv``.

A vendor without public documentation (Dignio, Siemens, Imatis, Tunstall…) needs a profile in
``mappings/profiles/<name>.yaml``, not code. The profile says where the records are, how to read
the time, which fields or items are measurements (code, value, unit, scaling), what to skip and
why, how to group systolic/diastolic into one blood pressure, and how to build the source's
stable id. Codes are reported as ``urn:dho-interop:code:<source>|<code>`` for the mapping
tables to resolve. The profile is chosen with ``meta.options["profile"]``; profiles are read
from the package, or from ``meta.options["profiles_dir"]``.

Paths: dotted keys with ``[*]`` for every element of an array and ``[n]`` for one; a path
starting with ``$.`` is read from the document root instead of the current record.
"""

from __future__ import annotations

import csv
import io
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal, InvalidOperation
from functools import lru_cache
from importlib.resources import files
from pathlib import Path
from typing import Any, Literal

import orjson
import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

from adapters import jsonsafe
from adapters.base import (
    DIAG_INVALID,
    DIAG_MISSING_PATIENT,
    DIAG_MISSING_TIME,
    DIAG_MISSING_VALUE,
    DIAG_NOT_A_MEASUREMENT,
    DIAG_PARSE_ERROR,
    DIAG_UNKNOWN_UNIT,
    DIAG_WRONG_DATA_TYPE,
    AdapterError,
    AdapterResult,
    Code,
    Component,
    DeviceRef,
    Diagnostic,
    IngestMeta,
    Measurement,
    PatientRef,
    vendor_user_system,
)
from adapters.timeutil import localize

_SEGMENT = re.compile(r"([^.\[\]]+)|\[(\*|\d+)\]")


# ---- profile model ------------------------------------------------------------------------
class _Skip(BaseModel):
    model_config = ConfigDict(extra="forbid")
    path: str | None = None
    column: str | None = None
    equals: Any
    reason: str


class _Time(BaseModel):
    model_config = ConfigDict(extra="forbid")
    path: str | None = None
    date: str | None = None
    time: str | None = None
    format: str = "iso"
    """iso | epoch | epoch-ms | epoch-ns | epoch-local (wall clock as epoch seconds + offset) |
    a strptime pattern"""
    offset_path: str | None = None


class _Field(BaseModel):
    model_config = ConfigDict(extra="forbid")
    code: str
    path: str
    unit: str | None = None
    unit_path: str | None = None
    unit_map: dict[str, str] | None = None
    decimals: int | None = None
    """Round to this many decimals (sources that send binary floats such as 72.0999984741211)."""
    absent: list[Any] = []
    """Values the source sends for "not measured" (iHealth's heart rate 0): skipped with that
    reason, never stored as a value."""


class _DataType(BaseModel):
    """The source field that names what a record is, and the names this profile takes."""

    model_config = ConfigDict(extra="forbid")
    path: str
    accept: list[str]


class _Items(BaseModel):
    model_config = ConfigDict(extra="forbid")
    path: str
    code: str
    value: str
    scale_exponent: str | None = None
    unit: str | None = None


class _Bp(BaseModel):
    model_config = ConfigDict(extra="forbid")
    code: str
    systolic: str
    diastolic: str


class _CsvOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    delimiter: str = ","
    header_starts_with: list[str]
    decimal_comma: bool = False
    preamble: dict[str, dict[str, int]] = {}


class _CsvMeasurement(BaseModel):
    model_config = ConfigDict(extra="forbid")
    code: str
    value: str
    unit_column: str | None = None
    unit: str | None = None
    hi: list[str] = []
    lo: list[str] = []


class _Device(BaseModel):
    model_config = ConfigDict(extra="forbid")
    serial: str | None = None
    model: str | None = None


class _Patient(BaseModel):
    model_config = ConfigDict(extra="forbid")
    path: str


class Profile(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str
    version: str
    format: Literal["json", "csv"]
    source: str
    records: str | None = None
    data_type: _DataType | None = None
    """Required of a source whose records name their data type (Google Fit's dataTypeName): a
    record of another type (a heart-rate dataset sent to the weight profile) is refused."""
    skip: list[_Skip] = []
    time: _Time
    fields: list[_Field] = []
    items: _Items | None = None
    units: dict[str, str] = {}
    bp: _Bp | None = None
    source_id: str | None = None
    patient: _Patient | None = None
    csv: _CsvOptions | None = None
    columns: dict[str, list[str]] = {}
    measurement: _CsvMeasurement | None = None
    flags: list[str] = []
    device: _Device | None = None


class ProfileError(AdapterError):
    pass


def _profile_dir(meta: IngestMeta) -> Path:
    if meta.options.get("profiles_dir"):
        return Path(meta.options["profiles_dir"])
    return Path(str(files("mappings") / "profiles"))


@lru_cache(maxsize=64)
def _load(directory: str, name: str) -> Profile:
    path = Path(directory) / f"{name}.yaml"
    if not re.fullmatch(r"[A-Za-z0-9_.-]+", name) or not path.is_file():
        available = sorted(p.stem for p in Path(directory).glob("*.yaml"))
        raise ProfileError(
            f"no mapping profile {name!r}; available: {', '.join(available)}", DIAG_INVALID
        )
    try:
        return Profile.model_validate(yaml.safe_load(path.read_text(encoding="utf-8")))
    except (yaml.YAMLError, ValidationError) as exc:
        raise ProfileError(f"profile {path.name} is invalid: {exc}", DIAG_INVALID) from None


def load_profile(meta: IngestMeta, fmt: str) -> Profile:
    name = meta.options.get("profile")
    if not name:
        raise ProfileError("give the mapping profile (option 'profile')", DIAG_INVALID)
    profile = _load(str(_profile_dir(meta)), name)
    if profile.format != fmt:
        raise ProfileError(f"profile {name!r} is for {profile.format}, not {fmt}", DIAG_INVALID)
    return profile


# ---- paths --------------------------------------------------------------------------------
def select(node: Any, path: str, root: Any = None) -> list[Any]:
    """All values at ``path`` (dotted keys, ``[*]``, ``[n]``; ``$.`` = from the root)."""
    if path.startswith("$."):
        node, path = (root if root is not None else node), path[2:]
    current = [node]
    for key, index in _segments(path):
        nxt: list[Any] = []
        for item in current:
            if key:
                if isinstance(item, dict) and key in item:
                    nxt.append(item[key])
            elif index is None:
                if isinstance(item, list):
                    nxt.extend(item)
            elif isinstance(item, list) and index < len(item):
                nxt.append(item[index])
        current = nxt
    return current


@lru_cache(maxsize=1024)
def _segments(path: str) -> tuple[tuple[str, int | None], ...]:
    """A path's steps, parsed once: (key, -) for a key, ("", n) for [n], ("", None) for [*]."""
    return tuple(
        (key, None if key or index == "*" else int(index)) for key, index in _SEGMENT.findall(path)
    )


def first(node: Any, path: str, root: Any = None) -> Any:
    found = select(node, path, root)
    return found[0] if found else None


def to_decimal(value: Any, *, decimal_comma: bool = False) -> Decimal:
    if isinstance(value, bool):
        raise InvalidOperation
    text = str(value).strip()
    if decimal_comma:
        text = text.replace(".", "").replace(",", ".") if "," in text else text
    return Decimal(text)


# ---- time ---------------------------------------------------------------------------------
def _offset(text: str) -> timezone:
    m = re.fullmatch(r"([+-])(\d{2}):?(\d{2})", text.strip())
    if not m:
        raise ValueError(f"not a UTC offset: {text!r}")
    sign = 1 if m.group(1) == "+" else -1
    return timezone(sign * timedelta(hours=int(m.group(2)), minutes=int(m.group(3))))


def read_time(spec: _Time, get: Any, meta: IngestMeta) -> tuple[datetime, bool]:
    """(aware time, zone assumed); ``get(path)`` reads a value from the record."""
    if spec.format in ("epoch", "epoch-ms", "epoch-ns", "epoch-local"):
        raw = get(spec.path)
        if raw is None:
            raise ValueError(f"no value at {spec.path}")
        divisor = {"epoch-ms": 1000, "epoch-ns": 1_000_000_000}.get(spec.format, 1)
        seconds = int(raw) / divisor if spec.format == "epoch-ns" else float(raw) / divisor
        if spec.format == "epoch-local":
            wall = datetime(1970, 1, 1) + timedelta(seconds=seconds)
            off = get(spec.offset_path) if spec.offset_path else None
            if off:
                return wall.replace(tzinfo=_offset(str(off))), False
            return localize(wall, meta.default_timezone), True
        return datetime.fromtimestamp(seconds, tz=UTC), False
    if spec.format == "iso":
        from adapters.timeutil import parse_iso

        raw = get(spec.path)
        pt = parse_iso(str(raw), meta.default_timezone)
        return pt.value, pt.zone_assumed
    text = f"{get(spec.date)} {get(spec.time)}" if spec.date and spec.time else str(get(spec.path))
    naive = datetime.strptime(text.strip(), spec.format)
    return localize(naive, meta.default_timezone), True


# ---- the adapters -------------------------------------------------------------------------
def _patient(profile: Profile, record: Any, root: Any, meta: IngestMeta) -> PatientRef | None:
    if profile.patient is not None:
        value = first(record, profile.patient.path, root)
        if value not in (None, ""):
            return PatientRef(vendor_user_system(meta.source or profile.source), str(value))
    return meta.patient


def _template(template: str | None, values: dict[str, Any]) -> str | None:
    if not template:
        return None
    try:
        return template.format(**values)
    except (KeyError, IndexError):
        return None


class MappedJsonAdapter:
    name = "mapped-json"
    content_types = ("application/json",)

    def parse(self, data: bytes, meta: IngestMeta) -> AdapterResult:
        profile = load_profile(meta, "json")
        try:
            doc = orjson.loads(data)
        except orjson.JSONDecodeError as exc:
            raise AdapterError(f"not JSON: {exc}", DIAG_PARSE_ERROR) from None
        try:
            jsonsafe.check(doc, raw=data)
        except jsonsafe.UnsafeJson as exc:
            raise AdapterError(str(exc), DIAG_PARSE_ERROR) from None
        system = f"urn:dho-interop:code:{profile.source}"
        result = AdapterResult()
        records = select(doc, profile.records) if profile.records else [doc]
        if profile.records and not select(doc, profile.records.replace("[*]", "")):
            raise AdapterError(
                f"{profile.name}: no {profile.records} in the document", DIAG_INVALID
            )
        for i, rec in enumerate(records):
            where = f"{profile.records or '$'}[{i}]"
            result.items_seen += 1
            skip = next(
                (s for s in profile.skip if s.path and first(rec, s.path, doc) == s.equals), None
            )
            if skip is not None:
                result.diagnostics.append(
                    Diagnostic("information", DIAG_NOT_A_MEASUREMENT, skip.reason, where)
                )
                continue
            if profile.data_type is not None:
                named = first(rec, profile.data_type.path, doc)
                if named not in profile.data_type.accept:
                    result.diagnostics.append(
                        Diagnostic(
                            "error",
                            DIAG_WRONG_DATA_TYPE,
                            f"{profile.name}: the record's {profile.data_type.path} is "
                            f"{named!r}; this profile takes "
                            f"{', '.join(profile.data_type.accept)} only",
                            f"{where}.{profile.data_type.path}",
                        )
                    )
                    continue
            try:
                when, assumed = read_time(
                    profile.time, lambda p, rec=rec: first(rec, p, doc) if p else None, meta
                )
            except (ValueError, TypeError, OverflowError) as exc:
                result.diagnostics.append(
                    Diagnostic("error", DIAG_MISSING_TIME, f"{profile.name}: {exc}", where)
                )
                continue
            patient = _patient(profile, rec, doc, meta)
            if patient is None:
                result.diagnostics.append(
                    Diagnostic(
                        "error",
                        DIAG_MISSING_PATIENT,
                        f"{profile.name}: no patient in the data and none given with the upload",
                        where,
                    )
                )
                continue
            values: list[tuple[str, Decimal, str | None]] = []
            for f in profile.fields:
                raw = first(rec, f.path, doc)
                if raw in (None, ""):
                    continue
                if any(raw == a and type(raw) is not bool for a in f.absent):
                    result.diagnostics.append(
                        Diagnostic(
                            "information",
                            DIAG_MISSING_VALUE,
                            f"{f.code}: {raw!r} is {profile.source}'s value for not measured",
                            f"{where}/{f.code}",
                        )
                    )
                    continue
                unit = f.unit
                if f.unit_path:
                    u = first(rec, f.unit_path, doc)
                    unit = (f.unit_map or {}).get(
                        str(u), None if f.unit_map else (str(u) if u is not None else None)
                    )
                    if unit is None:
                        result.diagnostics.append(
                            Diagnostic(
                                "error",
                                DIAG_UNKNOWN_UNIT,
                                f"{f.code}: unit code {u!r} is not known to profile {profile.name}",
                                where,
                            )
                        )
                        continue
                try:
                    number = to_decimal(raw)
                    if f.decimals is not None:
                        number = round(number, f.decimals)
                    values.append((f.code, number, unit))
                except InvalidOperation:
                    result.diagnostics.append(
                        Diagnostic(
                            "error", DIAG_INVALID, f"{f.code}: {raw!r} is not a number", where
                        )
                    )
            if profile.items is not None:
                for j, item in enumerate(select(rec, profile.items.path, doc)):
                    code = str(first(item, profile.items.code))
                    raw = first(item, profile.items.value)
                    try:
                        value = to_decimal(raw)
                        if profile.items.scale_exponent:
                            value = value.scaleb(
                                int(first(item, profile.items.scale_exponent) or 0)
                            )
                    except (InvalidOperation, TypeError, ValueError):
                        result.diagnostics.append(
                            Diagnostic(
                                "error",
                                DIAG_INVALID,
                                f"{code}: {raw!r} is not a number",
                                f"{where}.{profile.items.path}[{j}]",
                            )
                        )
                        continue
                    values.append((code, value, profile.units.get(code, profile.items.unit)))
            ids = (
                {k: v for k, v in rec.items() if isinstance(v, str | int)}
                if isinstance(rec, dict)
                else {}
            )
            self._emit(profile, system, values, when, assumed, patient, where, ids, result)
        if not result.items_seen:
            result.diagnostics.append(
                Diagnostic(
                    "information",
                    DIAG_NOT_A_MEASUREMENT,
                    f"{profile.name}: {profile.records} is empty: the document holds no records",
                    profile.records,
                )
            )
        return result

    @staticmethod
    def _emit(
        profile: Profile,
        system: str,
        values: list[tuple[str, Decimal, str | None]],
        when: datetime,
        assumed: bool,
        patient: PatientRef,
        where: str,
        ids: dict[str, Any],
        result: AdapterResult,
    ) -> None:
        by_code = {c: (v, u) for c, v, u in values}
        used: set[str] = set()
        if profile.bp and profile.bp.systolic in by_code and profile.bp.diastolic in by_code:
            comps = tuple(
                Component(Code(system, c), by_code[c][0], by_code[c][1])
                for c in (profile.bp.systolic, profile.bp.diastolic)
            )
            used |= {profile.bp.systolic, profile.bp.diastolic}
            sid = _template(profile.source_id, {**ids, "code": profile.bp.code})
            result.measurements.append(
                Measurement(
                    Code(system, profile.bp.code),
                    None,
                    None,
                    when,
                    patient,
                    where,
                    components=comps,
                    timezone_assumed=assumed,
                    source_id=(f"urn:dho-interop:source:{profile.source}", sid) if sid else None,
                )
            )
        for code, value, unit in values:
            if code in used:
                continue
            sid = _template(profile.source_id, {**ids, "code": code})
            result.measurements.append(
                Measurement(
                    Code(system, code),
                    value,
                    unit,
                    when,
                    patient,
                    f"{where}/{code}",
                    timezone_assumed=assumed,
                    source_id=(f"urn:dho-interop:source:{profile.source}", sid) if sid else None,
                )
            )


@dataclass(slots=True)
class CsvRows:
    """The rows of a CSV text (cells stripped), and what reading them showed."""

    rows: list[list[str]]
    unreadable: dict[int, str]
    """By row index, why a row could not be read."""
    trailing: list[bool]
    """By row index, whether the row ends with a delimiter (its last field empty, not blank)."""


def read_csv_rows(text: str, delimiter: str) -> CsvRows:
    """The rows of a CSV text (cells stripped) and, by row index, why a row could not be read.

    A row the csv module refuses (a field over its 128 KiB limit, a stray quote) stays in the
    list as an empty row, so the rows after it keep their numbers and are still read. A bare
    carriage return ends a line, as in old Mac files."""
    out = CsvRows([], {}, [])
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    while True:
        try:
            row = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:
            out.unreadable[len(out.rows)] = f"line {reader.line_num} cannot be read as CSV: {exc}"
            out.rows.append([])
            out.trailing.append(False)
            continue
        out.rows.append([cell.strip() for cell in row])
        out.trailing.append(len(row) > 1 and row[-1] == "")
    return out


def row_width_problem(width: int, trailing: bool, header: int, file_trailing: bool) -> str | None:
    """Why a data row does not have the header's fields (``None``: it has them).

    A file either ends every row with a delimiter (Accu-Chek's export does) or none; a row
    one field short or long would put each value after the gap under the wrong column (a
    control-solution test read as a patient's measurement), so it is refused, never guessed."""
    expected = header + 1 if file_trailing else header
    if width == expected and (trailing or not file_trailing):
        return None
    have = width - 1 if file_trailing and trailing else width
    return (
        f"the row has {have} fields where the header has {header} columns: "
        "which value belongs to which column cannot be told"
    )


class MappedCsvAdapter:
    name = "mapped-csv"
    content_types = ("text/csv",)

    def parse(self, data: bytes, meta: IngestMeta) -> AdapterResult:
        profile = load_profile(meta, "csv")
        opts = profile.csv
        spec = profile.measurement
        if opts is None or spec is None:
            raise ProfileError(
                f"profile {profile.name} has no csv/measurement section", DIAG_INVALID
            )
        try:
            text = data.decode("utf-8-sig")
        except UnicodeDecodeError:
            text = data.decode("latin-1")
        read = read_csv_rows(text, opts.delimiter)
        rows, unreadable = read.rows, read.unreadable
        header_at = next(
            (i for i, r in enumerate(rows) if r and r[0] in opts.header_starts_with), None
        )
        if header_at is None:
            raise AdapterError(
                f"{profile.name}: no header row starting with {' or '.join(opts.header_starts_with)}",
                DIAG_INVALID,
            )
        header = rows[header_at]
        index: dict[str, int] = {}
        for logical, names in profile.columns.items():
            for n in names:
                if n in header:
                    index[logical] = header.index(n)
                    break
        missing = [
            c for c in (profile.time.date, profile.time.time, spec.value) if c and c not in index
        ]
        if missing:
            raise AdapterError(
                f"{profile.name}: columns not found: {', '.join(missing)} (header: {header})",
                DIAG_INVALID,
            )
        pre = {
            k: (
                rows[v["row"]][v["column"]]
                if v["row"] < len(rows) and v["column"] < len(rows[v["row"]])
                else ""
            )
            for k, v in opts.preamble.items()
        }
        system = f"urn:dho-interop:code:{profile.source}"
        device = None
        if profile.device is not None:
            serial = pre.get(profile.device.serial or "", "")
            if serial:
                device = DeviceRef(
                    f"urn:dho-interop:device-serial:{profile.source}",
                    serial,
                    model=profile.device.model,
                    serial=serial,
                )
        result = AdapterResult(devices=[device] if device else [])
        header_width = len(header) - (1 if read.trailing[header_at] else 0)
        data_rows = range(header_at + 1, len(rows))
        # the file's own convention, from its rows: a row of the header's width plus an empty
        # last field fits only rows ended by a delimiter, one of the header's width only rows
        # that are not; the more common wins (a tie: ended, as a short row is then refused)
        ended = sum(1 for k in data_rows if read.trailing[k] and len(rows[k]) == header_width + 1)
        plain = sum(1 for k in data_rows if len(rows[k]) == header_width)
        file_trailing = ended > 0 and ended >= plain
        for i, row in enumerate(rows[header_at + 1 :], start=header_at + 2):
            if not any(row):
                if i - 1 in unreadable:
                    result.items_seen += 1
                    result.diagnostics.append(
                        Diagnostic(
                            "error",
                            DIAG_PARSE_ERROR,
                            f"{profile.name}: {unreadable[i - 1]}",
                            f"row {i}",
                        )
                    )
                continue
            where = f"row {i}"
            result.items_seen += 1
            problem = row_width_problem(len(row), read.trailing[i - 1], header_width, file_trailing)
            if problem is not None:
                result.diagnostics.append(
                    Diagnostic("error", DIAG_INVALID, f"{profile.name}: {problem}", where)
                )
                continue

            def col(name: str | None, row: list[str] = row) -> str:
                k = index.get(name or "")
                return row[k] if k is not None and k < len(row) else ""

            skip = next((s for s in profile.skip if s.column and col(s.column) == s.equals), None)
            if skip is not None:
                result.diagnostics.append(
                    Diagnostic("information", DIAG_NOT_A_MEASUREMENT, skip.reason, where)
                )
                continue
            try:
                when, assumed = read_time(profile.time, col, meta)
            except ValueError as exc:
                result.diagnostics.append(
                    Diagnostic("error", DIAG_MISSING_TIME, f"{profile.name}: {exc}", where)
                )
                continue
            if meta.patient is None:
                result.diagnostics.append(
                    Diagnostic(
                        "error",
                        DIAG_MISSING_PATIENT,
                        f"{profile.name}: the file carries no patient; give one with the upload",
                        where,
                    )
                )
                continue
            raw = col(spec.value)
            unit = col(spec.unit_column) if spec.unit_column else spec.unit
            oor = "HI" if raw in spec.hi else "LO" if raw in spec.lo else None
            value = None
            if oor is None:
                try:
                    value = to_decimal(raw, decimal_comma=opts.decimal_comma)
                except InvalidOperation:
                    result.diagnostics.append(
                        Diagnostic("error", DIAG_INVALID, f"value {raw!r} is not a number", where)
                    )
                    continue
            flags = {f: True for f in profile.flags if col(f).upper() == "X"}
            sid = _template(profile.source_id, {**pre, **{k: col(k) for k in index}})
            result.measurements.append(
                Measurement(
                    Code(system, spec.code),
                    value,
                    unit or None,
                    when,
                    meta.patient,
                    where,
                    device=device,
                    out_of_range=oor,  # type: ignore[arg-type]
                    timezone_assumed=assumed,
                    source_id=(f"urn:dho-interop:source:{profile.source}", sid) if sid else None,
                    attributes=flags,
                )
            )
        return result
