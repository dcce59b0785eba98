"""Database tables.

One ``resource`` table holds the current version of every FHIR resource as validated JSON
bytes; ``resource_history`` holds the versions it superseded (most resources, Observations
above all, never change, so this keeps their bytes out of a second table). Narrow index
tables serve searches and summaries; they are derived from the JSON on every write and can be
rebuilt from it. Times in index tables are UTC epoch microseconds (exact, portable, sortable on
SQLite and PostgreSQL alike).

Tables are declared with SQLModel; queries on hot paths use SQLAlchemy Core on ``__table__``.
"""

from __future__ import annotations

from sqlalchemy import BigInteger, Column, Float, Index, Integer, LargeBinary, MetaData, text
from sqlmodel import Field, SQLModel

metadata: MetaData = SQLModel.metadata


def _row_id() -> Column[int]:
    """Surrogate key: BIGSERIAL on PostgreSQL, ROWID alias on SQLite."""
    return Column(
        BigInteger().with_variant(Integer(), "sqlite"), primary_key=True, autoincrement=True
    )


class ResourceRow(SQLModel, table=True):
    __tablename__ = "resource"
    __table_args__ = (
        Index("ix_resource_type_updated", "res_type", "last_updated"),
        Index("ix_resource_patient", "patient_id", "res_type"),
    )

    res_type: str = Field(primary_key=True, max_length=64)
    res_id: str = Field(primary_key=True, max_length=64)
    version: int
    patient_id: str | None = Field(default=None, max_length=64)
    """Id of the Patient whose compartment the resource is in (the Patient's own id for Patient)."""
    last_updated: int = Field(sa_column=Column(BigInteger, nullable=False))
    deleted: bool = False
    content: bytes = Field(sa_column=Column(LargeBinary, nullable=False))


class ResourceHistoryRow(SQLModel, table=True):
    __tablename__ = "resource_history"

    res_type: str = Field(primary_key=True, max_length=64)
    res_id: str = Field(primary_key=True, max_length=64)
    version: int = Field(primary_key=True)
    last_updated: int = Field(sa_column=Column(BigInteger, nullable=False))
    method: str = Field(max_length=8)
    """POST, PUT or DELETE: how this version came about."""
    deleted: bool = False
    content: bytes = Field(sa_column=Column(LargeBinary, nullable=False))


class SearchTokenRow(SQLModel, table=True):
    """Token search values: identifiers, codes, status, category (system may be empty)."""

    __tablename__ = "search_token"
    __table_args__ = (
        Index("ix_token_lookup", "res_type", "param", "code", "system"),
        Index("ix_token_resource", "res_type", "res_id"),
    )

    row_id: int | None = Field(default=None, sa_column=_row_id())
    res_type: str = Field(max_length=64)
    res_id: str = Field(max_length=64)
    param: str = Field(max_length=64)
    system: str = Field(default="", max_length=255)
    code: str = Field(max_length=255)


class SearchReferenceRow(SQLModel, table=True):
    __tablename__ = "search_reference"
    __table_args__ = (
        Index("ix_reference_lookup", "res_type", "param", "target"),
        Index("ix_reference_resource", "res_type", "res_id"),
    )

    row_id: int | None = Field(default=None, sa_column=_row_id())
    res_type: str = Field(max_length=64)
    res_id: str = Field(max_length=64)
    param: str = Field(max_length=64)
    target: str = Field(max_length=255)
    """``Type/id`` of a local resource, or the reference string as given."""


class SearchDateRow(SQLModel, table=True):
    __tablename__ = "search_date"
    __table_args__ = (
        Index("ix_date_lookup", "res_type", "param", "start"),
        Index("ix_date_resource", "res_type", "res_id"),
    )

    row_id: int | None = Field(default=None, sa_column=_row_id())
    res_type: str = Field(max_length=64)
    res_id: str = Field(max_length=64)
    param: str = Field(max_length=64)
    start: int = Field(sa_column=Column(BigInteger, nullable=False))
    end: int = Field(sa_column=Column(BigInteger, nullable=False))
    """Inclusive end of the period the value covers (same as start for an instant)."""


class SearchStringRow(SQLModel, table=True):
    __tablename__ = "search_string"
    __table_args__ = (
        Index("ix_string_lookup", "res_type", "param", "value"),
        Index("ix_string_resource", "res_type", "res_id"),
    )

    row_id: int | None = Field(default=None, sa_column=_row_id())
    res_type: str = Field(max_length=64)
    res_id: str = Field(max_length=64)
    param: str = Field(max_length=64)
    value: str = Field(max_length=255)
    """Lower-cased, accent-folded text for ``:contains``/prefix matching."""


class SearchQuantityRow(SQLModel, table=True):
    """Quantity and number search values of the generic types (an Observation's are in the
    observation index): a Quantity, Age, Duration or Money is one value (``low`` = ``high``),
    a Range its bounds (an open bound as
    ±``interop.fhir.searchparams.OPEN_QUANTITY``), a number ``code`` "".
    ``code`` is the UCUM code (else the unit as written, a Money's currency)."""

    __tablename__ = "search_quantity"
    __table_args__ = (
        Index("ix_quantity_lookup", "res_type", "param", "low"),
        Index("ix_quantity_resource", "res_type", "res_id"),
    )

    row_id: int | None = Field(default=None, sa_column=_row_id())
    res_type: str = Field(max_length=64)
    res_id: str = Field(max_length=64)
    param: str = Field(max_length=64)
    system: str = Field(default="", max_length=255)
    code: str = Field(default="", max_length=64)
    low: float = Field(sa_column=Column(Float, nullable=False))
    high: float = Field(sa_column=Column(Float, nullable=False))


class ObservationIndexRow(SQLModel, table=True):
    """One row per Observation (its code: the primary row) and one per component.

    Serves patient+code+date searches, ``$lastn``, ``$stats`` and the actor summaries without
    touching the JSON. ``system``/``code`` are the first coding; ``code_set`` identifies all
    of them (:class:`CodeSetRow` lists them), so a code that is any of an Observation's
    codings finds it through one row: a search by code looks up the sets that hold the code,
    then the rows with those sets.

    ``patient_id`` is the only index of an Observation's Patient subject: the generic
    ``search_reference`` table holds no ``patient``/``subject`` rows for it (see
    ``fhir_profiles/search-parameters.yaml``).

    Indexes: patient+code set (+time) and code set (+time, population queries) hold every
    row; patient (+time) holds the primary rows only (a partial index: queries that want it
    must say ``is_primary == true()``, which renders ``is_primary = 1`` on SQLite, the form
    of the index's own WHERE clause, which SQLite needs to match literally). Its key ends
    with the constant ``is_primary`` only so that SQLite counts it as covering for a query
    that names the column (the periodic status report's "who measured lately" reads nothing
    else).
    """

    __tablename__ = "observation_index"
    __table_args__ = (
        Index("ix_obs_patient_set_time", "patient_id", "code_set", "effective"),
        Index("ix_obs_set_time", "code_set", "effective"),
        Index(
            "ix_obs_patient_time",
            "patient_id",
            "effective",
            "is_primary",
            sqlite_where=text("is_primary = 1"),
            postgresql_where=text("is_primary"),
        ),
        Index("ix_obs_resource", "res_id"),
    )

    row_id: int | None = Field(default=None, sa_column=_row_id())
    res_id: str = Field(max_length=64)
    patient_id: str | None = Field(default=None, max_length=64)
    system: str = Field(default="", max_length=255)
    code: str = Field(max_length=255)
    code_set: int = Field(sa_column=Column(BigInteger, nullable=False))
    """Id of the list of codings (``code_set_id``); ``code_set`` rows name them."""
    is_primary: bool = False
    is_component: bool = False
    effective: int | None = Field(default=None, sa_column=Column(BigInteger, nullable=True))
    effective_end: int | None = Field(default=None, sa_column=Column(BigInteger, nullable=True))
    value: float | None = None
    unit: str | None = Field(default=None, max_length=64)
    status: str = Field(default="final", max_length=32)
    category: str | None = Field(default=None, max_length=64)
    zone: str | None = Field(default=None, max_length=16)
    """Triage zone (green/yellow/red) from Observation.interpretation, when triaged."""


class CodeSetRow(SQLModel, table=True):
    """The codings of each code set the observation index uses: (id, position) → coding.

    A set is written once, by the first transaction that uses it, and never changed (its id
    is a digest of its codings)."""

    __tablename__ = "code_set"
    __table_args__ = (Index("ix_code_set_code", "code", "system"),)

    set_id: int = Field(sa_column=Column(BigInteger, primary_key=True, autoincrement=False))
    ord: int = Field(sa_column=Column(Integer, primary_key=True, autoincrement=False))
    system: str = Field(default="", max_length=255)
    code: str = Field(max_length=255)


INDEX_TABLES = (
    SearchTokenRow.__table__,  # type: ignore[attr-defined]
    SearchReferenceRow.__table__,  # type: ignore[attr-defined]
    SearchDateRow.__table__,  # type: ignore[attr-defined]
    SearchStringRow.__table__,  # type: ignore[attr-defined]
    SearchQuantityRow.__table__,  # type: ignore[attr-defined]
)
resource_table = ResourceRow.__table__  # type: ignore[attr-defined]
history_table = ResourceHistoryRow.__table__  # type: ignore[attr-defined]
token_table = SearchTokenRow.__table__  # type: ignore[attr-defined]
reference_table = SearchReferenceRow.__table__  # type: ignore[attr-defined]
date_table = SearchDateRow.__table__  # type: ignore[attr-defined]
string_table = SearchStringRow.__table__  # type: ignore[attr-defined]
quantity_table = SearchQuantityRow.__table__  # type: ignore[attr-defined]
observation_table = ObservationIndexRow.__table__  # type: ignore[attr-defined]
code_set_table = CodeSetRow.__table__  # type: ignore[attr-defined]


class UniqueIdentifierRow(SQLModel, table=True):
    """Business identifiers the store keeps unique per resource type (idempotency keys).

    An Observation's identifier (the source's stable id or the deterministic measurement key)
    and a Device's identifier may belong to one resource only; a second create with the same
    identifier is a duplicate, not a new resource.
    """

    __tablename__ = "unique_identifier"

    res_type: str = Field(primary_key=True, max_length=64)
    system: str = Field(primary_key=True, max_length=255)
    value: str = Field(primary_key=True, max_length=255)
    res_id: str = Field(max_length=64)


unique_identifier_table = UniqueIdentifierRow.__table__  # type: ignore[attr-defined]


class PatientLinkRow(SQLModel, table=True):
    """A vendor's (or device platform's) own user id linked to a Patient in the store.

    Vendor data carries vendor user ids, never a trustworthy national id; a person links the
    two (API/CLI). Names are never used to guess.
    """

    __tablename__ = "patient_link"

    system: str = Field(primary_key=True, max_length=255)
    value: str = Field(primary_key=True, max_length=255)
    patient_id: str = Field(max_length=64, index=True)
    created: int = Field(sa_column=Column(BigInteger, nullable=False))
    created_by: str | None = Field(default=None, max_length=128)


class QuarantineRow(SQLModel, table=True):
    """A measurement that could not be stored because its patient is unknown (yet)."""

    __tablename__ = "quarantine"
    __table_args__ = (
        Index("ix_quarantine_patient", "patient_system", "patient_value", "status"),
        Index("ix_quarantine_identifier", "identifier_system", "identifier_value", unique=True),
    )

    id: str = Field(primary_key=True, max_length=64)
    received: int = Field(sa_column=Column(BigInteger, nullable=False))
    source: str = Field(max_length=128)
    adapter: str = Field(max_length=64)
    reason_code: str = Field(max_length=64)
    reason: str = Field(max_length=1000)
    patient_system: str = Field(max_length=255)
    patient_value: str = Field(max_length=255)
    identifier_system: str = Field(max_length=255)
    identifier_value: str = Field(max_length=255)
    resource: bytes = Field(sa_column=Column(LargeBinary, nullable=False))
    """The Observation/QuestionnaireResponse as built, with a placeholder subject."""
    status: str = Field(default="held", max_length=16)
    """held → released (stored as resource_id) or discarded."""
    resource_id: str | None = Field(default=None, max_length=64)
    mapping_version: str = Field(default="", max_length=64)


class IngestMessageRow(SQLModel, table=True):
    """Incoming messages/files already processed, by the source's own message id."""

    __tablename__ = "ingest_message"

    source: str = Field(primary_key=True, max_length=128)
    message_id: str = Field(primary_key=True, max_length=255)
    received: int = Field(sa_column=Column(BigInteger, nullable=False))
    adapter: str = Field(max_length=64)
    report: bytes = Field(sa_column=Column(LargeBinary, nullable=False))


patient_link_table = PatientLinkRow.__table__  # type: ignore[attr-defined]
quarantine_table = QuarantineRow.__table__  # type: ignore[attr-defined]
ingest_message_table = IngestMessageRow.__table__  # type: ignore[attr-defined]


class InboundMessageRow(SQLModel, table=True):
    """A raw incoming message, stored before it is acknowledged and processed later.

    The MLLP listener (and later the KITH message inbox) writes the bytes here and only then
    answers; a worker turns ``received`` rows into data. Unique per (channel, sender, message
    id): a re-sent message is recognised and not processed twice.
    """

    __tablename__ = "inbound_message"
    __table_args__ = (
        Index("ux_inbound_sender_msgid", "channel", "sender", "message_id", unique=True),
        Index("ix_inbound_status", "status", "received"),
    )

    id: str = Field(primary_key=True, max_length=64)
    channel: str = Field(max_length=32)
    """mllp, file-drop, edi2, http …"""
    sender: str = Field(max_length=255)
    message_id: str = Field(max_length=255)
    received: int = Field(sa_column=Column(BigInteger, nullable=False))
    adapter: str = Field(max_length=64)
    raw: bytes = Field(sa_column=Column(LargeBinary, nullable=False))
    status: str = Field(default="received", max_length=16)
    """received → processing → processed | failed (KITH messages are stored as processed or
    failed at once and never go through the ingest pipeline)"""
    attempts: int = 0
    lease_until: int | None = Field(default=None, sa_column=Column(BigInteger, nullable=True))
    """While ``processing``: until when (epoch µs) the processor that claimed the row holds
    it; after that another processor may take it back (its holder is presumed dead)."""
    processed: int | None = Field(default=None, sa_column=Column(BigInteger, nullable=True))
    report: bytes | None = Field(default=None, sa_column=Column(LargeBinary, nullable=True))
    error: str | None = Field(default=None, max_length=2000)
    ack: bytes | None = Field(default=None, sa_column=Column(LargeBinary, nullable=True))
    """The acknowledgement sent the first time (re-sent as is for a duplicate)."""


inbound_message_table = InboundMessageRow.__table__  # type: ignore[attr-defined]


class OutboxRow(SQLModel, table=True):
    """A message to deliver (*Guaranteed Delivery*): written in the same transaction as the
    data that caused it, delivered by ``interop worker`` with retries, per-destination order
    and a dead-letter state.

    Status: queued → sending → sent → transport-acked → apprec-ok | apprec-rejected |
    no-apprec (no AppRec within the deadline); dead (gave up) from queued/sending.
    """

    __tablename__ = "outbox"
    __table_args__ = (
        Index("ix_outbox_ready", "status", "next_attempt"),
        Index("ix_outbox_destination_seq", "destination", "seq"),
        Index("ix_outbox_patient", "patient_id", "created"),
        Index("ux_outbox_msgid", "msg_id", unique=True),
    )

    id: str = Field(primary_key=True, max_length=64)
    seq: int = Field(sa_column=Column(BigInteger, nullable=False))
    """Order of creation (per-destination delivery order follows it)."""
    msg_id: str = Field(max_length=64)
    """The message's own id (MsgHead MsgId, or a UUID the receiver can deduplicate on)."""
    conversation_ref: str | None = Field(default=None, max_length=64)
    correlation_id: str | None = Field(default=None, max_length=128)
    created: int = Field(sa_column=Column(BigInteger, nullable=False))
    event: str = Field(max_length=64)
    kind: str = Field(max_length=64)
    """What it is: plo-helseopplysninger-lege, dialog-helsefaglig, fhir-resource, …"""
    destination: str = Field(max_length=255)
    """Who receives it: an Endpoint reference (``Endpoint/…``) or a named destination."""
    transport: str = Field(max_length=16)
    address: str = Field(max_length=1000)
    content_type: str = Field(max_length=100)
    payload: bytes = Field(sa_column=Column(LargeBinary, nullable=False))
    patient_id: str | None = Field(default=None, max_length=64)
    focus: str | None = Field(default=None, max_length=255)
    """The resource that caused it (``Task/…``, ``Observation/…``)."""
    expects_apprec: bool = False
    status: str = Field(default="queued", max_length=24)
    attempts: int = 0
    next_attempt: int = Field(sa_column=Column(BigInteger, nullable=False))
    lease_until: int | None = Field(default=None, sa_column=Column(BigInteger, nullable=True))
    last_error: str | None = Field(default=None, max_length=2000)
    sent_at: int | None = Field(default=None, sa_column=Column(BigInteger, nullable=True))
    acked_at: int | None = Field(default=None, sa_column=Column(BigInteger, nullable=True))
    apprec_status: str | None = Field(default=None, max_length=16)
    apprec_errors: bytes | None = Field(default=None, sa_column=Column(LargeBinary, nullable=True))
    reprocess_of: str | None = Field(default=None, max_length=64)
    answers: bytes | None = Field(default=None, sa_column=Column(LargeBinary, nullable=True))
    """The receiver's answer per entry, JSON (a PMD upload's ``batch-response``: each entry's
    id, status, the receiver's location or its reason for refusing)."""


class SequenceRow(SQLModel, table=True):
    """Named counters (outbox order) that work the same on SQLite and PostgreSQL."""

    __tablename__ = "counter"

    name: str = Field(primary_key=True, max_length=64)
    value: int = Field(sa_column=Column(BigInteger, nullable=False))


outbox_table = OutboxRow.__table__  # type: ignore[attr-defined]
counter_table = SequenceRow.__table__  # type: ignore[attr-defined]


class ActorRow(SQLModel, table=True):
    """A system or person allowed to call the API (GP system, hospital, EPJ, follow-up centre,
    vendor). Only a hash of the API key is kept; the key is shown once, at creation."""

    __tablename__ = "actor"

    id: str = Field(primary_key=True, max_length=64)
    key_hash: str = Field(max_length=64, unique=True, index=True)
    role: str = Field(max_length=16)
    orgnr: str | None = Field(default=None, max_length=16)
    herid: str | None = Field(default=None, max_length=16)
    hpr: str | None = Field(default=None, max_length=16)
    name: str | None = Field(default=None, max_length=200)
    created: int = Field(sa_column=Column(BigInteger, nullable=False))
    revoked: bool = False
    expires: int | None = Field(default=None, sa_column=Column(BigInteger, nullable=True))
    """When the key stops working (µs since the epoch, UTC); None = until revoked."""


actor_table = ActorRow.__table__  # type: ignore[attr-defined]


class DpopJtiRow(SQLModel, table=True):
    """DPoP proof ids (``jti``) already used, kept while a proof with that id could still be
    accepted, so that a replayed proof is refused by every API process (RFC 9449 §11.1)."""

    __tablename__ = "dpop_jti"

    key: str = Field(primary_key=True, max_length=64)
    """SHA-256 (hex) of the proof key's thumbprint and the ``jti``."""
    expires: int = Field(sa_column=Column(BigInteger, nullable=False, index=True))
    """Epoch seconds after which the proof is too old anyway and the row can be pruned."""


dpop_jti_table = DpopJtiRow.__table__  # type: ignore[attr-defined]


class AuditChainRow(SQLModel, table=True):
    """The order and links of AuditEvents: each link is an HMAC (under a key kept outside the
    database) of the previous link and the event, so editing, removing or re-chaining audited
    events is detected (``interop audit verify``)."""

    __tablename__ = "audit_chain"

    seq: int = Field(primary_key=True)
    res_id: str = Field(max_length=64)
    prev_hash: str = Field(max_length=64)
    hash: str = Field(max_length=64)
    key_id: str | None = Field(default=None, max_length=32)
    """Id of the key that made the link (see ``interop.access.audit.keys``); none for the plain
    SHA-256 links written before revision 0014."""
    recorded: int | None = Field(default=None, sa_column=Column(BigInteger, nullable=True))
    """When (epoch µs): the event's ``recorded``."""
    action: str | None = Field(default=None, max_length=1)
    """C, R, U, D or E."""
    outcome: str | None = Field(default=None, max_length=2)
    actor_id: str | None = Field(default=None, max_length=200)
    """The acting actor (the event's agent ``altId``)."""
    what: str | None = Field(default=None, max_length=255)
    """The resource or query accessed (the first entity), cut to 255 characters."""
    content: bytes | None = Field(default=None, sa_column=Column(LargeBinary, nullable=True))
    """The AuditEvent as served (JSON, with its id, meta and chain extensions). Since revision
    0020 the events live here, not among the FHIR resources: one narrow row per event instead
    of a resource row and ~11 generic index rows (see ``interop.store.audit_rows``)."""


audit_chain_table = AuditChainRow.__table__  # type: ignore[attr-defined]
Index("ux_audit_chain_res_id", audit_chain_table.c.res_id, unique=True)
Index(
    "ix_audit_chain_created",
    audit_chain_table.c.what,
    audit_chain_table.c.actor_id,
    sqlite_where=text("action = 'C'"),
    postgresql_where=text("action = 'C'"),
)


class AuditPatientRow(SQLModel, table=True):
    """Which patients' data each audit event names (a search names every patient it returned):
    the patient's list of who has accessed their record, and ``AuditEvent?patient=``."""

    __tablename__ = "audit_patient"

    patient_id: str = Field(primary_key=True, max_length=64)
    seq: int = Field(primary_key=True)
    """The event's place in ``audit_chain``."""
    recorded: int = Field(sa_column=Column(BigInteger, nullable=False))


audit_patient_table = AuditPatientRow.__table__  # type: ignore[attr-defined]


class AccessGenerationRow(SQLModel, table=True):
    """A counter every change to who may see whom moves on (a Patient's GP or organisation, a
    PractitionerRole, an Organization's place, an episode, a care team, a Consent, a vendor
    link): an API process may reuse an actor's scope while the counter stands still."""

    __tablename__ = "access_generation"

    id: int = Field(primary_key=True)
    value: int = Field(sa_column=Column(BigInteger, nullable=False))


access_generation_table = AccessGenerationRow.__table__  # type: ignore[attr-defined]


class EmergencyAccessRow(SQLModel, table=True):
    """*Nødrett*: an actor opened a patient's record outside its care relation, giving a
    reason, for a limited time (listed for the follow-up review of such accesses)."""

    __tablename__ = "emergency_access"

    id: str = Field(primary_key=True, max_length=64)
    actor_id: str = Field(max_length=200, index=True)
    actor_role: str = Field(max_length=20)
    actor_hpr: str | None = Field(default=None, max_length=20)
    actor_orgnr: str | None = Field(default=None, max_length=20)
    actor_name: str | None = Field(default=None, max_length=200)
    patient_id: str = Field(max_length=64, index=True)
    reason: str = Field(max_length=1000)
    start: int = Field(sa_column=Column(BigInteger, nullable=False, index=True))
    end: int = Field(sa_column=Column(BigInteger, nullable=False))


emergency_access_table = EmergencyAccessRow.__table__  # type: ignore[attr-defined]
