"""VKP DHO journaling: when a deviation is closed (its Task completed), the alert is journaled
into the municipal EPJ as a VKP ``document`` Bundle — Composition (the follow-up note),
DetectedIssue (the alert, severity, the measurement), the Observation(s), the Patient and the
author organisation — through the outbox to the Endpoints subscribed with ``vkp-dho`` (routing
rule ``closed-deviation-to-municipal-epj``). Codes and texts: ``mappings/national/vkp-dho.yaml``.

The care core raises ``DeviationClosed`` when a person completes a deviation Task; routing
subscribes to it and routes a completed one as ``deviation.closed`` (``interop.routing.rules``),
whose payload :func:`journal_payloads` builds.
"""

from __future__ import annotations

import html
import uuid
from functools import lru_cache
from importlib.resources import files
from typing import Any

import orjson
import yaml
from sqlalchemy import Connection

from interop.fhir.dates import format_instant, now_utc
from interop.messaging.addressbook import AddressError, resource_json
from interop.messaging.pmd import municipality_of, pmd_subject, strip_local_references
from interop.store.repository import FhirStore

DEVIATION_CLOSED = "deviation.closed"
_NS = uuid.UUID("0c7d0a34-7b0a-5b53-a7c4-3f3b8e9d2a61")


@lru_cache(maxsize=1)
def mapping() -> dict[str, Any]:
    return dict(yaml.safe_load((files("mappings") / "national" / "vkp-dho.yaml").read_text()))


def _urn(kind: str, key: str) -> str:
    return f"urn:uuid:{uuid.uuid5(_NS, f'{kind}|{key}')}"


def _coding(entry: dict[str, Any]) -> dict[str, Any]:
    return {k: entry[k] for k in ("system", "code", "display") if k in entry}


def journal_bundle(store: FhirStore, conn: Connection, task_ref: str) -> dict[str, Any]:
    """The VKP DHO document Bundle for a closed deviation Task (:class:`AddressError` when the
    patient cannot be identified as VKP requires)."""
    m = mapping()
    task = resource_json(store, conn, task_ref)
    if task is None:
        raise AddressError(f"{task_ref} not found")
    patient_ref = (task.get("for") or {}).get("reference")
    patient = resource_json(store, conn, patient_ref)
    if patient is None:
        raise AddressError(f"{task_ref}: patient {patient_ref} not found")
    subject = pmd_subject(patient)  # by fødselsnummer/D-nummer, with the name
    org = municipality_of(store, conn, patient)
    patient_urn, org_urn = _urn("patient", patient_ref or ""), _urn("org", org["id"])
    issue_urn = _urn("issue", task_ref)
    patient_copy = strip_local_references(
        {
            "resourceType": "Patient",
            "identifier": [subject["identifier"]],
            "name": patient.get("name", []),
        }
    )
    org_copy = strip_local_references(
        {
            "resourceType": "Organization",
            "identifier": org.get("identifier", []),
            "name": org.get("name"),
        }
    )
    observations = []
    for ref in [(task.get("focus") or {}).get("reference")]:
        obs = resource_json(store, conn, ref) if ref and ref.startswith("Observation/") else None
        if obs is None:
            continue
        copy = {k: v for k, v in obs.items() if k not in ("id", "meta", "text", "contained")}
        copy["subject"] = {"reference": patient_urn, "display": subject.get("display")}
        # the urn: subject stays; references to this server's resources go (device …)
        observations.append((_urn("obs", str(ref)), strip_local_references(copy)))
    codes = {c.get("code") for c in (task.get("code") or {}).get("coding", [])}
    alert = next(v for k, v in m["detected_issue"]["codes"].items() if k in codes)
    alert_coding = {"system": m["detected_issue"]["system"], **alert}
    priority = str(task.get("priority", ""))
    now = format_instant(now_utc())
    closed = (task.get("executionPeriod") or {}).get("end") or task.get("lastModified") or now
    notes = [n.get("text", "") for n in task.get("note", []) if n.get("text")]
    outcome = next(
        (
            o["valueCodeableConcept"].get("text")
            for o in task.get("output", [])
            if o.get("valueCodeableConcept")
        ),
        None,
    )
    lines = [task.get("description") or "", *notes] + ([f"Utfall: {outcome}"] if outcome else [])
    div = "".join(f"<p>{html.escape(line)}</p>" for line in lines if line)
    issue: dict[str, Any] = {
        "resourceType": "DetectedIssue",
        "meta": {"profile": [m["detected_issue"]["profile"]]},
        "status": "final",
        "code": {"coding": [alert_coding], "text": alert["display"]},
        "patient": {"reference": patient_urn},
        "identifiedDateTime": task.get("authoredOn") or closed,
        "detail": task.get("description") or alert["display"],
    }
    if priority in m["detected_issue"]["severity"]:
        issue["severity"] = m["detected_issue"]["severity"][priority]
    if observations:
        issue["implicated"] = [{"reference": urn} for urn, _ in observations]
    author: list[dict[str, Any]] = [{"reference": org_urn}]
    owner = task.get("owner") or {}
    if owner.get("identifier") or owner.get("display"):
        author.insert(0, {k: owner[k] for k in ("identifier", "display") if k in owner})
    zone = m["zone_text"].get(priority, "")
    c = m["composition"]
    composition_subject: dict[str, Any] = {"reference": patient_urn}
    if subject.get("display"):
        composition_subject["display"] = subject["display"]
    composition: dict[str, Any] = {
        "resourceType": "Composition",
        "meta": {"profile": [c["profile"]]},
        "status": "final",
        "type": {"coding": [alert_coding], "text": alert["display"]},
        "category": [{"coding": [_coding(c["category"])]}],
        "subject": composition_subject,
        "date": closed,
        "author": author,
        "title": f"{c['title']}: {zone} {alert['display'].lower()}".strip(),
        "event": [{"code": [{"coding": [_coding(c["event"])]}], "period": {"end": closed}}],
        "section": [
            {
                "title": c["section_title"],
                "code": {"coding": [_coding(c["section"])]},
                "text": {
                    "status": "generated",
                    "div": f'<div xmlns="http://www.w3.org/1999/xhtml">{div}</div>',
                },
                "entry": [{"reference": issue_urn}] + [{"reference": u} for u, _ in observations],
            }
        ],
    }
    entries = [
        (_urn("composition", task_ref), composition),
        (issue_urn, issue),
        *observations,
        (patient_urn, patient_copy),
        (org_urn, org_copy),
    ]
    return {
        "resourceType": "Bundle",
        "identifier": {
            "system": m["bundle_identifier_system"],
            "value": str(uuid.uuid5(_NS, task_ref + "|" + closed)),
        },
        "type": "document",
        "timestamp": now,
        "entry": [{"fullUrl": u, "resource": r} for u, r in entries],
    }


def journal_payloads(store: FhirStore, conn: Connection, task_ref: str | None) -> list[bytes]:
    """The journal document of the closed deviation ``Task/<id>`` (none without one)."""
    if not task_ref:
        return []
    return [orjson.dumps(journal_bundle(store, conn, task_ref))]
