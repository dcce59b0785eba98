"""The FastAPI application: FHIR API and the service's own endpoints."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from starlette.routing import Route

from interop import __version__, observability
from interop.access.actors import KeyResolver
from interop.access.helseid import HelseIdResolver
from interop.api import (
    actors,
    audit,
    bulk_export,
    docs,
    emergency,
    fhir,
    fhir_meta,
    fhir_meta_write,
    fhir_operations,
    fhir_system,
    fhir_write,
    indicators,
    ingest,
    landing,
    messages,
    observation_ops,
    openapi,
    plan_approval,
    plans,
    smart,
    views,
    worklist,
)
from interop.api.cors import install_cors
from interop.api.fastpath import FhirReadFastPath
from interop.api.formats import FhirFormats
from interop.api.limits import RequestLimits
from interop.api.responses import install_error_handlers
from interop.config import Settings, get_settings
from interop.runtime import tune_gc
from interop.services import Services, build_services


def create_app(settings: Settings | None = None, services: Services | None = None) -> FastAPI:
    settings = settings or get_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if not hasattr(app.state, "services"):
            app.state.services = build_services(settings)
        for resolver in app.state.actor_resolvers:
            if hasattr(resolver, "check"):
                resolver.check()  # a wrong HelseID client map stops the start, with its reason
        mllp = None
        stop = None
        if settings.mllp_port:
            from interop.ingest.inbox import InboxProcessor
            from interop.ingest.mllp import MllpServer, start_processor_thread

            processor = None
            if settings.mllp_process_inbox:
                processor = InboxProcessor(app.state.services)
                _thread, stop = start_processor_thread(processor)
            mllp = MllpServer(app.state.services, processor)
            await mllp.start(settings.mllp_host, settings.mllp_port)
        tune_gc(settings)  # start-up is done: what is alive now lives as long as the process
        try:
            yield
        finally:
            if mllp is not None:
                await mllp.close()
            if stop is not None:
                stop.set()

    app = FastAPI(
        title="DHO Interop",
        version=__version__,
        description="FHIR R4 store and API for digital hjemmeoppfølging (remote patient follow-up).",
        lifespan=lifespan,
        docs_url=None,  # served by interop.api.docs, from the installed package: offline
        redoc_url=None,
    )
    if services is not None:
        app.state.services = services
    app.state.actor_resolvers = [
        HelseIdResolver(lambda: app.state.services),
        KeyResolver(lambda: app.state.services.engine, lambda: app.state.services.settings),
    ]
    install_error_handlers(app)
    app.add_middleware(FhirReadFastPath)
    app.add_middleware(FhirFormats)  # XML and _pretty around every /fhir route
    app.add_middleware(RequestLimits)  # outside the fast path: every request is checked
    observability.install(app)
    install_cors(app, settings)  # outermost: preflights and error answers get CORS headers
    openapi.install(app)
    docs.install(app)
    app.include_router(landing.router)
    app.include_router(ingest.router)
    app.include_router(observation_ops.router)
    app.include_router(messages.router)
    app.include_router(plans.router)
    app.include_router(plan_approval.router)
    app.include_router(actors.router)
    app.include_router(audit.router)
    app.include_router(emergency.router)
    app.include_router(views.router)
    app.include_router(views.router_fhir)
    app.include_router(indicators.router)
    app.include_router(smart.router)
    app.include_router(bulk_export.router)
    app.include_router(fhir_write.router)
    app.include_router(worklist.router)
    app.include_router(fhir_operations.router)
    app.include_router(fhir_meta.router)
    app.include_router(fhir_meta_write.router)
    app.include_router(fhir.router)
    app.include_router(fhir_system.router)  # after: Patient/{id}/_history is fhir's
    # hot routes (read, search, create) as plain Starlette routes, matched after the FastAPI ones
    for method, path, endpoint in fhir.FAST_ROUTES:
        app.router.routes.append(Route(path, endpoint, methods=[method]))  # type: ignore[arg-type]
    return app
