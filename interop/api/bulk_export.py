"""Bulk data export (FHIR Bulk Data Access 2.0): ``$export`` at system, Patient and Group
level, asynchronous with the kick-off / status / result pattern, NDJSON files.

Kick-off (``Prefer: respond-async``) answers 202 with the status URL in ``Content-Location``;
a worker thread writes one NDJSON file per type into its own folder under ``export_dir`` and
then the manifest. The status URL answers 202 (``X-Progress``) while it runs, 200 with the
manifest when done, 500 with an OperationOutcome if it failed; ``DELETE`` on it removes the
job. Job, status and files belong to the actor that started it (and admins).

What an export holds is decided by the access policy like any search: the system level is for
admins (it is everybody's data); the Patient level covers the patients the actor reaches; the
Group level the Group's members the actor reaches. Every resource written passes the policy's
check and each batch is audited naming its patients.
"""

from __future__ import annotations

import shutil
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import orjson
from fastapi import APIRouter, Depends, Request
from sqlalchemy import false, select
from starlette.responses import Response

from interop.api.auth import Actor, require_actor
from interop.api.fhir import fhir_base, services
from interop.api.responses import json_response
from interop.fhir.capability import register_operation, register_system_operation
from interop.fhir.dates import fhir_instant
from interop.fhir.outcome import Issue, error, operation_outcome
from interop.fhir.r4_definitions import patient_compartment_params
from interop.services import Services
from interop.store.schema import resource_table
from interop.store.search import SearchResult

router = APIRouter(prefix="/fhir")

BULK = "http://hl7.org/fhir/uv/bulkdata/OperationDefinition/"
register_system_operation("export", BULK + "export")
register_operation("Patient", "export", BULK + "patient-export")
register_operation("Group", "export", BULK + "group-export", instance=True)

NDJSON = "application/fhir+ndjson"
OUTPUT_FORMATS = frozenset({NDJSON, "application/ndjson", "ndjson"})
BATCH = 500
NOT_EXPORTED = frozenset({"AuditEvent"})
"""The access log is not exported with the data (ask ``_type=AuditEvent`` as an admin)."""


def _export_dir(svc: Services) -> Path:
    return (svc.settings.export_dir or Path("var") / "exports").absolute()


def _job_dir(svc: Services, job: str) -> Path:
    if not job.replace("-", "").isalnum():
        raise error(404, "not-found", "no such export job")
    return _export_dir(svc) / job


def _owner_check(actor: Actor, meta: dict[str, Any]) -> None:
    if not actor.is_admin and meta.get("actor") != actor.id:
        raise error(404, "not-found", "no such export job")  # never tells whose it is


def _write_atomically(path: Path, data: bytes) -> None:
    """A status poll reads ``job.json`` and ``manifest.json`` while the job writes them: write
    beside and rename into place, so a reader sees the old file or the new one, never half."""
    part = path.with_name(f".{path.name}.part")
    part.write_bytes(data)
    part.replace(path)


def _read_meta(folder: Path) -> dict[str, Any]:
    try:
        meta: dict[str, Any] = orjson.loads((folder / "job.json").read_bytes())
        return meta
    except (OSError, orjson.JSONDecodeError):
        raise error(404, "not-found", "no such export job") from None


async def _kick_off(request: Request, actor: Actor, level: str, group: str | None) -> Response:
    svc = services(request)
    if "respond-async" not in request.headers.get("prefer", ""):
        raise error(400, "invalid", "$export is asynchronous: send 'Prefer: respond-async'")
    fmt = request.query_params.get("_outputFormat", NDJSON)
    if fmt not in OUTPUT_FORMATS:
        raise error(400, "not-supported", f"_outputFormat {fmt!r}: only {NDJSON}")
    for unsupported in ("_typeFilter", "_elements", "patient", "includeAssociatedData"):
        if unsupported in request.query_params:
            raise error(400, "not-supported", f"$export parameter {unsupported} is not supported")
    from interop.fhir.validation import SUPPORTED_TYPES

    compartment = patient_compartment_params()
    if level == "system":
        if not actor.is_admin:
            raise error(403, "forbidden", "a system-level export is everybody's data: for admins")
        default_types = [t for t in SUPPORTED_TYPES if t not in NOT_EXPORTED]
    else:
        svc.policy.scope(actor)  # a role that reads nothing is refused below, by the policy
        default_types = [
            t
            for t in SUPPORTED_TYPES
            if (t == "Patient" or compartment.get(t)) and t not in NOT_EXPORTED
        ]
    raw_types = request.query_params.get("_type")
    types = default_types
    if raw_types:
        types = [t.strip() for t in raw_types.split(",") if t.strip()]
        bad = [t for t in types if t not in SUPPORTED_TYPES]
        if bad:
            raise error(400, "not-supported", f"_type: unknown resource type(s) {', '.join(bad)}")
        if level != "system":
            outside = [t for t in types if t != "Patient" and not compartment.get(t)]
            if outside:
                raise error(
                    400, "not-supported", f"_type: {', '.join(outside)} is not patient data"
                )
    since_text = request.query_params.get("_since")
    try:
        since = fhir_instant(since_text, svc.settings.timezone) if since_text else None
    except ValueError:
        raise error(400, "invalid", f"_since {since_text!r} is not a FHIR instant") from None
    patients = await _patients(svc, actor, level, group)
    job = str(uuid.uuid4())
    folder = _export_dir(svc) / job
    folder.mkdir(parents=True)
    base = fhir_base(request)
    meta = {
        "actor": actor.id,
        "started": time.time(),
        "request": str(request.url),
        "types": types,
        "status": "running",
    }
    _write_atomically(folder / "job.json", orjson.dumps(meta))
    thread = threading.Thread(
        target=_run,
        args=(svc, actor, folder, job, base, types, patients, since, meta),
        name=f"export-{job}",
        daemon=True,
    )
    thread.start()
    return Response(
        status_code=202,
        headers={"Content-Location": f"{base}/$export-status/{job}"},
    )


async def _patients(svc: Services, actor: Actor, level: str, group: str | None) -> set[str] | None:
    """The patients whose data the export may hold (None: every patient, system level)."""
    if level == "system":
        return None
    reachable = svc.policy.scope(actor).reachable
    if svc.policy.scope(actor).patients is not None and actor.role == "vendor":
        raise error(403, "forbidden", "a vendor writes measurements and reads nothing")
    if level == "patient":
        if reachable is None:
            with svc.store.reader() as conn:
                r = resource_table.c
                return {
                    row[0]
                    for row in conn.execute(
                        select(r.res_id).where(r.res_type == "Patient", r.deleted == false())
                    )
                }
        return set(reachable)
    assert group is not None
    stored = svc.store.read("Group", group)
    await svc.policy.check_read_async(actor, stored)
    members = set()
    for m in stored.json().get("member") or []:
        ref = (m.get("entity") or {}).get("reference", "") if isinstance(m, dict) else ""
        if ref.startswith("Patient/"):
            members.add(ref.split("/", 1)[1])
    return members if reachable is None else members & set(reachable)


def _run(
    svc: Services,
    actor: Actor,
    folder: Path,
    job: str,
    base: str,
    types: list[str],
    patients: set[str] | None,
    since: int | None,
    meta: dict[str, Any],
) -> None:
    output = []
    try:
        r = resource_table.c
        for rtype in types:
            count = 0
            path = folder / f"{rtype}.ndjson"
            with path.open("wb") as out:
                last = ""
                while True:
                    stmt = select(r.res_id, r.content).where(
                        r.res_type == rtype, r.deleted == false(), r.res_id > last
                    )
                    if since is not None:
                        stmt = stmt.where(r.last_updated >= since)
                    if patients is not None:
                        column = r.res_id if rtype == "Patient" else r.patient_id
                        stmt = stmt.where(column.in_(sorted(patients) or ["__none__"]))
                    with svc.store.reader() as conn:
                        rows = conn.execute(stmt.order_by(r.res_id).limit(BATCH)).all()
                    if not rows:
                        break
                    last = rows[-1].res_id
                    batch = SearchResult([(row.res_id, bytes(row.content)) for row in rows])
                    shown = svc.policy.filter_result(actor, rtype, batch, [("_export", job)])
                    for _rid, content in shown.rows:
                        out.write(orjson.dumps(orjson.loads(content)) + b"\n")
                        count += 1
            if count:
                output.append(
                    {
                        "type": rtype,
                        "url": f"{base}/$export-file/{job}/{rtype}.ndjson",
                        "count": count,
                    }
                )
            else:
                path.unlink()
        manifest = {
            "transactionTime": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(meta["started"])),
            "request": meta["request"],
            "requiresAccessToken": True,
            "output": output,
            "error": [],
        }
        _write_atomically(folder / "manifest.json", orjson.dumps(manifest))
        meta["status"] = "complete"
    except Exception as exc:  # the job fails visibly; the status URL reports it
        meta["status"] = "failed"
        meta["error"] = f"{type(exc).__name__}: {exc}"[:500]
    _write_atomically(folder / "job.json", orjson.dumps(meta))


@router.get("/$export")
async def export_system(request: Request, actor: Actor = Depends(require_actor)) -> Response:
    return await _kick_off(request, actor, "system", None)


@router.get("/Patient/$export")
async def export_patients(request: Request, actor: Actor = Depends(require_actor)) -> Response:
    return await _kick_off(request, actor, "patient", None)


@router.get("/Group/{gid}/$export")
async def export_group(
    gid: str, request: Request, actor: Actor = Depends(require_actor)
) -> Response:
    return await _kick_off(request, actor, "group", gid)


@router.get("/$export-status/{job}")
async def export_status(
    job: str, request: Request, actor: Actor = Depends(require_actor)
) -> Response:
    svc = services(request)
    folder = _job_dir(svc, job)
    meta = _read_meta(folder)
    _owner_check(actor, meta)
    if meta["status"] == "complete":
        return Response((folder / "manifest.json").read_bytes(), media_type="application/json")
    if (
        meta["status"] == "failed"
        or time.time() - meta["started"] > svc.settings.export_max_seconds
    ):
        return json_response(
            operation_outcome(
                [
                    Issue(
                        "error", "exception", f"the export failed: {meta.get('error', 'timed out')}"
                    )
                ]
            ),
            500,
        )
    done = sum(1 for t in meta["types"] if (folder / f"{t}.ndjson").exists())
    return Response(
        status_code=202,
        headers={"X-Progress": f"{done} of {len(meta['types'])} types", "Retry-After": "1"},
    )


@router.delete("/$export-status/{job}")
async def export_delete(
    job: str, request: Request, actor: Actor = Depends(require_actor)
) -> Response:
    svc = services(request)
    folder = _job_dir(svc, job)
    _owner_check(actor, _read_meta(folder))
    shutil.rmtree(folder, ignore_errors=True)
    return Response(status_code=202)


@router.get("/$export-file/{job}/{name}")
async def export_file(
    job: str, name: str, request: Request, actor: Actor = Depends(require_actor)
) -> Response:
    svc = services(request)
    folder = _job_dir(svc, job)
    _owner_check(actor, _read_meta(folder))
    if not name.endswith(".ndjson") or "/" in name or name.startswith("."):
        raise error(404, "not-found", "no such export file")
    path = folder / name
    if not path.is_file():
        raise error(404, "not-found", "no such export file")
    return Response(path.read_bytes(), media_type=NDJSON)
