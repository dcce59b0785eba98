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
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
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
from interop.access.vendor_writes import VendorWriter
from interop.fhir.dates import format_instant, now_utc, to_micros
from interop.fhir.outcome import Issue, operation_outcome
from interop.ingest.source_keys import (
    CONFLICT_STATUS,
    DIAG_IDENTIFIER_CONFLICT,
    conflict_message,
    scoped_key,
)
from interop.mapping import (
    MappingSet,
    build_observation,
    build_questionnaire_response,
    observation_identifier,
)
from interop.metrics import correlation_id, count_ingest
from interop.patients import resolve, resolve_many
from interop.resend import DIAG_MESSAGE_ID_CONFLICT, keep_conflict
from interop.resend import conflict_message as resend_conflict_message
from interop.routing.rules import observations_created
from interop.services import Services
from interop.store.context import Door, Principal, WriteContext
from interop.store.ingest_records import (
    find_identifiers,
    processed_reports,
    record_processed,
    subjects_of,
)
from interop.store.repository import (
    DuplicateIdentifier,
    StagedCreates,
    StoredResource,
    WriteTx,
    new_id,
)
from interop.store.schema import (
    quarantine_table,
    resource_table,
    token_table,
)

log = logging.getLogger("interop.ingest.pipeline")

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


STREAM_CHUNK = 250
"""Creates per write when one message brings many (see ``IngestPipeline._stage``)."""

INGEST_WRITE = WriteContext(None, Door.INGEST)


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
    message_conflict: bool = False
    """Another message with this message's id was processed before: nothing was processed
    (see :mod:`interop.resend`)."""
    message_digest: str | None = None
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


def _record_id(result: AdapterResult) -> str:
    """The id a processed message is recorded under (with its source): the message id, with
    the sender the message names (HL7 v2: the full MSH-3 and MSH-4) when it names one, hashed
    when longer than the record's key holds."""
    assert result.message_id is not None
    if not result.message_sender:
        return result.message_id
    key = f"{result.message_sender}|{result.message_id}"
    return key if len(key) <= 255 else "sha256:" + hashlib.sha256(key.encode()).hexdigest()


def _stored_digest(report: bytes | None) -> str | None:
    """The digest recorded with a processed message (in its report)."""
    if not report:
        return None
    try:
        digest = orjson.loads(report).get("message_digest")
    except (orjson.JSONDecodeError, AttributeError):
        return None
    return digest if isinstance(digest, str) else None


def _resend(batch: _Batch, m: _Message) -> str | None:
    """Whether a message's id was seen (stored, or earlier in the batch): ``None`` no;
    ``duplicate`` a re-send (the same digest, or no digest to compare); ``conflict``
    another message reusing the id; ``again`` recorded before digests were kept — processed
    again, which changes nothing for a true re-send (every item is idempotent)."""
    if not m.result.message_id:
        return None
    key = (m.meta.source, _record_id(m.result))
    if key not in batch.seen_messages:
        return None
    stored, digest = batch.seen_messages[key], m.result.message_digest
    if digest is None or stored == digest:
        return "duplicate"
    return "again" if stored is None else "conflict"


def _refuse_conflict(report: IngestReport, result: AdapterResult, meta: IngestMeta) -> None:
    report.message_conflict = True
    report.rejected = max(1, len(result.measurements) + len(result.questionnaires))
    report.diagnostics = [
        {
            "severity": "error",
            "code": DIAG_MESSAGE_ID_CONFLICT,
            "message": resend_conflict_message(result.message_id or "", meta.source),
            "location": "MSH-10",
        }
    ]


def _subject_id(resource: dict[str, Any]) -> str | None:
    """The Patient id of a resource's subject (``None`` for a subject by identifier)."""
    ref = (resource.get("subject") or {}).get("reference")
    return ref[8:] if isinstance(ref, str) and ref.startswith("Patient/") else None


def _same_content(existing: dict[str, Any], new: dict[str, Any]) -> bool:
    return all(_comparable(existing, k) == _comparable(new, k) for k in _COMPARED)


@contextmanager
def _correlation(cid: str | None) -> Iterator[None]:
    if cid is None:
        yield
        return
    token = correlation_id.set(cid)
    try:
        yield
    finally:
        correlation_id.reset(token)


def _questionnaire_key(q: QuestionnaireAnswers) -> tuple[str, str]:
    if q.source_id:
        return q.source_id
    h = hashlib.sha256(
        "|".join(
            [q.patient.system, q.patient.value, q.questionnaire, q.authored.isoformat()]
        ).encode()
    ).hexdigest()
    return QUESTIONNAIRE_KEY_SYSTEM, h


@dataclass(frozen=True, slots=True)
class IngestItem:
    """One message or file for :meth:`IngestPipeline.ingest_many`."""

    adapter: str
    data: bytes
    meta: IngestMeta
    correlation_id: str | None = None
    """Set as the correlation id while this item is processed and routed (its log lines and
    outbox messages carry it), as a caller of :meth:`IngestPipeline.ingest` would set it."""
    vendor: VendorWriter | None = None
    """The vendor writing it (its limits, see :mod:`interop.access.vendor_writes`); None for
    the follow-up centre, admins and operators."""


@dataclass(slots=True)
class _Message:
    """One message's part of a batch transaction: what it staged and what it caused."""

    adapter: str
    result: AdapterResult
    meta: IngestMeta
    report: IngestReport
    correlation_id: str | None
    vendor: VendorWriter | None
    staged: list[StagedCreates] = field(default_factory=list)
    """Creates built but not yet written (written at the next flush)."""
    unhooked: list[StoredResource] = field(default_factory=list)
    """Creates whose write hooks have not run yet."""
    events: list[Any] = field(default_factory=list)
    created: dict[str, list[str]] = field(default_factory=dict)
    """``observation.created`` notes (patient id → Observation references)."""
    ingest_row: dict[str, Any] | None = None
    conflicts: dict[tuple[str, str], PatientRef] = field(default_factory=dict)
    recorded: bool = False
    """The message's id is recorded already (a message recorded before digests were kept,
    processed again): its record is updated, not inserted."""
    """Patient-scoped keys of items whose source id another patient's item holds."""
    complete: bool = False
    routed: bool = False

    @property
    def large(self) -> bool:
        """Enough measurements to be built and written a chunk at a time (see ``_stage``)."""
        return len(self.result.measurements) >= 2 * STREAM_CHUNK


class _Batch:
    """State shared by the messages of one ingest transaction: look-ups made once for all of
    them, and the creates staged for one insert per table.

    Every message sees what it would see in a transaction of its own (the ones before it in
    the store, none after it): a look-up is answered from what was read at the start plus
    what earlier messages created, and anything that reads the store for real (an update of a
    stored item, a questionnaire) first writes what is staged. Each message's write hooks
    (triage: Tasks and Flags, which never read the Observations) run in message order when the
    message is done; a message whose hooks raised an event is routed, with everything before
    it written, before the next message is looked at (routing a deviation may summarise the
    patient's data). The others are written and routed, each with its own events, at the end.
    """

    def __init__(self, messages: list[_Message]) -> None:
        self.messages = messages
        self.seen_messages: dict[tuple[str, str], str | None] = {}
        """(source, message id) → the digest of the message processed under it (``None``:
        not known, the message was recorded before digests were kept)."""
        self.patients: dict[PatientRef, tuple[str | None, str | None, str | None]] = {}
        self.identifiers: dict[tuple[str, str, str], str] = {}
        """(resource type, system, value) → id, for Devices and Observations: stored or
        created earlier in this batch."""
        self.unwritten: set[str] = set()
        """Ids of staged creates not yet written."""
        self.linked: dict[VendorWriter, set[str]] = {}
        """The patients linked to each vendor writing in this batch (read once)."""
        self.owners: dict[str, str | None] = {}
        """Observation id → the Patient id of its subject, for the Observations in
        ``identifiers`` (see :meth:`IngestPipeline._patient_key`)."""


def _observation_keys(result: AdapterResult) -> list[tuple[str, str]]:
    """The keys a measurement may be stored under: its own, and for a source's id also the
    patient-scoped form (see :mod:`interop.ingest.source_keys`)."""
    keys = []
    for m in result.measurements:
        try:
            keys.append(observation_identifier(m))
        except Exception:  # noqa: BLE001 - the item's own processing reports it
            continue
        if m.source_id:
            keys.append(scoped_key(m.source_id, m.patient))
    return keys


def _device_keys(result: AdapterResult) -> list[tuple[str, str]]:
    devs = list(result.devices) + [m.device for m in result.measurements if m.device is not None]
    return [
        (d.identifier_system, d.identifier_value)
        for d in devs
        if d.identifier_system and d.identifier_value
    ]


class IngestPipeline:
    def __init__(self, services: Services, mappings: MappingSet | None = None) -> None:
        self.services = services
        self.mappings = mappings or MappingSet.load(services.settings.mappings_dir)

    # ---- entry points --------------------------------------------------------------------
    def _parse(self, adapter_name: str, data: bytes, meta: IngestMeta) -> AdapterResult:
        report = IngestReport(adapter=adapter_name, source=meta.source)
        try:
            adapter = get_adapter(adapter_name)
        except UnknownAdapter as exc:
            report.add(Diagnostic("fatal", "unknown-adapter", str(exc)))
            count_ingest("unknown", {"rejected": 1})  # the name is the caller's: not a label
            raise IngestRejected(report) from None
        try:
            return adapter.parse(data, meta)
        except AdapterError as exc:
            report.add(Diagnostic("fatal", exc.code or DIAG_PARSE_ERROR, str(exc), exc.location))
            report.rejected = 1
            count_ingest(adapter_name, {"rejected": 1})
            raise IngestRejected(report) from None

    def ingest(
        self,
        adapter_name: str,
        data: bytes,
        meta: IngestMeta,
        *,
        vendor: VendorWriter | None = None,
        actor: Principal | None = None,
    ) -> IngestReport:
        """Parse and store one message or file; :class:`IngestRejected` when it cannot be
        read, or when it reuses the id of another message processed before (it is then kept
        for an operator, see :mod:`interop.resend`). ``vendor``: the vendor writing (its
        limits apply), None for the follow-up centre, admins and operators. ``actor``: who
        sends it (the writes are theirs: guarded by the access policy, audited per patient);
        None for the service's own channels (MLLP, folders)."""
        report = self.ingest_result(
            adapter_name, self._parse(adapter_name, data, meta), meta, vendor=vendor, actor=actor
        )
        return self._refused_if_conflict(adapter_name, data, meta, report)

    def _refused_if_conflict(
        self, adapter_name: str, data: bytes, meta: IngestMeta, report: IngestReport
    ) -> IngestReport:
        if not report.message_conflict:
            return report
        with self.services.engine.begin() as conn:
            keep_conflict(
                conn,
                channel="ingest",
                sender=meta.source,
                message_id=report.message_id or "",
                adapter=adapter_name,
                raw=data,
                report=orjson.dumps(report.to_json()),
            )
        raise IngestRejected(report)

    def ingest_result(
        self,
        adapter_name: str,
        result: AdapterResult,
        meta: IngestMeta,
        *,
        vendor: VendorWriter | None = None,
        actor: Principal | None = None,
    ) -> IngestReport:
        return self._run([(adapter_name, result, meta, None, vendor)], actor)[0]

    def ingest_many(self, items: Sequence[IngestItem]) -> list[IngestReport | Exception]:
        """Several messages in one transaction, each with the outcome :meth:`ingest` would
        give it on its own (its report, or the exception: :class:`IngestRejected` for input
        that cannot be read). Look-ups are made once for all of them and their creates are
        written with one insert per table. When the shared transaction fails, each message
        is run again in a transaction of its own, so one message's failure is never
        another's."""
        out: list[IngestReport | Exception | None] = [None] * len(items)
        parsed: list[tuple[int, IngestItem, AdapterResult]] = []
        for i, item in enumerate(items):
            with _correlation(item.correlation_id):
                try:
                    parsed.append((i, item, self._parse(item.adapter, item.data, item.meta)))
                except Exception as exc:  # noqa: BLE001 - the item's outcome
                    out[i] = exc
        if parsed:
            try:
                reports = self._run(
                    [
                        (it.adapter, res, it.meta, it.correlation_id, it.vendor)
                        for _, it, res in parsed
                    ]
                )
                for (i, item, _), rep in zip(parsed, reports, strict=True):
                    try:
                        out[i] = self._refused_if_conflict(item.adapter, item.data, item.meta, rep)
                    except IngestRejected as exc:
                        out[i] = exc
            except Exception as exc:  # noqa: BLE001 - retried one by one below
                if len(parsed) == 1:
                    out[parsed[0][0]] = exc
                    parsed = []
                else:
                    log.exception(
                        "batch of %d messages failed; running them one by one", len(parsed)
                    )
                for i, item, res in parsed:
                    with _correlation(item.correlation_id):
                        try:
                            out[i] = self._refused_if_conflict(
                                item.adapter,
                                item.data,
                                item.meta,
                                self._run(
                                    [
                                        (
                                            item.adapter,
                                            res,
                                            item.meta,
                                            item.correlation_id,
                                            item.vendor,
                                        )
                                    ]
                                )[0],
                            )
                        except Exception as exc:  # noqa: BLE001 - the item's outcome
                            out[i] = exc
        missing = [i for i, o in enumerate(out) if o is None]
        if missing:  # every item has its outcome above; callers pair outcomes with items
            raise RuntimeError(f"ingest_many: no outcome for items {missing}")
        return [o for o in out if o is not None]

    def _new_report(
        self, adapter_name: str, result: AdapterResult, meta: IngestMeta
    ) -> IngestReport:
        report = IngestReport(
            adapter=adapter_name,
            source=meta.source,
            message_id=result.message_id,
            message_digest=result.message_digest,
            items_seen=result.items_seen or (len(result.measurements) + len(result.questionnaires)),
            mapping_version=self.mappings.version,
        )
        for d in result.diagnostics:
            report.add(d)
            if d.severity in ("error", "fatal"):
                report.rejected += 1
        return report

    def _run(
        self,
        items: list[tuple[str, AdapterResult, IngestMeta, str | None, VendorWriter | None]],
        actor: Principal | None = None,
    ) -> list[IngestReport]:
        now = now_utc()
        started = time.perf_counter()
        store = self.services.store
        ctx = INGEST_WRITE if actor is None else WriteContext(actor, Door.INGEST)
        for attempt in range(3):
            messages = [
                _Message(name, result, meta, self._new_report(name, result, meta), cid, vendor)
                for name, result, meta, cid, vendor in items
            ]
            try:
                with store.write(ctx) as tx:
                    tx.context["triage"] = True
                    self._batch_in_tx(tx, _Batch(messages), now)
                break
            except DuplicateIdentifier:
                # a concurrent writer stored the same item between our check and our insert:
                # run again; the second pass sees it as a duplicate
                if attempt == 2:
                    raise
        seconds = time.perf_counter() - started
        for m in messages:
            r = m.report
            outcomes = {
                "created": r.created,
                "duplicate": r.duplicate,
                "updated": r.updated,
                "quarantined": r.quarantined,
                "rejected": r.rejected,
            }
            count_ingest(r.adapter, outcomes, seconds)
        return [m.report for m in messages]

    # ---- the transaction ------------------------------------------------------------------
    def _batch_in_tx(self, tx: WriteTx, batch: _Batch, now: datetime) -> None:
        conn = tx.conn
        msgs = batch.messages
        # look-ups for all messages at once
        keys: dict[str, list[str]] = {}
        for m in msgs:
            if m.result.message_id:
                keys.setdefault(m.meta.source, []).append(_record_id(m.result))
        if keys:
            for key, report in processed_reports(conn, keys).items():
                batch.seen_messages[key] = _stored_digest(report)
        live = [m for m in msgs if _resend(batch, m) in (None, "again")]
        refs = [x.patient for m in live for x in m.result.measurements]
        refs += [q.patient for m in live for q in m.result.questionnaires]
        if refs:
            for ref, res in resolve_many(conn, refs).items():
                batch.patients[ref] = (res.patient_id, res.reason_code, res.reason)
        idents = [("Device", s, v) for m in live for s, v in _device_keys(m.result)]
        idents += [("Observation", s, v) for m in live for s, v in _observation_keys(m.result)]
        if idents:
            batch.identifiers.update(find_identifiers(conn, idents))
            batch.owners.update(
                subjects_of(
                    conn,
                    "Observation",
                    (
                        rid
                        for (rtype, _, _), rid in batch.identifiers.items()
                        if rtype == "Observation"
                    ),
                )
            )
        for m in msgs:
            with _correlation(m.correlation_id):
                tx.context["ingest"] = m.report
                self._message_in_tx(tx, batch, m, now)
                self._run_hooks(tx, m)
                m.complete = True
                if m.events:
                    # routing a triage event may read the store (a GP message summarises the
                    # patient's data): route it before a later message's data is written
                    self._flush(tx, batch)
        self._flush(tx, batch)

    def _stage(
        self, tx: WriteTx, m: _Message, items: list[tuple[dict[str, Any], str | None]]
    ) -> None:
        """Stage creates for the next flush, which writes them with the batch's other
        messages' (one insert per table). A large message instead writes them in chunks as
        it goes (what is built and not written stays small)."""
        if not m.large:
            staged = tx.stage_creates(items, validate=False)
            m.staged.append(staged)
            m.unhooked.extend(staged.stored)
            return
        for i in range(0, len(items), STREAM_CHUNK):
            staged = tx.stage_creates(items[i : i + STREAM_CHUNK], validate=False)
            tx.write_staged([staged])
            m.unhooked.extend(staged.stored)

    def _run_hooks(self, tx: WriteTx, m: _Message) -> None:
        """Run the write hooks of the message's creates (written or not: triage's hooks read
        and write Tasks and Flags only, never the Observations they are given)."""
        if m.unhooked:
            with self._context(tx, m):
                tx.run_write_hooks(m.unhooked)
            m.unhooked = []

    def _flush(self, tx: WriteTx, batch: _Batch) -> None:
        """Write what is staged (one insert per table), run the write hooks of each message's
        creates in message order, store the ingest records and route the messages that are
        complete."""
        staged = [st for m in batch.messages for st in m.staged]
        if staged:
            tx.write_staged(staged)
            batch.unwritten.clear()
        for m in batch.messages:
            m.staged = []
            self._run_hooks(tx, m)
        done = [m for m in batch.messages if m.complete and not m.routed]
        record_processed(
            tx.conn,
            new=[m.ingest_row for m in done if m.ingest_row is not None and not m.recorded],
            again=[m.ingest_row for m in done if m.ingest_row is not None and m.recorded],
        )
        for m in done:
            m.routed = True
            m.ingest_row = None
            with self._context(tx, m):
                self.services.dispatch(tx)

    @contextmanager
    def _context(self, tx: WriteTx, m: _Message) -> Iterator[None]:
        """The message's own events and correlation id while its hooks or routing run."""
        tx.context["events"] = m.events
        tx.context["observations_created"] = m.created
        tx.context["ingest"] = m.report
        with _correlation(m.correlation_id):
            try:
                yield
            finally:
                m.events = tx.context.pop("events", [])
                m.created = tx.context.pop("observations_created", {})

    def _message_in_tx(self, tx: WriteTx, batch: _Batch, msg: _Message, now: datetime) -> None:
        result, meta, report, adapter_name = msg.result, msg.meta, msg.report, msg.adapter
        if result.message_id:
            key = (meta.source, _record_id(result))
            seen = _resend(batch, msg)
            if seen == "conflict":
                _refuse_conflict(report, result, meta)
                return
            if seen == "duplicate":
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
            msg.recorded = seen == "again"
            batch.seen_messages[key] = result.message_digest
        devices: dict[DeviceRef, str | None] = {}
        changed: list[str] = []
        for dev in result.devices:
            devices[dev] = self._device(tx, batch, msg, dev)
        # a large message is built and written a chunk at a time; the same item again in a
        # later chunk is then a re-send of a stored one: a duplicate, or a new version when
        # it changed
        measurements = result.measurements
        step = STREAM_CHUNK if msg.large else max(len(measurements), 1)
        for first in range(0, len(measurements), step):
            pending: dict[tuple[str, str], dict[str, Any]] = {}
            for m in measurements[first : first + step]:
                built = self._store_measurement(
                    tx, batch, msg, m, meta, adapter_name, report, now, devices
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
            changed.extend(self._store_observations(tx, batch, msg, pending, report))
        if result.questionnaires:
            # a questionnaire is looked up and written at once: what is staged goes first
            self._flush(tx, batch)
            with self._context(tx, msg):
                for q in result.questionnaires:
                    if self._vendor_refuses(tx, batch, msg, q.patient, q.location):
                        continue
                    ref = self._store_questionnaire(
                        tx, q, meta, adapter_name, report, now, batch.patients, msg.vendor
                    )
                    if ref:
                        changed.append(ref)
        if changed:
            prov = self._provenance(changed, adapter_name, meta, now)
            pid = new_id()
            self._stage(tx, msg, [(prov, pid)])
            batch.unwritten.add(pid)
            report.provenance = f"Provenance/{pid}"
        report.resources = changed
        if result.message_id:
            msg.ingest_row = {
                "source": meta.source,
                "message_id": _record_id(result),
                "received": to_micros(now),
                "adapter": adapter_name,
                "report": orjson.dumps(report.to_json()),
            }

    # ---- patient-scoped idempotency keys (see interop.ingest.source_keys) -------------------------
    @staticmethod
    def _patient_key(batch: _Batch, m: Measurement, pid: str) -> tuple[tuple[str, str], bool]:
        """The key a measurement of Patient ``pid`` is stored under, and whether its source id
        is held by another patient's Observation (a conflict): the source's own id while it
        is free or this patient's, else the patient-scoped form."""
        key = observation_identifier(m)
        if not m.source_id:
            return key, False  # the derived key covers device, patient, code and time
        scoped = scoped_key(key, m.patient)
        if ("Observation", *scoped) in batch.identifiers:
            return scoped, True  # a re-send of an item stored under the scoped key
        holder = batch.identifiers.get(("Observation", *key))
        if holder is None or batch.owners.get(holder) == pid:
            return key, False
        return scoped, True

    @staticmethod
    def _held_key(
        tx: WriteTx,
        key: tuple[str, str],
        source_id: tuple[str, str] | None,
        patient: PatientRef,
    ) -> tuple[str, str]:
        """The key an item of a patient not yet known waits under in quarantine: its own,
        unless another patient's held item has it (then the patient-scoped form). A held
        item is compared with stored ones when it is released."""
        if not source_id:
            return key
        q = quarantine_table
        row = tx.conn.execute(
            select(q.c.patient_system, q.c.patient_value).where(
                q.c.identifier_system == key[0], q.c.identifier_value == key[1]
            )
        ).first()
        if row is None or (row.patient_system, row.patient_value) == (
            patient.system,
            patient.value,
        ):
            return key
        return scoped_key(key, patient)

    @staticmethod
    def _report_conflict(
        report: IngestReport,
        key: tuple[str, str],
        location: str | None,
        *,
        rejected: bool = False,
    ) -> None:
        report.add(
            Diagnostic(
                "error" if rejected else "warning",
                DIAG_IDENTIFIER_CONFLICT,
                conflict_message(key),
                location,
            )
        )
        if rejected:
            report.rejected += 1

    def _record_conflict(
        self,
        tx: WriteTx,
        msg: _Message,
        resource: dict[str, Any],
        key: tuple[str, str],
        patient: PatientRef,
        res_id: str,
    ) -> None:
        """Keep an identifier conflict for an operator: a quarantine-table row in status
        ``conflict`` naming the item stored (never released automatically)."""
        q = quarantine_table
        if tx.conn.execute(
            select(q.c.id).where(q.c.identifier_system == key[0], q.c.identifier_value == key[1])
        ).first():
            return
        tx.conn.execute(
            insert(q).values(
                id=new_id(),
                received=to_micros(now_utc()),
                source=msg.meta.source[:128],
                adapter=msg.adapter,
                reason_code=DIAG_IDENTIFIER_CONFLICT,
                reason=conflict_message(key)[:1000],
                patient_system=patient.system,
                patient_value=patient.value,
                identifier_system=key[0],
                identifier_value=key[1],
                resource=orjson.dumps(resource),
                status=CONFLICT_STATUS,
                resource_id=res_id,
                mapping_version=self.mappings.version[:64],
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

    def _vendor_refuses(
        self, tx: WriteTx, batch: _Batch, msg: _Message, ref: PatientRef, location: str | None
    ) -> bool:
        """For a vendor's message: True (the item reported as refused) when its patient is
        not linked to the vendor. An unknown person and a known but unlinked one are refused
        alike; the vendor's own unlinked user ids go on to the quarantine, and an invalid
        national id to its own rejection (neither says anything about who is a patient)."""
        vendor = msg.vendor
        if vendor is None:
            return False
        pid, reason_code, _ = self._patient(tx, ref, batch.patients)
        if reason_code == "invalid-identifier":
            return False
        if pid is None:
            if vendor.owns_system(ref.system):
                return False
        else:
            linked = batch.linked.get(vendor)
            if linked is None:
                linked = batch.linked[vendor] = vendor.linked_patients(tx.conn)
            if pid in linked:
                return False
        msg.report.add(vendor.not_linked(ref, location))
        msg.report.rejected += 1
        return True

    def _device(self, tx: WriteTx, batch: _Batch, msg: _Message, dev: DeviceRef) -> str | None:
        if not (dev.identifier_system and dev.identifier_value):
            return None
        key = ("Device", dev.identifier_system, dev.identifier_value)
        existing = batch.identifiers.get(key)
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
        with self._context(tx, msg):
            stored = tx.create(resource)
        batch.identifiers[key] = stored.res_id
        return stored.reference

    def _store_measurement(
        self,
        tx: WriteTx,
        batch: _Batch,
        msg: _Message,
        m: Measurement,
        meta: IngestMeta,
        adapter_name: str,
        report: IngestReport,
        now: datetime,
        devices: dict[DeviceRef, str | None],
    ) -> tuple[dict[str, Any], tuple[str, str]] | None:
        if self._vendor_refuses(tx, batch, msg, m.patient, m.location):
            return None
        outcome = self.mappings.map(m, now=now)
        for d in outcome.diagnostics:
            report.add(d)
        if outcome.mapped is None:
            report.rejected += 1
            return None
        device_ref = None
        if m.device is not None:
            if m.device not in devices:
                devices[m.device] = self._device(tx, batch, msg, m.device)
            device_ref = devices[m.device]
        pid, reason_code, reason = self._patient(tx, m.patient, batch.patients)
        if pid is None:
            if reason_code == "invalid-identifier":
                report.add(Diagnostic("error", reason_code, reason or "", m.location))
                report.rejected += 1
                return None
            identifier = self._held_key(tx, observation_identifier(m), m.source_id, m.patient)
            if identifier != observation_identifier(m) and m.source_id:
                self._report_conflict(report, m.source_id, m.location)
            obs = build_observation(
                outcome.mapped,
                patient_reference="Patient/unresolved",
                identifier=identifier,
                issued=now,
                device_reference=device_ref,
                status=m.status,
            )
            obs["subject"] = _logical_subject(m.patient)
            if msg.vendor is not None:
                msg.vendor.stamp(obs)
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
        identifier, conflict = self._patient_key(batch, m, pid)
        if conflict:
            self._report_conflict(report, m.source_id or identifier, m.location)
            msg.conflicts[identifier] = m.patient
        obs = build_observation(
            outcome.mapped,
            patient_reference=f"Patient/{pid}",
            identifier=identifier,
            issued=now,
            device_reference=device_ref,
            status=m.status,
        )
        if msg.vendor is not None:
            msg.vendor.stamp(obs)
        return obs, identifier

    def _store_observations(
        self,
        tx: WriteTx,
        batch: _Batch,
        msg: _Message,
        pending: dict[tuple[str, str], dict[str, Any]],
        report: IngestReport,
    ) -> list[str]:
        """Stage the new Observations for the bulk insert; compare and version the ones seen
        before."""
        if not pending:
            return []
        existing: dict[tuple[str, str], str] = {}
        for system, value in pending:
            rid = batch.identifiers.get(("Observation", system, value))
            if rid is not None:
                existing[(system, value)] = rid
        changed: list[str] = []
        fresh = [ident for ident in pending if ident not in existing]
        new: list[tuple[dict[str, Any], str | None]] = [
            (pending[ident], new_id()) for ident in fresh
        ]
        if new:
            self._stage(tx, msg, new)
            report.created += len(new)
            ids = [str(rid) for _, rid in new]
            refs = [f"Observation/{rid}" for rid in ids]
            changed.extend(refs)
            for (system, value), rid, (obs, _) in zip(fresh, ids, new, strict=True):
                batch.identifiers[("Observation", system, value)] = rid
                batch.owners[rid] = _subject_id(obs)
                batch.unwritten.add(rid)
            if msg.conflicts:
                for ident, (obs, _), rid in zip(fresh, new, ids, strict=True):
                    if ident in msg.conflicts:
                        self._record_conflict(tx, msg, obs, ident, msg.conflicts[ident], rid)
            created = msg.created
            for (obs, _), ref in zip(new, refs, strict=True):
                subject = obs["subject"]["reference"]
                if subject.startswith("Patient/"):
                    created.setdefault(subject[8:], []).append(ref)
        seen = [(ident, existing[ident]) for ident in pending if ident in existing]
        if not seen:
            return changed
        if any(rid in batch.unwritten for _, rid in seen):
            self._flush(tx, batch)  # an earlier message of this batch created it
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
        updates = []
        for ident, rid in seen:
            obs = pending[ident]
            old = current.get(rid)
            if old is not None and _subject_id(old) != _subject_id(obs):
                # never: the key is patient-scoped (see _patient_key); kept as a last guard
                self._report_conflict(report, ident, None, rejected=True)
                continue
            if old is not None and _same_content(old, obs):
                report.duplicate += 1
                continue
            updates.append((ident, rid, obs))
        if updates:
            # written in order after this message's (and earlier messages') creates
            self._flush(tx, batch)
            with self._context(tx, msg):
                for ident, rid, obs in updates:
                    old = current.get(rid)
                    known = (rid, old) if old is not None else None
                    versioned = self._upsert(
                        tx, "Observation", obs, ident, report, known, vendor=msg.vendor
                    )
                    if versioned:
                        changed.append(versioned)
        return changed

    def _upsert(
        self,
        tx: WriteTx,
        rtype: str,
        resource: dict[str, Any],
        identifier: tuple[str, str],
        report: IngestReport,
        known: tuple[str, dict[str, Any]] | None = None,
        *,
        vendor: VendorWriter | None = None,
    ) -> str | None:
        """Create, or version a changed one. ``known``: the stored item's id and content,
        read in this transaction already. ``vendor``: the vendor writing (changes only what it
        created)."""
        if known is not None:
            return self._version(
                tx, rtype, resource, known[0], known[1], report, identifier, vendor
            )
        store = self.services.store
        existing_id = store.find_by_identifier(rtype, identifier[0], identifier[1], tx.conn)
        if existing_id is None and rtype != "Observation":
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
        return self._version(
            tx, rtype, resource, existing_id, current.json(), report, identifier, vendor
        )

    def _version(
        self,
        tx: WriteTx,
        rtype: str,
        resource: dict[str, Any],
        existing_id: str,
        old: dict[str, Any],
        report: IngestReport,
        identifier: tuple[str, str],
        vendor: VendorWriter | None = None,
    ) -> str | None:
        if _subject_id(old) != _subject_id(resource):
            # an item's subject never changes through ingest (see _patient_key)
            ident = (resource.get("identifier") or [{}])[0]
            key = (str(ident.get("system", "")), str(ident.get("value", "")))
            self._report_conflict(report, key, None, rejected=True)
            return None
        if _same_content(old, resource):
            report.duplicate += 1
            return None
        if vendor is not None and not vendor.created(old):
            report.add(vendor.not_created(identifier, f"{rtype}.identifier"))
            report.rejected += 1
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
        vendor: VendorWriter | None = None,
    ) -> str | None:
        identifier = _questionnaire_key(q)
        pid, reason_code, reason = self._patient(tx, q.patient, patients)
        if pid is not None and q.source_id:
            identifier = self._questionnaire_patient_key(tx, identifier, q, pid, report)
        built = build_questionnaire_response(
            q,
            patient_reference=f"Patient/{pid}" if pid else "Patient/unresolved",
            identifier=identifier,
        )
        if vendor is not None:
            vendor.stamp(built)
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
        return self._upsert(tx, "QuestionnaireResponse", built, identifier, report, vendor=vendor)

    def _questionnaire_patient_key(
        self,
        tx: WriteTx,
        key: tuple[str, str],
        q: QuestionnaireAnswers,
        pid: str,
        report: IngestReport,
    ) -> tuple[str, str]:
        """As :meth:`_patient_key`, for a questionnaire with the source's own id."""
        store = self.services.store
        holder = store.find_by_identifier("QuestionnaireResponse", key[0], key[1], tx.conn)
        if holder is None:
            return key
        if subjects_of(tx.conn, "QuestionnaireResponse", [holder]).get(holder) == pid:
            return key
        self._report_conflict(report, key, q.location)
        return scoped_key(key, q.patient)

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
        targets: list[str],
        adapter_name: str,
        meta: IngestMeta,
        now: datetime,
    ) -> dict[str, Any]:
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
        return prov


def release_quarantine(services: Services, mappings: MappingSet | None = None) -> dict[str, int]:
    """Store every held item whose patient can now be resolved (a link or Patient was added)."""
    from interop.store.schema import quarantine_table as q

    counts = {"released": 0, "still_held": 0, "duplicate": 0, "conflict": 0}
    with services.store.write(WriteContext(None, Door.LINK)) as tx:
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
            key = (row.identifier_system, row.identifier_value)
            existing = services.store.find_by_identifier(rtype, *key, tx.conn)
            if existing and subjects_of(tx.conn, rtype, [existing]).get(existing) != pid:
                # the source id is another patient's: this item is stored on its own patient
                # under the patient-scoped key, and kept for an operator (never merged)
                key = scoped_key(key, ref)
                resource["identifier"] = [{"system": key[0], "value": key[1]}]
                existing = services.store.find_by_identifier(rtype, *key, tx.conn)
                counts["conflict"] += 1
                conflict = True
            else:
                conflict = False
            if existing:
                counts["duplicate"] += 1
                rid = existing
            else:
                rid = tx.create(resource, validate=rtype != "Observation").res_id
                counts["released"] += 1
                if rtype == "Observation":
                    observations_created(tx, [(f"Patient/{pid}", f"Observation/{rid}")])
            tx.conn.execute(
                q.update()
                .where(q.c.id == row.id)
                .values(
                    status=CONFLICT_STATUS if conflict else "released",
                    resource_id=rid,
                    **(
                        {
                            "reason_code": DIAG_IDENTIFIER_CONFLICT,
                            "reason": conflict_message(
                                (row.identifier_system, row.identifier_value)
                            ),
                        }
                        if conflict
                        else {}
                    ),
                )
            )
        services.dispatch(tx)
    return counts
