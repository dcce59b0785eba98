"""Ways in over HTTP: ``POST /ingest/{adapter}``, patient links and the quarantine."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import select
from starlette.responses import Response

from adapters.base import IngestMeta, PatientRef, vendor_user_system
from interop.access.policy import NOT_YOURS, Action
from interop.access.vendor_writes import VendorWriter
from interop.api.auth import Actor, require_actor, require_admin
from interop.api.responses import json_response
from interop.fhir.dates import from_micros, now_utc
from interop.fhir.outcome import error
from interop.identifiers import person_id_system
from interop.ingest.mllp_senders import SendersFileError, load_senders
from interop.ingest.pipeline import IngestPipeline, IngestRejected, release_quarantine
from interop.ingest.received import OUTCOMES, Viewer, received_message, received_messages
from interop.patients import link_patient, patient_by_identifier
from interop.services import Services
from interop.store.context import Door, WriteContext
from interop.store.schema import patient_link_table, quarantine_table

router = APIRouter()


def _services(request: Request) -> Services:
    svc: Services = request.app.state.services
    return svc


def pipeline(request: Request) -> IngestPipeline:
    p = getattr(request.app.state, "pipeline", None)
    if p is None:
        p = request.app.state.pipeline = IngestPipeline(_services(request))
    return p


def _wants_fhir(request: Request) -> bool:
    return "fhir" in request.headers.get("accept", "")


INGEST_OPENAPI: dict[str, Any] = {
    "parameters": [
        {
            "name": "source",
            "in": "query",
            "required": False,
            "schema": {"type": "string"},
            "description": "Who sent it (defaults to the vendor actor's organisation).",
        },
        {
            "name": "profile",
            "in": "query",
            "required": False,
            "schema": {"type": "string"},
            "description": "Mapping profile for `mapped-json`/`mapped-csv` "
            "(a file in mappings/profiles/, e.g. `withings-body-measures`).",
        },
        {
            "name": "patient",
            "in": "query",
            "required": False,
            "schema": {"type": "string", "pattern": "^[0-9]{11}$"},
            "description": "Fødselsnummer or D-nummer, for formats that carry no patient.",
        },
        {
            "name": "filename",
            "in": "query",
            "required": False,
            "schema": {"type": "string"},
            "description": "The file's name, kept in the ingest report and provenance.",
        },
    ],
    "requestBody": {
        "required": True,
        "description": "One message or file in the adapter's format.",
        "content": {
            "application/fhir+json": {
                "schema": {"type": "object"},
                "example": {
                    "resourceType": "Observation",
                    "status": "final",
                    "code": {"coding": [{"system": "http://loinc.org", "code": "2708-6"}]},
                    "effectiveDateTime": "2026-12-06T08:00:00+01:00",
                    "valueQuantity": {
                        "value": 95,
                        "unit": "%",
                        "system": "http://unitsofmeasure.org",
                        "code": "%",
                    },
                },
            },
            "application/json": {"schema": {"type": "object"}},
            "application/hl7-v2": {
                "schema": {"type": "string"},
                "example": "MSH|^~\\&|GW|GW|DHO|DHO|20260301080000+0100||ORU^R01^ORU_R01|m-1|P|2.6\r…",
            },
            "text/csv": {"schema": {"type": "string"}},
            "application/xml": {"schema": {"type": "string"}},
        },
    },
    "responses": {
        "200": {"description": "The ingest report: stored, duplicates, refused items with why."},
        "422": {"description": "Nothing usable: an OperationOutcome naming what is wrong."},
    },
}


@router.post("/ingest/{adapter}", tags=["ingest"], openapi_extra=INGEST_OPENAPI)
async def ingest(adapter: str, request: Request, actor: Actor = Depends(require_actor)) -> Response:
    """Ingest one message or file through a named adapter.

    Query: ``source`` (who sent it; defaults to the vendor actor's organisation), ``profile``
    (for mapped-json/mapped-csv), ``patient`` (fødselsnummer/D-nummer for formats that carry
    no patient), ``filename``. Answers with the ingest report (JSON), or an OperationOutcome for
    ``Accept: application/fhir+json``.

    A vendor writes only for the patients linked to it and changes only what it created: its
    other items are refused one by one in the report (``not-linked``,
    ``created-by-other-source``; see :mod:`interop.access.vendor_writes`).
    """
    _services(request).policy.require_role(actor, Action.WRITE)
    data = await request.body()
    if not data:
        raise error(400, "required", "the request body is empty")
    q = request.query_params
    source = q.get("source") or actor.orgnr or actor.id
    if actor.role == "vendor" and q.get("source") and q.get("source") != (actor.orgnr or actor.id):
        raise error(403, "forbidden", "a vendor may only ingest as itself")
    patient = None
    if q.get("patient"):
        system = person_id_system(q["patient"])
        if system is None:
            raise error(
                422, "value", f"patient {q['patient']!r} is not a valid fødselsnummer/D-nummer"
            )
        patient = PatientRef(system, q["patient"])
    options = {k: v for k, v in q.items() if k not in ("source", "patient", "filename")}
    meta = IngestMeta(
        source=source,
        filename=q.get("filename"),
        content_type=request.headers.get("content-type"),
        default_timezone=_services(request).settings.timezone,
        received_at=now_utc(),
        patient=patient,
        options=options,
    )
    pipe = pipeline(request)
    from starlette.concurrency import run_in_threadpool

    limits = VendorWriter.for_actor(actor)
    if actor.role == "followup":
        limits = VendorWriter.for_followup(
            actor, _services(request).policy.scope(actor).reachable or frozenset()
        )
    try:
        report = await run_in_threadpool(
            pipe.ingest, adapter, data, meta, vendor=limits, actor=actor
        )
    except IngestRejected as exc:
        status = (
            404 if any(d.get("code") == "unknown-adapter" for d in exc.report.diagnostics) else 422
        )
        body = exc.report.operation_outcome() if _wants_fhir(request) else exc.report.to_json()
        return json_response(body, status)
    body = report.operation_outcome() if _wants_fhir(request) else report.to_json()
    return json_response(body, 200)


class PatientLinkIn(BaseModel):
    model_config = ConfigDict(populate_by_name=True)
    source: str | None = Field(
        default=None, description="vendor/source name the user id belongs to"
    )
    system: str | None = Field(
        default=None, description="explicit identifier system instead of source"
    )
    user_id: str = Field(alias="userId")
    national_id: str = Field(alias="nationalId", description="fødselsnummer or D-nummer")


@router.post("/api/v1/patient-links", tags=["patients"], status_code=201)
def create_link(
    body: PatientLinkIn, request: Request, actor: Actor = Depends(require_actor)
) -> Response:
    svc = _services(request)
    svc.policy.require_role(actor, Action.LINK)
    system = body.system or (vendor_user_system(body.source) if body.source else None)
    if not system:
        raise error(400, "required", "give 'source' (vendor name) or 'system'")
    if not actor.is_admin:
        # the follow-up centre links only its own patients: the vendor may then write for them
        nsys = person_id_system(body.national_id)
        if nsys is None:
            raise error(422, "value", f"{body.national_id!r} is not a valid fødselsnummer")
        with svc.store.reader() as conn:
            known = patient_by_identifier(conn, nsys, body.national_id)
        if known is None:
            raise error(403, "forbidden", NOT_YOURS)
        svc.policy.require_patient(actor, known, Action.LINK)
    with svc.store.write(WriteContext(actor, Door.LINK)) as tx:
        pid = link_patient(tx.conn, system, body.user_id, body.national_id, created_by=actor.id)
    released = release_quarantine(svc, pipeline(request).mappings)
    return json_response(
        {
            "system": system,
            "userId": body.user_id,
            "patient": f"Patient/{pid}",
            "quarantine": released,
        },
        201,
    )


@router.get("/api/v1/patient-links", tags=["patients"])
def list_links(request: Request, actor: Actor = Depends(require_admin)) -> Response:
    svc = _services(request)
    with svc.store.reader() as conn:
        rows = conn.execute(select(patient_link_table).order_by(patient_link_table.c.created)).all()
    return json_response(
        [
            {
                "system": r.system,
                "userId": r.value,
                "patient": f"Patient/{r.patient_id}",
                "created": from_micros(r.created).isoformat(),
                "createdBy": r.created_by,
            }
            for r in rows
        ]
    )


@router.get("/api/v1/quarantine", tags=["patients"])
def list_quarantine(
    request: Request, status: str = "held", actor: Actor = Depends(require_admin)
) -> Response:
    svc = _services(request)
    q = quarantine_table
    with svc.store.reader() as conn:
        rows = conn.execute(
            select(q).where(q.c.status == status).order_by(q.c.received).limit(1000)
        ).all()
    out: list[dict[str, Any]] = [
        {
            "id": r.id,
            "received": from_micros(r.received).isoformat(),
            "source": r.source,
            "adapter": r.adapter,
            "reason": r.reason,
            "reasonCode": r.reason_code,
            "patient": {"system": r.patient_system, "value": r.patient_value},
            "status": r.status,
        }
        for r in rows
    ]
    return json_response(out)


@router.post("/api/v1/quarantine/release", tags=["patients"])
def release(request: Request, actor: Actor = Depends(require_admin)) -> Response:
    return json_response(release_quarantine(_services(request), pipeline(request).mappings))


def _viewer(svc: Services, actor: Actor) -> Viewer:
    svc.policy.require_role(actor, Action.INBOX)
    if actor.is_admin:
        return Viewer.everyone()
    try:
        listed = load_senders(svc.settings)
    except SendersFileError as exc:
        raise error(503, "transient", f"the MLLP senders list cannot be read: {exc}") from None
    return Viewer.vendor(actor.orgnr, listed)


@router.get("/api/v1/ingest/messages", tags=["ingest"])
def list_received(
    request: Request,
    outcome: str | None = None,
    channel: str | None = None,
    limit: int = 100,
    actor: Actor = Depends(require_actor),
) -> Response:
    """Received messages (newest first) and what became of each: created, duplicate,
    quarantined, rejected with the reasons, or still pending. A vendor sees the messages of
    the MLLP senders listed with its org.nr; an admin every message."""
    svc = _services(request)
    viewer = _viewer(svc, actor)
    if outcome is not None and outcome not in OUTCOMES:
        raise error(400, "value", f"outcome must be one of {', '.join(OUTCOMES)}")
    if not 1 <= limit <= 1000:
        raise error(400, "value", "limit must be between 1 and 1000")
    with svc.store.reader() as conn:
        found = received_messages(
            conn,
            viewer,
            outcome=outcome,
            channel=channel,
            limit=limit,
        )
    return json_response(found)


@router.get("/api/v1/ingest/messages/{message_id}", tags=["ingest"])
def show_received(
    message_id: str, request: Request, actor: Actor = Depends(require_actor)
) -> Response:
    """One received message with every per-item diagnostic and the resources it created."""
    svc = _services(request)
    viewer = _viewer(svc, actor)
    with svc.store.reader() as conn:
        found = received_message(conn, viewer, message_id)
    if found is None:
        raise error(404, "not-found", f"no received message {message_id!r} of yours")
    return json_response(found)
