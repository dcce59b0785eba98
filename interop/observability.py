"""Health, readiness, Prometheus metrics, structured logs and correlation ids.

* ``/healthz``: the process is alive. ``/readyz``: the database answers and the schema is at
  the current revision (and, when workers report in, how far behind they are).
* ``/metrics``: Prometheus text format (ingest counts by adapter and outcome, request latency
  histograms, outbox depth and age, dead letters, AppRec timeouts).
* Every request gets a correlation id (``X-Correlation-ID`` from the caller, or a new one); it
  is in every log line and carried to the messages a request causes.
"""

from __future__ import annotations

import json
import logging
import logging.config
import time
import uuid
from typing import Any

from fastapi import APIRouter, FastAPI, Request
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy import text
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from interop.fhir.dates import from_micros, now_utc, to_micros
from interop.metrics import HTTP_SECONDS, collectors, correlation_id
from interop.routing.heartbeat import alive
from interop.routing.outbox import Outbox, collect_metrics
from interop.store.migrate import current_revision, head_revisions
from interop.store.unavailable import unavailable_reason


class JsonFormatter(logging.Formatter):
    def converter(self, secs: float | None) -> time.struct_time:
        return time.gmtime(secs)  # the "Z" in "ts" is true wherever the server runs

    def format(self, record: logging.LogRecord) -> str:
        data = {
            "ts": self.formatTime(record, "%Y-%m-%dT%H:%M:%S") + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        cid = correlation_id.get()
        if cid:
            data["correlation_id"] = cid
        for key in ("adapter", "destination", "msg_id", "patient"):
            if hasattr(record, key):
                data[key] = getattr(record, key)
        if record.exc_info:
            data["exc"] = self.formatException(record.exc_info)
        return json.dumps(data, ensure_ascii=False)


def logging_config(json_logs: bool, level: str = "INFO") -> dict[str, Any]:
    """A :func:`logging.config.dictConfig` for the service: one handler on the root logger
    (JSON lines or plain text), uvicorn's loggers passed up to it. Handed to uvicorn as its
    ``log_config`` too, so every worker process logs the same way."""
    formatter: dict[str, Any] = (
        {"()": JsonFormatter}
        if json_logs
        else {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}
    )
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"default": formatter},
        "filters": {"alembic": {"()": _AlembicChatter}},
        "handlers": {
            "default": {
                "class": "logging.StreamHandler",
                "formatter": "default",
                "stream": "ext://sys.stderr",
            }
        },
        "root": {"handlers": ["default"], "level": level},
        "loggers": {
            "uvicorn": {"handlers": [], "propagate": True, "level": level},
            "uvicorn.error": {"handlers": [], "propagate": True},
            "uvicorn.access": {"handlers": [], "propagate": True},
            # Alembic narrates its set-up; the upgrades it runs are still logged
            "alembic.runtime.plugins": {"level": "WARNING"},
            "alembic.runtime.migration": {"filters": ["alembic"]},
        },
    }


def configure_logging(json_logs: bool, level: str = "INFO") -> None:
    logging.config.dictConfig(logging_config(json_logs, level))


class _AlembicChatter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        msg = str(record.msg)
        return not (msg.startswith("Context impl") or msg.startswith("Will assume"))


router = APIRouter(tags=["operations"])


@router.get("/healthz")
async def healthz() -> Response:
    return Response(b'{"status":"ok"}', media_type="application/json")


@router.get("/readyz")
def readyz(request: Request) -> Response:
    services = request.app.state.services
    checks: dict[str, object] = {}
    ok = True
    try:
        with services.engine.connect() as conn:
            conn.execute(text("SELECT 1"))
        checks["database"] = "ok"
        rev = current_revision(services.engine)
        heads = head_revisions(services.engine)
        checks["schema"] = {"current": rev, "expected": sorted(heads)}
        if rev is None or (rev not in heads and len(heads) == 1):
            ok = False
        workers, last = alive(services.engine)
        depth = Outbox(services.engine).depth()
        oldest = min((o for _d, _n, o in depth if o is not None), default=None)
        checks["workers"] = {
            "alive": workers,
            "lastHeartbeat": from_micros(last).isoformat() if last else None,
        }
        checks["outbox"] = {
            "undelivered": sum(n for _d, n, _o in depth),
            "oldestSeconds": round((to_micros(now_utc()) - oldest) / 1e6, 1) if oldest else None,
        }
        if workers == 0 and depth:
            # the API itself is ready; this tells the operator nothing is delivering
            checks["warning"] = "messages are waiting and no worker has reported in for a minute"
    except Exception as exc:  # noqa: BLE001 - readiness reports, never raises
        ok = False
        checks["database"] = f"unavailable: {unavailable_reason(exc) or type(exc).__name__}"
    body = json.dumps({"status": "ready" if ok else "not ready", "checks": checks})
    return Response(body.encode(), status_code=200 if ok else 503, media_type="application/json")


@router.get("/metrics")
def metrics(request: Request) -> Response:
    services = request.app.state.services
    for collect in collectors:
        try:
            collect(services)
        except Exception:  # noqa: BLE001 - a broken collector must not break the scrape
            logging.getLogger("interop.metrics").exception("metrics collector failed")
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)


class CorrelationMiddleware:
    """Pure ASGI middleware (cheaper than BaseHTTPMiddleware on the hot paths): sets the
    correlation id, echoes it in ``X-Correlation-ID``, and times the request."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        cid = None
        for k, v in scope.get("headers", ()):
            if k == b"x-correlation-id":
                cid = v.decode("latin-1")[:128]
                break
        cid = cid or uuid.uuid4().hex
        token = correlation_id.set(cid)
        t0 = time.perf_counter()
        status = [500]

        async def send_wrapper(message: Message) -> None:
            if message["type"] == "http.response.start":
                status[0] = message["status"]
                headers = list(message.get("headers", []))
                headers.append((b"x-correlation-id", cid.encode("latin-1")))
                message = {**message, "headers": headers}
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            route = scope.get("route")
            template = getattr(route, "path", "unmatched")
            HTTP_SECONDS.labels(scope["method"], template, f"{status[0] // 100}xx").observe(
                time.perf_counter() - t0
            )
            correlation_id.reset(token)


def install(app: FastAPI) -> None:
    if collect_metrics not in collectors:
        collectors.append(collect_metrics)
    app.include_router(router)
    app.add_middleware(CorrelationMiddleware)
