"""OperationOutcome: every client error leaves the API as one, with the right 4xx."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

import orjson

IssueSeverity = Literal["fatal", "error", "warning", "information"]


@dataclass(frozen=True, slots=True)
class Issue:
    severity: IssueSeverity
    code: str
    """FHIR issue-type code: invalid, structure, required, value, not-found, conflict, …"""
    diagnostics: str
    expression: tuple[str, ...] = ()
    details_code: str | None = None
    details_system: str | None = None

    def to_json(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "severity": self.severity,
            "code": self.code,
            "diagnostics": self.diagnostics,
        }
        if self.details_code:
            coding: dict[str, str] = {"code": self.details_code}
            if self.details_system:
                coding["system"] = self.details_system
            d["details"] = {"coding": [coding], "text": self.diagnostics}
        if self.expression:
            d["expression"] = list(self.expression)
        return d


@dataclass
class FhirError(Exception):
    """A failure to report to the client as an OperationOutcome."""

    status: int
    issues: list[Issue] = field(default_factory=list)
    headers: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        Exception.__init__(self, self.message)

    @property
    def message(self) -> str:
        return "; ".join(i.diagnostics for i in self.issues)

    def outcome(self) -> dict[str, Any]:
        return operation_outcome(self.issues)

    def __str__(self) -> str:
        return f"{self.status}: {self.message}"


def error(
    status: int,
    code: str,
    diagnostics: str,
    *,
    expression: tuple[str, ...] | list[str] = (),
    severity: IssueSeverity = "error",
    headers: dict[str, str] | None = None,
) -> FhirError:
    return FhirError(
        status, [Issue(severity, code, diagnostics, tuple(expression))], dict(headers or {})
    )


def invalid_issues(errors: Any) -> list[Issue]:
    """A pydantic (or FastAPI request) validation's errors as issues naming each element."""
    return [
        Issue("error", "invalid", f"{'.'.join(str(x) for x in e.get('loc', ()))}: {e.get('msg')}")
        for e in errors
    ]


def operation_outcome(issues: list[Issue]) -> dict[str, Any]:
    if not issues:
        issues = [Issue("information", "informational", "All OK")]
    return {"resourceType": "OperationOutcome", "issue": [i.to_json() for i in issues]}


def outcome_bytes(issues: list[Issue]) -> bytes:
    return orjson.dumps(operation_outcome(issues))
