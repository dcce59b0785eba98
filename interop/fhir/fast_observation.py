"""A hand-written structural validator for the Observation shapes this product stores.

``fhir.resources`` (pydantic) costs 0.4–1 ms per Observation; this walk costs a few tens of
microseconds. It answers one of three things for a parsed JSON Observation:

* ``accept`` — ``fhir.resources.R4B`` accepts it too (proved by the property tests in
  ``tests/api/test_fast_validation.py`` and against every Observation in the conformance set);
* ``reject`` — ``fhir.resources`` rejects it as well; the verdict names the element;
* ``defer`` — the resource uses something this validator does not model (an element type it
  does not know, a primitive extension ``_x``, a JSON ``null``, a value in a form pydantic
  would coerce, …), so only ``fhir.resources`` can say.

:func:`interop.fhir.validation.validate_resource` skips the pydantic models only on
``accept``; a ``reject`` or ``defer`` goes through ``fhir.resources`` as before, so refusals
keep exactly the OperationOutcome they always had and this module can never refuse a resource
``fhir.resources`` would take.

What is modelled is what ``fhir.resources`` itself checks (FHIR invariants written in FHIRPath,
such as obs-6 and obs-7, are not checked by it, so they are not checked here either):

* element names: an element the model does not define is rejected (``extra_forbidden``);
* JSON types of every element, list cardinality (a list where a list belongs, an object where
  an object belongs, no ``null`` inside a list of complex elements);
* required elements (``Observation.status``, ``Observation.code``,
  ``Observation.component.code``, ``Extension.url``, ``Annotation.text``, ``Narrative.div``/
  ``status``) and one value per choice element (``value[x]``, ``effective[x]``, ``author[x]``);
* primitive formats exactly as pydantic applies them: ``string`` (non-empty, not only
  non-breaking/vertical whitespace), ``code``, ``id``, ``decimal``, ``integer`` (32-bit),
  ``boolean``, ``dateTime`` and ``instant`` (the FHIR regexes and real calendar dates), ``uri``.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache, partial
from typing import Any, Literal

from fhir_core.types import DateTime as _CoreDateTime
from fhir_core.types import Instant as _CoreInstant

from interop.fhir.decimals import FhirDecimal

Verdict = Literal["accept", "reject", "defer"]

# pydantic-core evaluates ``pattern`` constraints with the Rust ``regex`` crate, whose ``\s``
# is Unicode White_Space. Python's ``\s`` also matches U+001C..U+001F, so the classes are
# spelled out. (The test compares every code point against pydantic itself.)
_WS = "\t\n\x0b\x0c\r \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000"
_CODE_RE = re.compile(f"[^{_WS}]+(?:[{_WS}][^{_WS}]+)*")
# FHIR string is ``[ \r\n\t\S]+`` searched (not anchored): it fails only for "" and for text made
# entirely of the other whitespace characters.
_STRING_ONLY_WS = "\x0b\x0c\x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009\u200a\u2028\u2029\u202f\u205f\u3000"
_ID_RE = re.compile(r"[A-Za-z0-9\-.]+")
_ID_MAX = 255
_DATETIME_RE = _CoreDateTime.pattern
_INSTANT_RE = _CoreInstant.pattern
_INT_MIN, _INT_MAX = -2147483648, 2147483647
_BIG = 10**4000  # str() of larger ints raises in CPython (int_max_str_digits): leave to pydantic
_DAYS = (0, 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)


class _Problem(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.loc: list[str | int] = []


class _Invalid(_Problem):
    """fhir.resources rejects this element."""


class _Defer(_Problem):
    """Outside the shapes modelled here: only fhir.resources can decide."""


@dataclass(frozen=True, slots=True)
class FastResult:
    verdict: Verdict
    expression: str = ""
    """FHIRPath-like element path (``Observation.code.coding[0].code``) for reject/defer."""
    code: str = ""
    message: str = ""


# ---- primitives ---------------------------------------------------------------------------
def _not_str(v: Any) -> None:
    if isinstance(v, int | float | dict | list):  # bool is an int
        raise _Invalid("string_type", "Input should be a valid string")
    raise _Defer("type", f"{type(v).__name__} where a string belongs")


def _unicode_ok(v: str) -> None:
    try:
        v.encode("utf-8")
    except UnicodeEncodeError:
        raise _Invalid(
            "string_unicode",
            "Input should be a valid string, unable to parse raw data as a unicode string",
        ) from None


def _string(v: Any) -> None:
    if type(v) is not str:
        _not_str(v)
    if not v:
        raise _Invalid("string_pattern_mismatch", "String should match pattern '[ \\r\\n\\t\\S]+'")
    if not v.isascii():
        _unicode_ok(v)
    if v[0] in _STRING_ONLY_WS and not v.strip(_STRING_ONLY_WS):
        raise _Invalid("string_pattern_mismatch", "String should match pattern '[ \\r\\n\\t\\S]+'")


def _any_text(v: Any) -> None:
    """markdown (``\\s*(\\S|\\s)*`` matches any text), xhtml (no constraint) and uri/canonical
    (``\\S*`` searched: matches any text)."""
    if type(v) is not str:
        _not_str(v)
    if not v.isascii():
        _unicode_ok(v)


def _code(v: Any) -> None:
    if type(v) is not str:
        _not_str(v)
    if not v.isascii():
        _unicode_ok(v)
    if _CODE_RE.fullmatch(v) is None:
        raise _Invalid(
            "string_pattern_mismatch", "String should match pattern '^[^\\s]+(\\s[^\\s]+)*$'"
        )


def _id(v: Any) -> None:
    if type(v) is not str:
        _not_str(v)
    if len(v) > _ID_MAX:
        raise _Invalid("string_too_long", f"String should have at most {_ID_MAX} characters")
    if _ID_RE.fullmatch(v) is None:
        raise _Invalid(
            "string_pattern_mismatch", "String should match pattern '^[A-Za-z0-9\\-.]+$'"
        )


def _boolean(v: Any) -> None:
    if type(v) is not bool:
        if isinstance(v, dict | list):
            raise _Invalid("bool_type", "Input should be a valid boolean")
        raise _Defer("type", "a boolean in a form pydantic may coerce")


def _integer(v: Any) -> None:
    if type(v) is not int:
        if isinstance(v, dict | list):
            raise _Invalid("int_type", "Input should be a valid integer")
        raise _Defer("type", "an integer in a form pydantic may coerce")
    if v < _INT_MIN:
        raise _Invalid("greater_than_equal", f"Input should be greater than or equal to {_INT_MIN}")
    if v > _INT_MAX:
        raise _Invalid("less_than_equal", f"Input should be less than or equal to {_INT_MAX}")


def _decimal(v: Any) -> None:
    t = type(v)
    if t is int:
        if -_BIG < v < _BIG:
            return
        raise _Defer("type", "a very long integer")
    if t is float or t is FhirDecimal:
        if v - v == 0.0:  # finite (inf - inf and nan - nan are nan)
            return
        raise _Invalid(
            "value_error", "Value error, Decimal value string does not match spec regex."
        )
    if t is bool or isinstance(v, dict | list):
        raise _Invalid(
            "value_error", "Value error, Decimal value string does not match spec regex."
        )
    raise _Defer("type", "a decimal in a form pydantic may coerce")  # e.g. "72.5"


def _calendar_day(v: str) -> None:
    # the regex has fixed positions: YYYY-MM-DD...
    if len(v) >= 10:
        year, month, day = int(v[0:4]), int(v[5:7]), int(v[8:10])
        last = _DAYS[month]
        if month == 2 and year % 4 == 0 and (year % 100 != 0 or year % 400 == 0):
            last = 29
        if day > last:
            raise _Invalid(
                "datetime_from_date_parsing",
                "Input should be a valid datetime or date, day value is outside expected range",
            )


def _not_date_str(v: Any) -> None:
    if isinstance(v, dict | list):
        raise _Invalid("datetime_type", "Input should be a valid datetime")
    raise _Defer("type", "a date/time in a form pydantic may coerce")  # numbers: timestamps


def _datetime(v: Any) -> None:
    if type(v) is not str:
        _not_date_str(v)
    if _DATETIME_RE.fullmatch(v) is None:
        raise _Invalid(
            "value_error", "Value error, DateTime value string does not match spec regex."
        )
    _calendar_day(v)


def _instant(v: Any) -> None:
    if type(v) is not str:
        _not_date_str(v)
    if _INSTANT_RE.fullmatch(v) is None:
        raise _Invalid(
            "value_error", "Value error, Instant value string does not match spec regex."
        )
    _calendar_day(v)


def _resource_type(d: Any) -> None:
    """Checked before any element, like fhir.resources' model ``__init__`` does."""
    if type(d) is dict:
        v = d.get("resourceType")
        if v is not None and v != "Observation":
            exc = _Invalid(
                "fhir-validation-wrong-resource-type", "expects resource type Observation"
            )
            exc.loc.append("resourceType")
            raise exc


# ---- complex elements ---------------------------------------------------------------------
Checker = Callable[[Any], None]


class _Spec:
    """One element type: the elements handled here, every element name the pydantic model
    knows (names, ``_x`` aliases, ``fhir_comments``, …), required elements, choice groups."""

    __slots__ = (
        "name",
        "fields",
        "known",
        "required",
        "required_primitives",
        "choices",
        "element_lists",
        "typed_keys",
    )

    def __init__(self, name: str) -> None:
        self.name = name
        self.fields: dict[str, Checker] = {}
        self.known: frozenset[str] = frozenset()
        self.required: tuple[str, ...] = ()
        """Required elements pydantic reports with the other element errors (``Field(...)``)."""
        self.required_primitives: tuple[str, ...] = ()
        """Required primitives, checked after all elements (they may be given as ``_x``)."""
        self.choices: tuple[frozenset[str], ...] = ()
        self.element_lists: tuple[str, ...] = ()
        self.typed_keys: tuple[str, ...] = ("resourceType", "resource_type")
        """Keys fhir.resources checks before anything else (in its model ``__init__``)."""


def _object(spec: _Spec, d: Any) -> None:
    if type(d) is not dict:
        if isinstance(d, list | int | float):
            raise _Invalid(
                "model_validation_format",
                f"Value is expected from the instance of {spec.name}, but got type {type(d)}",
            )
        raise _Defer("type", f"{type(d).__name__} where {spec.name} belongs")  # str: parsed as JSON
    fields = spec.fields
    # pydantic's order: a ``null`` in a list of elements is refused before anything else, then
    # every element (unknown ones and missing required elements included) is checked, then —
    # only if all of that passed — required primitives and one value per choice group.
    try:
        for k, v in d.items():
            check = fields.get(k)
            if check is None:
                if k in spec.known or type(k) is not str:
                    exc: _Problem = _Defer("unhandled", f"{spec.name}.{k} is not modelled here")
                else:
                    exc = _Invalid("extra_forbidden", "Extra inputs are not permitted")
                exc.loc.append(k)
                raise exc
            if v is None:
                exc = _Defer("null", "null value")
                exc.loc.append(k)
                raise exc
            try:
                check(v)
            except _Problem as e:
                e.loc.append(k)
                raise
        for name in spec.required:
            if name not in d:
                exc = _Invalid("missing", "Field required")
                exc.loc.append(name)
                raise exc
    except _Invalid:
        # an earlier stage would have failed first: report what fhir.resources reports
        for k in spec.typed_keys:
            if k in d:  # a nested ``resourceType`` is compared with the element's own type
                raise _Defer("unhandled", f"{spec.name}.{k} is not modelled here") from None
        _null_items(spec, d)
        raise
    for name in spec.required_primitives:
        if name not in d:
            exc = _Invalid(
                "model_field_validation.missing", f"Value for the field '{name}' is required."
            )
            exc.loc.append(name)
            raise exc
    for group in spec.choices:
        if len(group.intersection(d)) > 1:
            raise _Invalid(
                "value_error",
                f"Value error, Any of one field value is expected from this list "
                f"{sorted(group)}, but got multiple!",
            )


def _null_items(spec: _Spec, d: dict[Any, Any]) -> None:
    """A ``null`` item in a list of complex elements, which pydantic reports before all else."""
    for k in spec.element_lists:
        v = d.get(k)
        if type(v) is list and None in v:
            exc = _Invalid("list_type", f"None is not allowed as an element of {k}")
            exc.loc.append(k)
            raise exc


def _list(item: Checker, v: Any, *, nulls: bool = False) -> None:
    """A list of complex elements (a ``null`` item is refused) or, with ``nulls``, of primitives
    (where ``null`` is the placeholder beside a ``_x`` extension list: left to pydantic)."""
    if type(v) is not list:
        if isinstance(v, dict | str | int | float):
            raise _Invalid("list_type", "Input should be a valid list")
        raise _Defer("type", f"{type(v).__name__} where a list belongs")
    for i, x in enumerate(v):
        try:
            if x is None:
                if nulls:
                    raise _Defer("null", "null in a list of primitives")
                raise _Invalid("list_type", "None is not allowed as an element of a list")
            item(x)
        except _Problem as e:
            e.loc.append(i)
            raise


def _known_names(model: Any) -> frozenset[str]:
    names = set(model.model_fields)
    names.update(f.alias for f in model.model_fields.values() if f.alias)
    names.update(("resourceType", "resource_type"))
    return frozenset(names)


@lru_cache(maxsize=1)
def _specs() -> dict[str, _Spec]:
    from fhir.resources.R4B import get_fhir_model_class
    from fhir.resources.R4B.observation import (
        ObservationComponent,
        ObservationReferenceRange,
    )
    from fhir_core.utils import is_list_type, is_primitive_type

    models: dict[str, Any] = {
        name: get_fhir_model_class(name)
        for name in (
            "Observation",
            "Extension",
            "Coding",
            "CodeableConcept",
            "Reference",
            "Identifier",
            "Period",
            "Quantity",
            "Range",
            "Ratio",
            "Annotation",
            "Meta",
            "Narrative",
        )
    }
    models["ObservationComponent"] = ObservationComponent
    models["ObservationReferenceRange"] = ObservationReferenceRange
    specs = {name: _Spec(name) for name in models}

    def obj(name: str) -> Checker:
        return partial(_object, specs[name])

    def many(check: Checker) -> Checker:
        return partial(_list, check)

    extension, coding, concept = obj("Extension"), obj("Coding"), obj("CodeableConcept")
    reference, identifier, period = obj("Reference"), obj("Identifier"), obj("Period")
    quantity, range_, ratio = obj("Quantity"), obj("Range"), obj("Ratio")
    extensions, concepts, references = many(extension), many(concept), many(reference)
    element = {"id": _string, "extension": extensions}
    backbone = {**element, "modifierExtension": extensions}

    specs["Extension"].fields = {
        **element,
        "url": _any_text,
        "valueBoolean": _boolean,
        "valueCanonical": _any_text,
        "valueCode": _code,
        "valueCodeableConcept": concept,
        "valueCoding": coding,
        "valueDateTime": _datetime,
        "valueDecimal": _decimal,
        "valueId": _id,
        "valueIdentifier": identifier,
        "valueInstant": _instant,
        "valueInteger": _integer,
        "valueMarkdown": _any_text,
        "valuePeriod": period,
        "valueQuantity": quantity,
        "valueRange": range_,
        "valueRatio": ratio,
        "valueReference": reference,
        "valueString": _string,
        "valueUri": _any_text,
    }
    specs["Extension"].required_primitives = ("url",)
    specs["Coding"].fields = {
        **element,
        "system": _any_text,
        "version": _string,
        "code": _code,
        "display": _string,
        "userSelected": _boolean,
    }
    specs["CodeableConcept"].fields = {**element, "coding": many(coding), "text": _string}
    specs["Reference"].fields = {
        **element,
        "reference": _string,
        "type": _any_text,
        "identifier": identifier,
        "display": _string,
    }
    specs["Identifier"].fields = {
        **element,
        "use": _code,
        "type": concept,
        "system": _any_text,
        "value": _string,
        "period": period,
        "assigner": reference,
    }
    specs["Period"].fields = {**element, "start": _datetime, "end": _datetime}
    specs["Quantity"].fields = {
        **element,
        "value": _decimal,
        "comparator": _code,
        "unit": _string,
        "system": _any_text,
        "code": _code,
    }
    specs["Range"].fields = {**element, "low": quantity, "high": quantity}
    specs["Ratio"].fields = {**element, "numerator": quantity, "denominator": quantity}
    specs["Annotation"].fields = {
        **element,
        "authorReference": reference,
        "authorString": _string,
        "time": _datetime,
        "text": _any_text,
    }
    specs["Annotation"].required_primitives = ("text",)
    specs["Meta"].fields = {
        **element,
        "versionId": _id,
        "lastUpdated": _instant,
        "source": _any_text,
        "profile": partial(_list, _any_text, nulls=True),
        "security": many(coding),
        "tag": many(coding),
    }
    specs["Narrative"].fields = {**element, "status": _code, "div": _any_text}
    specs["Narrative"].required_primitives = ("div", "status")
    values: dict[str, Checker] = {
        "valueQuantity": quantity,
        "valueCodeableConcept": concept,
        "valueString": _string,
        "valueBoolean": _boolean,
        "valueInteger": _integer,
        "valueRange": range_,
        "valueRatio": ratio,
        "valueDateTime": _datetime,
        "valuePeriod": period,
    }
    reference_range = many(obj("ObservationReferenceRange"))
    specs["ObservationReferenceRange"].fields = {
        **backbone,
        "low": quantity,
        "high": quantity,
        "type": concept,
        "appliesTo": concepts,
        "age": range_,
        "text": _string,
    }
    specs["ObservationComponent"].fields = {
        **backbone,
        "code": concept,
        **values,
        "dataAbsentReason": concept,
        "interpretation": concepts,
        "referenceRange": reference_range,
    }
    specs["ObservationComponent"].required = ("code",)
    specs["Observation"].fields = {
        "resourceType": _any_text,  # checked first, as fhir.resources does (see _resource_type)
        "id": _id,
        "meta": obj("Meta"),
        "implicitRules": _any_text,
        "language": _code,
        "text": obj("Narrative"),
        **{k: v for k, v in backbone.items() if k != "id"},
        "identifier": many(identifier),
        "basedOn": references,
        "partOf": references,
        "status": _code,
        "category": concepts,
        "code": concept,
        "subject": reference,
        "focus": references,
        "encounter": reference,
        "effectiveDateTime": _datetime,
        "effectivePeriod": period,
        "effectiveInstant": _instant,
        "issued": _instant,
        "performer": references,
        **values,
        "dataAbsentReason": concept,
        "interpretation": concepts,
        "note": many(obj("Annotation")),
        "bodySite": concept,
        "method": concept,
        "specimen": reference,
        "device": reference,
        "referenceRange": reference_range,
        "hasMember": references,
        "derivedFrom": references,
        "component": many(obj("ObservationComponent")),
    }
    specs["Observation"].typed_keys = ("resource_type",)  # resourceType: _resource_type
    specs["Observation"].required = ("code",)
    specs["Observation"].required_primitives = ("status",)

    for name, model in models.items():
        spec = specs[name]
        spec.known = _known_names(model)
        unknown = set(spec.fields) - set(model.model_fields) - {"resourceType"}
        if unknown:  # a fhir.resources upgrade renamed something: fail loudly, never guess
            raise RuntimeError(f"fast validator: {name} has no element(s) {sorted(unknown)}")
        groups = model.get_one_of_many_fields(None)  # an instance method that ignores self
        spec.choices = tuple(frozenset(g) for g in groups.values())
        spec.element_lists = tuple(
            n
            for n, f in model.model_fields.items()
            if is_list_type(f) and not is_primitive_type(f) and not n.endswith("__ext")
        )
        required = tuple(n for n, f in model.model_fields.items() if f.is_required())
        primitives = tuple(n for n, _ext in model.get_required_fields(None))
        if (set(required), set(primitives)) != (set(spec.required), set(spec.required_primitives)):
            raise RuntimeError(f"fast validator: {name} requires {required} and {primitives}")
    return specs


def _expression(loc: list[str | int]) -> str:
    out = "Observation"
    for part in reversed(loc):
        out += f"[{part}]" if isinstance(part, int) else f".{part}"
    return out


def check_observation(resource: Any) -> FastResult:
    """The fast verdict on one parsed JSON Observation (see the module docstring)."""
    spec = _specs()["Observation"]
    try:
        _resource_type(resource)
        _object(spec, resource)
    except _Invalid as exc:
        return FastResult("reject", _expression(exc.loc), exc.code, exc.message)
    except _Defer as exc:
        return FastResult("defer", _expression(exc.loc), exc.code, exc.message)
    except RecursionError:  # absurdly deep nesting: let fhir.resources decide
        return FastResult("defer", "Observation", "recursion", "nested too deeply")
    return FastResult("accept")


def accepts(resource: Any) -> bool:
    """True when ``fhir.resources`` would accept this Observation, decided without it."""
    try:
        _resource_type(resource)
        _object(_specs()["Observation"], resource)
    except (_Problem, RecursionError):
        return False
    return True
