"""Ingest orchestration: adapter → mapping → FHIR Observation → store, one transaction per
incoming message or file, with a Provenance for the batch.

Idempotent Receiver: a message id seen before from the same source changes nothing; each
Observation carries its idempotency key as ``Observation.identifier`` (enforced unique by the
store), so a re-sent item is a duplicate and a changed one a new version. Nothing is dropped
silently: every item that does not become an Observation is counted with its reason.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

import orjson
from sqlalchemy import insert, select

from adapters.base import (
    DIAG_PARSE_ERROR,
    AdapterError,
    AdapterResult,
    DeviceRef,
    Diagnostic,
    IngestMeta,
    Measurement,
    PatientRef,
    QuestionnaireAnswers,
)
from adapters.registry import UnknownAdapter, get_adapter
from interop.fhir.dates import format_instant, now_utc, to_micros
from interop.fhir.outcome import Issue, operation_outcome
from interop.mapping import (
    MappingSet,
    build_observation,
    build_questionnaire_response,
    observation_identifier,
)
from interop.patients import resolve
from interop.routing.rules import observations_created, router_for
from interop.services import Services
from interop.store.repository import DuplicateIdentifier, WriteTx, new_id
from interop.store.schema import (
    ingest_message_table,
    quarantine_table,
    resource_table,
    unique_identifier_table,
)

log = logging.getLogger("interop.pipeline")

QUESTIONNAIRE_KEY_SYSTEM = "urn:dho-interop:questionnaire-response-key"
CHANGE_STATUSES = frozenset({"amended", "corrected", "entered-in-error"})
_COMPARED = (
    "status",
    "code",
    "valueQuantity",
    "valueString",
    "component",
    "effectiveDateTime",
    "effectivePeriod",
    "dataAbsentReason",
)
"""What makes a re-sent measurement the same one (triage-derived elements are not compared)."""


@dataclass
class IngestReport:
    adapter: str
    source: str
    message_id: str | None = None
    items_seen: int = 0
    created: int = 0
    duplicate: int = 0
    updated: int = 0
    quarantined: int = 0
    rejected: int = 0
    duplicate_message: bool = False
    provenance: str | None = None
    mapping_version: str | None = None
    diagnostics: list[dict[str, Any]] = field(default_factory=list)
    resources: list[str] = field(default_factory=list)
    """References of the Observations/QuestionnaireResponses created or updated."""

    def add(self, d: Diagnostic) -> None:
        self.diagnostics.append({k: v for k, v in asdict(d).items() if v is not None})

    @property
    def ok(self) -> bool:
        return self.rejected == 0

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["resources"] = self.resources[:1000]
        return data

    def operation_outcome(self) -> dict[str, Any]:
        issues = [
            Issue(
                "information",
                "informational",
                f"{self.adapter}: created {self.created}, updated {self.updated}, "
                f"duplicate {self.duplicate}, quarantined {self.quarantined}, "
                f"rejected {self.rejected} of {self.items_seen} items"
                + (" (message already processed)" if self.duplicate_message else ""),
            )
        ]
        for d in self.diagnostics:
            sev = d.get("severity", "error")
            issues.append(
                Issue(
                    "error" if sev == "fatal" else sev,
                    "processing" if sev in ("error", "fatal") else "informational",
                    f"{d.get('code')}: {d.get('message')}",
                    (d["location"],) if d.get("location") else (),
                    details_code=d.get("code"),
                    details_system="https://dho-interop.no/fhir/CodeSystem/ingest-diagnostic",
                )
            )
        return operation_outcome(issues)


class IngestRejected(Exception):
    """The input as a whole could not be read; nothing was stored."""

    def __init__(self, report: IngestReport):
        super().__init__("; ".join(d.get("message", "") for d in report.diagnostics))
        self.report = report


def _logical_subject(ref: PatientRef) -> dict[str, Any]:
    """A subject by identifier only, for an item waiting in quarantine."""
    return {"identifier": {"system": ref.system, "value": ref.value}}


def _comparable(obs: dict[str, Any], key: str) -> Any:
    value = obs.get(key)
    if key == "component" and isinstance(value, list):
        return [
            {k: v for k, v in c.items() if k not in ("interpretation", "referenceRange")}
            for c in value
        ]
    return value


def _same_content(existing: dict[str, Any], new: dict[str, Any]) -> bool:
    return all(_comparable(existing, k) == _comparable(new, k) for k in _COMPARED)


def _questionnaire_key(q: QuestionnaireAnswers) -> tuple[str, str]:
    if q.source_id:
        return q.source_id
    h = hashlib.sha256(
        "|".join(
            [q.patient.system, q.patient.value, q.questionnaire, q.authored.isoformat()]
        ).encode()
    ).hexdigest()
    return QUESTIONNAIRE_KEY_SYSTEM, h


class IngestPipeline:
    def __init__(self, services: Services, mappings: MappingSet | None = None) -> None:
        self.services = services
        self.mappings = mappings or MappingSet.load(services.settings.mappings_dir)

    # ---- entry points --------------------------------------------------------------------
    def ingest(self, adapter_name: str, data: bytes, meta: IngestMeta) -> IngestReport:
        report = IngestReport(adapter=adapter_name, source=meta.source)
        try:
            adapter = get_adapter(adapter_name)
        except UnknownAdapter as exc:
            report.add(Diagnostic("fatal", "unknown-adapter", str(exc)))
            raise IngestRejected(report) from None
        try:
            result = adapter.parse(data, meta)
        except AdapterError as exc:
            report.add(Diagnostic("fatal", exc.code or DIAG_PARSE_ERROR, str(exc), exc.location))
            report.rejected = 1
            raise IngestRejected(report) from None
        return self.ingest_result(adapter_name, result, meta)

    def ingest_result(
        self, adapter_name: str, result: AdapterResult, meta: IngestMeta
    ) -> IngestReport:
        report = IngestReport(
            adapter=adapter_name,
            source=meta.source,
            message_id=result.message_id,
            items_seen=result.items_seen or (len(result.measurements) + len(result.questionnaires)),
            mapping_version=self.mappings.version,
        )
        for d in result.diagnostics:
            report.add(d)
            if d.severity in ("error", "fatal"):
                report.rejected += 1
        now = now_utc()
        store = self.services.store
        for attempt in range(3):
            try:
                with store.write() as tx:
                    tx.context["ingest"] = report
                    tx.context["triage"] = True
                    self._ingest_in_tx(tx, adapter_name, result, meta, report, now)
                    router_for(self.services).route_pending(tx)
                break
            except DuplicateIdentifier:
                # a concurrent writer stored the same item between our check and our insert:
                # run again; the second pass sees it as a duplicate
                if attempt == 2:
                    raise
                report = IngestReport(
                    adapter=adapter_name,
                    source=meta.source,
                    message_id=result.message_id,
                    items_seen=report.items_seen,
                    mapping_version=self.mappings.version,
                )
        return report

    # ---- the transaction ------------------------------------------------------------------
    def _ingest_in_tx(
        self,
        tx: WriteTx,
        adapter_name: str,
        result: AdapterResult,
        meta: IngestMeta,
        report: IngestReport,
        now: datetime,
    ) -> None:
        conn = tx.conn
        if result.message_id:
            seen = conn.execute(
                select(ingest_message_table.c.report).where(
                    ingest_message_table.c.source == meta.source,
                    ingest_message_table.c.message_id == result.message_id,
                )
            ).first()
            if seen is not None:
                report.duplicate_message = True
                report.duplicate = len(result.measurements) + len(result.questionnaires)
                report.rejected = 0
                report.diagnostics = [
                    {
                        "severity": "information",
                        "code": "duplicate-message",
                        "message": f"message {result.message_id} from {meta.source} "
                        "was processed before; nothing changed",
                    }
                ]
                return
        patients: dict[PatientRef, tuple[str | None, str | None, str | None]] = {}
        devices: dict[DeviceRef, str | None] = {}
        changed: list[str] = []
        for dev in result.devices:
            devices[dev] = self._device(tx, dev)
        pending: dict[tuple[str, str], dict[str, Any]] = {}
        for m in result.measurements:
            built = self._store_measurement(
                tx, m, meta, adapter_name, report, now, patients, devices
            )
            if built is None:
                continue
            obs, identifier = built
            if identifier in pending:
                if _same_content(pending[identifier], obs):
                    report.duplicate += 1
                    continue
                # the same item twice in one message with different content: the later wins
                report.updated += 1
            pending[identifier] = obs
        changed.extend(self._store_observations(tx, pending, report))
        for q in result.questionnaires:
            ref = self._store_questionnaire(tx, q, meta, adapter_name, report, now, patients)
            if ref:
                changed.append(ref)
        if changed:
            prov = self._provenance(tx, changed, adapter_name, meta, now)
            report.provenance = prov
        report.resources = changed
        if result.message_id:
            conn.execute(
                insert(ingest_message_table).values(
                    source=meta.source,
                    message_id=result.message_id,
                    received=to_micros(now),
                    adapter=adapter_name,
                    report=orjson.dumps(report.to_json()),
                )
            )

    def _patient(
        self,
        tx: WriteTx,
        ref: PatientRef,
        cache: dict[PatientRef, tuple[str | None, str | None, str | None]],
    ) -> tuple[str | None, str | None, str | None]:
        hit = cache.get(ref)
        if hit is None:
            res = resolve(tx.conn, ref)
            hit = cache[ref] = (res.patient_id, res.reason_code, res.reason)
        return hit

    def _device(self, tx: WriteTx, dev: DeviceRef) -> str | None:
        if not (dev.identifier_system and dev.identifier_value):
            return None
        existing = self.services.store.find_by_identifier(
            "Device", dev.identifier_system, dev.identifier_value, tx.conn
        )
        if existing:
            return f"Device/{existing}"
        resource: dict[str, Any] = {
            "resourceType": "Device",
            "identifier": [{"system": dev.identifier_system, "value": dev.identifier_value}],
            "status": "active",
        }
        if dev.manufacturer:
            resource["manufacturer"] = dev.manufacturer
        if dev.model:
            resource["modelNumber"] = dev.model
        if dev.serial:
            resource["serialNumber"] = dev.serial
        if dev.display:
            resource["deviceName"] = [{"name": dev.display, "type": "user-friendly-name"}]
        if dev.type:
            coding = {"system": dev.type.system, "code": dev.type.code}
            if dev.type.display:
                coding["display"] = dev.type.display
            resource["type"] = {"coding": [coding]}
        stored = tx.create(resource)
        return stored.reference

    def _store_measurement(
        self,
        tx: WriteTx,
        m: Measurement,
        meta: IngestMeta,
        adapter_name: str,
        report: IngestReport,
        now: datetime,
        patients: dict[PatientRef, tuple[str | None, str | None, str | None]],
        devices: dict[DeviceRef, str | None],
    ) -> tuple[dict[str, Any], tuple[str, str]] | None:
        outcome = self.mappings.map(m, now=now)
        for d in outcome.diagnostics:
            report.add(d)
        if outcome.mapped is None:
            report.rejected += 1
            return None
        identifier = observation_identifier(m)
        device_ref = None
        if m.device is not None:
            if m.device not in devices:
                devices[m.device] = self._device(tx, m.device)
            device_ref = devices[m.device]
        pid, reason_code, reason = self._patient(tx, m.patient, patients)
        if pid is None:
            if reason_code == "invalid-identifier":
                report.add(Diagnostic("error", reason_code, reason or "", m.location))
                report.rejected += 1
                return None
            obs = build_observation(
                outcome.mapped,
                patient_reference="Patient/unresolved",
                identifier=identifier,
                issued=now,
                device_reference=device_ref,
                status=m.status,
            )
            obs["subject"] = _logical_subject(m.patient)
            self._quarantine(
                tx,
                obs,
                m.patient,
                identifier,
                meta,
                adapter_name,
                report,
                now,
                reason_code,
                reason,
                m.location,
            )
            return None
        obs = build_observation(
            outcome.mapped,
            patient_reference=f"Patient/{pid}",
            identifier=identifier,
            issued=now,
            device_reference=device_ref,
            status=m.status,
        )
        return obs, identifier

    def _store_observations(
        self, tx: WriteTx, pending: dict[tuple[str, str], dict[str, Any]], report: IngestReport
    ) -> list[str]:
        """Create the new Observations in bulk; compare and version the ones seen before."""
        if not pending:
            return []
        existing: dict[tuple[str, str], str] = {}
        by_system: dict[str, list[str]] = {}
        for system, value in pending:
            by_system.setdefault(system, []).append(value)
        t = unique_identifier_table
        for system, values in by_system.items():
            for i in range(0, len(values), 500):
                for row in tx.conn.execute(
                    select(t.c.value, t.c.res_id).where(
                        t.c.res_type == "Observation",
                        t.c.system == system,
                        t.c.value.in_(values[i : i + 500]),
                    )
                ):
                    existing[(system, row.value)] = row.res_id
        changed: list[str] = []
        new = [(obs, None) for ident, obs in pending.items() if ident not in existing]
        if new:
            stored = tx.create_many(new, validate=False)  # type: ignore[arg-type]
            report.created += len(stored)
            changed.extend(s.reference for s in stored)
            subjects = (obs["subject"]["reference"] for obs, _ in new)
            observations_created(tx, zip(subjects, (s.reference for s in stored), strict=True))
        seen = [(ident, existing[ident]) for ident in pending if ident in existing]
        current: dict[str, dict[str, Any]] = {}
        r = resource_table
        ids = [rid for _, rid in seen]
        for i in range(0, len(ids), 500):
            for row in tx.conn.execute(
                select(r.c.res_id, r.c.content).where(
                    r.c.res_type == "Observation", r.c.res_id.in_(ids[i : i + 500])
                )
            ):
                current[row.res_id] = orjson.loads(row.content)
        for ident, rid in seen:
            obs = pending[ident]
            old = current.get(rid)
            if old is not None and _same_content(old, obs):
                report.duplicate += 1
                continue
            ref = self._upsert(tx, "Observation", obs, ident, report)
            if ref:
                changed.append(ref)
        return changed

    def _upsert(
        self,
        tx: WriteTx,
        rtype: str,
        resource: dict[str, Any],
        identifier: tuple[str, str],
        report: IngestReport,
    ) -> str | None:
        store = self.services.store
        existing_id = store.find_by_identifier(rtype, identifier[0], identifier[1], tx.conn)
        if existing_id is None and rtype != "Observation":
            from interop.store.schema import token_table

            existing_id = tx.conn.execute(
                select(token_table.c.res_id).where(
                    token_table.c.res_type == rtype,
                    token_table.c.param == "identifier",
                    token_table.c.system == identifier[0],
                    token_table.c.code == identifier[1],
                )
            ).scalar()
        if existing_id is None:
            stored = tx.create(resource, validate=rtype != "Observation")
            report.created += 1
            return stored.reference
        current = tx.get(rtype, existing_id)
        assert current is not None
        old = current.json()
        if _same_content(old, resource):
            report.duplicate += 1
            return None
        if resource.get("status") not in CHANGE_STATUSES and rtype == "Observation":
            resource["status"] = "amended"
        resource["id"] = existing_id
        stored, _ = tx.update(rtype, existing_id, resource, validate=rtype != "Observation")
        report.updated += 1
        return stored.reference

    def _store_questionnaire(
        self,
        tx: WriteTx,
        q: QuestionnaireAnswers,
        meta: IngestMeta,
        adapter_name: str,
        report: IngestReport,
        now: datetime,
        patients: dict[PatientRef, tuple[str | None, str | None, str | None]],
    ) -> str | None:
        identifier = _questionnaire_key(q)
        pid, reason_code, reason = self._patient(tx, q.patient, patients)
        built = build_questionnaire_response(
            q,
            patient_reference=f"Patient/{pid}" if pid else "Patient/unresolved",
            identifier=identifier,
        )
        if pid is None:
            built["subject"] = _logical_subject(q.patient)
            self._quarantine(
                tx,
                built,
                q.patient,
                identifier,
                meta,
                adapter_name,
                report,
                now,
                reason_code,
                reason,
                q.location,
            )
            return None
        return self._upsert(tx, "QuestionnaireResponse", built, identifier, report)

    def _quarantine(
        self,
        tx: WriteTx,
        resource: dict[str, Any],
        patient: PatientRef,
        identifier: tuple[str, str],
        meta: IngestMeta,
        adapter_name: str,
        report: IngestReport,
        now: datetime,
        reason_code: str | None,
        reason: str | None,
        location: str,
    ) -> None:
        held = tx.conn.execute(
            select(quarantine_table.c.id).where(
                quarantine_table.c.identifier_system == identifier[0],
                quarantine_table.c.identifier_value == identifier[1],
            )
        ).first()
        if held is not None:
            report.duplicate += 1
            return
        tx.conn.execute(
            insert(quarantine_table).values(
                id=new_id(),
                received=to_micros(now),
                source=meta.source,
                adapter=adapter_name,
                reason_code=reason_code or "unknown-patient",
                reason=(reason or "")[:1000],
                patient_system=patient.system,
                patient_value=patient.value,
                identifier_system=identifier[0],
                identifier_value=identifier[1],
                resource=orjson.dumps(resource),
                status="held",
                mapping_version=self.mappings.version[:64],
            )
        )
        report.quarantined += 1
        report.add(
            Diagnostic(
                "warning",
                reason_code or "unknown-patient",
                f"quarantined: {reason}",
                location,
            )
        )

    def _provenance(
        self,
        tx: WriteTx,
        targets: list[str],
        adapter_name: str,
        meta: IngestMeta,
        now: datetime,
    ) -> str:
        prov: dict[str, Any] = {
            "resourceType": "Provenance",
            "target": [{"reference": t} for t in targets],
            "recorded": format_instant(now),
            "activity": {
                "coding": [
                    {
                        "system": "http://terminology.hl7.org/CodeSystem/v3-DataOperation",
                        "code": "CREATE",
                    }
                ]
            },
            "agent": [
                {
                    "type": {
                        "coding": [
                            {
                                "system": "http://terminology.hl7.org/CodeSystem/provenance-participant-type",
                                "code": "assembler",
                            }
                        ]
                    },
                    "who": {"display": f"DHO Interop adapter {adapter_name}"},
                },
                {
                    "type": {
                        "coding": [
                            {
                                "system": "http://terminology.hl7.org/CodeSystem/provenance-participant-type",
                                "code": "author",
                            }
                        ]
                    },
                    "who": {"display": f"source {meta.source}"},
                },
            ],
            "entity": [
                {
                    "role": "source",
                    "what": {
                        "display": f"{meta.filename or 'message'}"
                        + (f" ({meta.content_type})" if meta.content_type else "")
                    },
                },
                {
                    "role": "derivation",
                    "what": {
                        "identifier": {
                            "system": "urn:dho-interop:mapping-version",
                            "value": self.mappings.version,
                        },
                        "display": f"mappings version {self.mappings.version}",
                    },
                },
            ],
        }
        stored = tx.create(prov, validate=False)
        return stored.reference


def release_quarantine(services: Services, mappings: MappingSet | None = None) -> dict[str, int]:
    """Store every held item whose patient can now be resolved (a link or Patient was added)."""
    from interop.store.schema import quarantine_table as q

    counts = {"released": 0, "still_held": 0, "duplicate": 0}
    with services.store.write() as tx:
        tx.context["triage"] = True
        rows = tx.conn.execute(select(q).where(q.c.status == "held")).all()
        cache: dict[PatientRef, str | None] = {}
        for row in rows:
            ref = PatientRef(row.patient_system, row.patient_value)
            if ref not in cache:
                cache[ref] = resolve(tx.conn, ref).patient_id
            pid = cache[ref]
            if pid is None:
                counts["still_held"] += 1
                continue
            resource = orjson.loads(row.resource)
            rtype = resource["resourceType"]
            resource["subject"] = {"reference": f"Patient/{pid}"}
            existing = services.store.find_by_identifier(
                rtype, row.identifier_system, row.identifier_value, tx.conn
            )
            if existing:
                counts["duplicate"] += 1
                rid = existing
            else:
                rid = tx.create(resource, validate=rtype != "Observation").res_id
                counts["released"] += 1
                if rtype == "Observation":
                    observations_created(tx, [(f"Patient/{pid}", f"Observation/{rid}")])
            tx.conn.execute(
                q.update().where(q.c.id == row.id).values(status="released", resource_id=rid)
            )
        router_for(services).route_pending(tx)
    return counts
