"""The adapter contract: bytes + metadata in, canonical measurements + diagnostics out.

Each adapter is a *Message Translator* (EIP). It knows nothing of the store, the web layer or
the mapping tables: it reports what the source said (the source's own code system, value and
unit, device time) and leaves coding to LOINC/UCUM, unit conversion and plausibility checks to
the mapping step (``interop.mapping``).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any, Literal, Protocol, runtime_checkable

# Code systems adapters commonly report in (the mapping tables are keyed on these).
LOINC = "http://loinc.org"
SNOMED = "http://snomed.info/sct"
MDC = "urn:iso:std:iso:11073:10101"
UCUM = "http://unitsofmeasure.org"
FNR_OID = "urn:oid:2.16.578.1.12.4.1.4.1"
"""Fødselsnummer (Norwegian national identity number)."""
DNR_OID = "urn:oid:2.16.578.1.12.4.1.4.2"
"""D-nummer (identity number for people not registered as residents)."""
FHIR_REFERENCE = "urn:dho-interop:fhir-reference"
"""Pseudo-system for a :class:`PatientRef` that is a literal FHIR reference (``Patient/123``)."""

DiagnosticSeverity = Literal["fatal", "error", "warning", "information"]

# Machine-readable diagnostic codes; messages are free text.
DIAG_PARSE_ERROR = "parse-error"
DIAG_UNKNOWN_CODE = "unknown-code"
DIAG_UNKNOWN_UNIT = "unknown-unit"
DIAG_IMPLAUSIBLE = "implausible-value"
DIAG_FUTURE_TIME = "future-timestamp"
DIAG_ANCIENT_TIME = "ancient-timestamp"
DIAG_MISSING_TIME = "missing-timestamp"
DIAG_NOT_A_MEASUREMENT = "not-a-measurement"
DIAG_UNKNOWN_PATIENT = "unknown-patient"
DIAG_MISSING_PATIENT = "missing-patient"
DIAG_INVALID_IDENTIFIER = "invalid-identifier"
DIAG_ASSUMED_TIMEZONE = "assumed-timezone"
DIAG_OUT_OF_RANGE = "meter-out-of-range"
DIAG_MISSING_VALUE = "missing-value"
DIAG_UNSUPPORTED = "unsupported"
DIAG_INVALID = "invalid"
DIAG_WRONG_DATA_TYPE = "wrong-data-type"
"""The record says it is another kind of data than the profile or field it was sent to."""


@dataclass(frozen=True, slots=True)
class Diagnostic:
    """Why an item was not (or not quite) turned into a measurement."""

    severity: DiagnosticSeverity
    code: str
    message: str
    location: str | None = None
    """Where in the input: ``OBX[4]``, ``row 12``, ``entry[3]``, ``$.body.systolic_blood_pressure``."""


@dataclass(frozen=True, slots=True)
class Code:
    system: str
    code: str
    display: str | None = None


@dataclass(frozen=True, slots=True)
class PatientRef:
    """Who the measurement is about, as the source said it.

    ``system`` is the national OID (:data:`FNR_OID`/:data:`DNR_OID`) when the source carries a
    fødselsnummer/D-nummer; any other system is a vendor's user id that must go through the
    patient-link table; :data:`FHIR_REFERENCE` is a literal reference.
    """

    system: str
    value: str


@dataclass(frozen=True, slots=True)
class DeviceRef:
    identifier_system: str | None = None
    identifier_value: str | None = None
    """For IEEE devices the EUI-64 (system ``urn:oid:1.2.840.10004.1.1.1.0.0.1.0.0.1.2680``)."""
    manufacturer: str | None = None
    model: str | None = None
    serial: str | None = None
    type: Code | None = None
    display: str | None = None


Comparator = Literal["<", "<=", ">=", ">"]
"""FHIR ``Quantity.comparator``: how the real value relates to the stated one."""

OutOfRange = Literal["HI", "LO"]
"""A meter's 'HI'/'LO' reading: above/below its measuring range; never coerced to a number."""


@dataclass(frozen=True, slots=True)
class Component:
    """One part of a compound measurement (BP systolic/diastolic/mean)."""

    code: Code
    value: Decimal | None
    unit: str | None
    out_of_range: OutOfRange | None = None
    extra_codes: tuple[Code, ...] = ()


@dataclass(frozen=True, slots=True)
class Measurement:
    """One measurement as the source reported it (source codes and units, device time)."""

    code: Code
    value: Decimal | None
    unit: str | None
    effective: datetime
    """Device time, always timezone-aware (see ``timezone_assumed``)."""
    patient: PatientRef
    location: str
    """Where in the input this came from (for diagnostics and provenance)."""
    components: tuple[Component, ...] = ()
    extra_codes: tuple[Code, ...] = ()
    """Other codings the source gave for the same concept (kept on the Observation)."""
    device: DeviceRef | None = None
    source_id: tuple[str, str] | None = None
    """(system, value) of the source's stable id, if it has one."""
    status: Literal["final", "preliminary", "amended", "corrected", "entered-in-error"] = "final"
    out_of_range: OutOfRange | None = None
    timezone_assumed: bool = False
    effective_end: datetime | None = None
    value_string: str | None = None
    note: str | None = None
    method: Code | None = None
    body_site: Code | None = None
    attributes: Mapping[str, Any] = field(default_factory=dict)
    """Adapter-specific context kept for provenance (posture, meal relation, severity …)."""
    comparator: Comparator | None = None
    """The source gave a bound, not an exact value (MedCom ``greater_than`` 11: "> 11"); kept
    as ``valueQuantity.comparator``, never dropped to make the bound look exact."""


@dataclass(frozen=True, slots=True)
class Answer:
    link_id: str
    text: str | None
    value: str | Decimal | bool | int | Code | None
    severity: str | None = None
    """The zone (``green``/``yellow``/``red``) the source's flow gave this answer, if any."""


@dataclass(frozen=True, slots=True)
class QuestionnaireAnswers:
    """Answers to a symptom questionnaire; becomes a FHIR QuestionnaireResponse."""

    questionnaire: str
    """Canonical URL or name of the questionnaire."""
    patient: PatientRef
    authored: datetime
    answers: tuple[Answer, ...]
    location: str
    source_id: tuple[str, str] | None = None
    title: str | None = None
    severity: str | None = None
    """The source's own triage of the answers as a zone: ``green``/``yellow``/``red`` (e.g.
    OpenTele's GREEN/YELLOW/RED), carried on the QuestionnaireResponse."""
    timezone_assumed: bool = False


@dataclass(slots=True)
class AdapterResult:
    measurements: list[Measurement] = field(default_factory=list)
    questionnaires: list[QuestionnaireAnswers] = field(default_factory=list)
    diagnostics: list[Diagnostic] = field(default_factory=list)
    devices: list[DeviceRef] = field(default_factory=list)
    items_seen: int = 0
    """How many items the input held (measurements, rows, OBX groups …)."""
    message_id: str | None = None
    """The input's own message id (MSH-10, Bundle.identifier …) for de-duplication."""
    message_sender: str | None = None
    """Who named the message id, when the message itself says (HL7 v2: MSH-3|MSH-4, every
    component): a message is named by this and ``message_id`` together."""
    message_digest: str | None = None
    """A digest of what the message says (volatile header fields left out): the same message
    id with another digest is another message reusing the id — never taken for a re-send."""


@dataclass(frozen=True, slots=True)
class IngestMeta:
    """What the transport knows about the input."""

    source: str = "unknown"
    """Who sent it (vendor/actor name); vendor user ids are scoped by this."""
    filename: str | None = None
    content_type: str | None = None
    default_timezone: str = "Europe/Oslo"
    received_at: datetime | None = None
    patient: PatientRef | None = None
    """Out-of-band patient for formats that do not carry one (e.g. an uploaded CSV diary)."""
    options: Mapping[str, str] = field(default_factory=dict)
    """Adapter options, e.g. ``{"profile": "accu-chek-csv"}`` for mapped-csv."""


class AdapterError(Exception):
    """The input as a whole is unusable (not JSON, not HL7, wrong format)."""

    def __init__(self, message: str, code: str = DIAG_PARSE_ERROR, location: str | None = None):
        super().__init__(message)
        self.code = code
        self.location = location


@runtime_checkable
class Adapter(Protocol):
    name: str
    """Registry name, e.g. ``hl7v2``."""
    content_types: tuple[str, ...]

    def parse(self, data: bytes, meta: IngestMeta) -> AdapterResult:
        """Translate; raise :class:`AdapterError` only when nothing can be read at all."""
        ...


UNEXPECTED_SHAPE = (AttributeError, TypeError, KeyError, IndexError, ValueError, ArithmeticError)
"""What reading a document of an unexpected shape raises (a number where an object belongs,
a missing key …): input errors, not faults of the service."""


@contextmanager
def item_guard(result: AdapterResult, where: str) -> Iterator[None]:
    """Read one item of a document: an item of an unexpected shape becomes that item's
    diagnostic (the measurements it had produced are taken back), and the next is read."""
    mark = len(result.measurements)
    try:
        yield
    except AdapterError:
        raise
    except UNEXPECTED_SHAPE as exc:
        del result.measurements[mark:]
        result.diagnostics.append(
            Diagnostic(
                "error",
                DIAG_INVALID,
                f"the item has an unexpected shape ({type(exc).__name__}: {exc})",
                where,
            )
        )


VENDOR_USER_PREFIX = "urn:dho-interop:vendor-user:"


def vendor_user_system(source: str) -> str:
    """Identifier system for a vendor's own user id; resolved through the patient-link table."""
    return VENDOR_USER_PREFIX + source
