"""Validation at the edge: FHIR R4 (4.0.1) structure via the ``fhir.resources.R4B`` models,
plus the rules the models do not know (identifier check digits, ids, vital-signs invariants).

Observations in the shapes the product stores are checked by
:mod:`interop.fhir.fast_observation` instead, which accepts exactly what the models accept at
a twentieth of the cost; anything else, and every refusal, still goes through the models.

Validation happens once, on write. Reads serve the stored bytes as they are.
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Any

from fhir.resources.R4B import get_fhir_model_class
from pydantic import ValidationError

from interop.fhir import fast_observation, json_rules
from interop.fhir.outcome import FhirError, Issue
from interop.fhir.references import wrong_target_issues
from interop.fhir.searchparams import supported_types
from interop.identifiers import check_identifier

SUPPORTED_TYPES: tuple[str, ...] = tuple(supported_types())
"""Every type the store serves: the product's own (``search-parameters.yaml``) and every other
FHIR R4 resource type the R4B models know (:mod:`interop.fhir.r4_definitions`)."""

ID_PATTERN = re.compile(r"^[A-Za-z0-9\-.]{1,64}$")


@lru_cache(maxsize=1)
def _required_bindings() -> dict[str, dict[str, frozenset[str]]]:
    """resource type → element → allowed codes (fhir_profiles/required-bindings.yaml)."""
    from importlib.resources import files

    import yaml

    data = yaml.safe_load((files("fhir_profiles") / "required-bindings.yaml").read_text("utf-8"))
    out: dict[str, dict[str, frozenset[str]]] = {}
    for path, codes in data["bindings"].items():
        rtype, element = path.split(".", 1)
        out.setdefault(rtype, {})[element] = frozenset(str(c) for c in codes)
    return out


@lru_cache(maxsize=64)
def _model(resource_type: str) -> Any:
    return get_fhir_model_class(resource_type)


def _expression(resource_type: str, loc: tuple[int | str, ...]) -> str:
    out = resource_type
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part.startswith("function-") or part in ("__root__",):
            continue
        else:
            out += f".{part}"
    return out


def _issues_from(resource_type: str, exc: ValidationError) -> list[Issue]:
    issues: list[Issue] = []
    for err in exc.errors(include_url=False)[:50]:
        loc = tuple(err.get("loc", ()))
        expr = _expression(resource_type, loc)
        msg = err.get("msg", "invalid")
        kind = err.get("type", "")
        code = "required" if kind == "missing" else "structure" if "extra" in kind else "value"
        issues.append(Issue("error", code, f"{expr}: {msg}", (expr,)))
    return issues


def validate_resource(resource: Any, *, expected_type: str | None = None) -> dict[str, Any]:
    """Validate a parsed JSON resource; return it (unchanged) or raise :class:`FhirError` 4xx."""
    if not isinstance(resource, dict):
        raise FhirError(400, [Issue("error", "structure", "the body is not a JSON object")])
    rtype = resource.get("resourceType")
    if not isinstance(rtype, str):
        raise FhirError(
            400, [Issue("error", "required", "resourceType is missing", ("resourceType",))]
        )
    if expected_type is not None and rtype != expected_type:
        raise FhirError(
            400,
            [
                Issue(
                    "error",
                    "invalid",
                    f"resourceType {rtype!r} does not match the endpoint ({expected_type})",
                    ("resourceType",),
                )
            ],
        )
    if rtype not in SUPPORTED_TYPES:
        raise FhirError(
            400,
            [Issue("error", "not-supported", f"resource type {rtype!r} is not supported here")],
        )
    rid = resource.get("id")
    if rid is not None and (not isinstance(rid, str) or not ID_PATTERN.match(rid)):
        raise FhirError(
            400, [Issue("error", "value", f"{rtype}.id {rid!r} is not a valid FHIR id", ("id",))]
        )
    # Observations in the shapes this product stores are checked by a hand-written validator
    # that accepts exactly what the models accept; anything it would refuse, or does not model,
    # goes through fhir.resources, so every refusal reads as it always has.
    # R4 JSON: no null, empty string, array or object; no boolean or number as a string
    issues = json_rules.empty_issues(resource, rtype)
    if issues:
        raise FhirError(422, issues)
    if not (rtype == "Observation" and fast_observation.accepts(resource)):
        issues = json_rules.typed_issues(resource, rtype)
        if issues:
            raise FhirError(422, issues)
        _validate_model(rtype, resource)
    issues = _domain_issues(rtype, resource)
    if issues:
        raise FhirError(422, issues)
    return resource


def _validate_model(rtype: str, resource: dict[str, Any]) -> None:
    """Structure check with the ``fhir.resources.R4B`` model; raises :class:`FhirError` 422."""
    try:
        _model(rtype).model_validate(resource)
    except ValidationError as exc:
        raise FhirError(422, _issues_from(rtype, exc)) from None
    except (ValueError, TypeError) as exc:  # raised by some fhir_core validators directly
        raise FhirError(422, [Issue("error", "value", f"{rtype}: {exc}")]) from None
    except AttributeError as exc:  # fhir_core's url check on a non-string (valueUrl: true)
        raise FhirError(422, [Issue("error", "value", f"{rtype}: invalid value ({exc})")]) from None


def _identifiers(resource: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """The resource's own identifiers and those of logical references (``subject.identifier``)."""
    found: list[tuple[str, dict[str, Any]]] = []
    rtype = resource["resourceType"]
    idents = resource.get("identifier", [])
    for i, ident in enumerate(idents if isinstance(idents, list) else [idents]):
        if isinstance(ident, dict):
            found.append((f"{rtype}.identifier[{i}]", ident))
    for key, value in resource.items():
        if key != "identifier" and isinstance(value, dict):
            ident = value.get("identifier")
            if isinstance(ident, dict):
                found.append((f"{rtype}.{key}.identifier", ident))
    return found


def _domain_issues(rtype: str, resource: dict[str, Any]) -> list[Issue]:
    issues: list[Issue] = []
    for expr, ident in _identifiers(resource):
        system, value = ident.get("system"), ident.get("value")
        if isinstance(system, str) and isinstance(value, str):
            problem = check_identifier(system, value)
            if problem:
                issues.append(
                    Issue(
                        "error",
                        "value",
                        f"{expr} {system}|{value}: {problem}",
                        (expr,),
                        "invalid-identifier",
                    )
                )
    for element, allowed in _required_bindings().get(rtype, {}).items():
        value = resource.get(element)
        if value is not None and str(value) not in allowed:
            expr = f"{rtype}.{element}"
            issues.append(
                Issue(
                    "error",
                    "code-invalid",
                    f"{expr}: {value!r} is not one of {', '.join(sorted(allowed))}",
                    (expr,),
                )
            )
    issues.extend(wrong_target_issues(resource))
    if rtype == "Observation":
        issues.extend(_vital_signs_invariants(resource))
    return issues


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


VS_2_MISSING = (
    "vs-2: Observation.value[x] is missing: a vital sign (category vital-signs) with no "
    "component and no hasMember needs Observation.value[x] or Observation.dataAbsentReason, "
    "whatever its status (for a measurement still to come, status registered: "
    "dataAbsentReason temp-unknown; one that was not taken: not-performed)"
)


def _vital_signs_invariants(obs: dict[str, Any]) -> list[Issue]:
    """R4 vital-signs vs-2/vs-3 for Observations that claim the vital-signs category.

    R4's vital signs profile (``http://hl7.org/fhir/StructureDefinition/vitalsigns``), vs-2:
    "If there is no component or hasMember element then either a value[x] or a data absent
    reason must be present" — ``(component.empty() and hasMember.empty()) implies
    (dataAbsentReason.exists() or value.exists())``, with no exception for a status. vs-3:
    "If there is no a value a data absent reason must be present" on each component. So a
    ``registered`` vital sign without a value is refused too (as the official validator
    does); its sender says why the value is absent. Each issue's ``expression`` names the
    element that is missing."""
    cats = obs.get("category") or []
    is_vs = any(
        c.get("code") == "vital-signs"
        for cat in (cats if isinstance(cats, list) else [cats])
        if isinstance(cat, dict)
        for c in _as_list(cat.get("coding"))
        if isinstance(c, dict)
    )
    if not is_vs:
        return []
    issues: list[Issue] = []
    has_value = any(k.startswith("value") for k in obs) or "dataAbsentReason" in obs
    if not (has_value or obs.get("component") or obs.get("hasMember")):
        issues.append(Issue("error", "invariant", VS_2_MISSING, ("Observation.value[x]",)))
    components = obs.get("component")
    for i, comp in enumerate(components if isinstance(components, list) else []):
        if isinstance(comp, dict) and not (
            any(k.startswith("value") for k in comp) or "dataAbsentReason" in comp
        ):
            where = f"Observation.component[{i}]"
            issues.append(
                Issue(
                    "error",
                    "invariant",
                    f"vs-3: {where}.value[x] is missing: each component of a vital sign needs "
                    f"{where}.value[x] or {where}.dataAbsentReason",
                    (f"{where}.value[x]",),
                )
            )
    return issues
