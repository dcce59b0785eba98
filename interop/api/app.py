"""The FastAPI application: FHIR API and the service's own endpoints."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from starlette.routing import Route

from interop import __version__
from interop.access.policy import AccessPolicy
from interop.api import fhir, ingest
from interop.api.responses import install_error_handlers
from interop.config import Settings, get_settings
from interop.services import Services, build_services


def create_app(settings: Settings | None = None, services: Services | None = None) -> FastAPI:
    settings = settings or get_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if not hasattr(app.state, "services"):
            app.state.services = build_services(settings)
        yield

    app = FastAPI(
        title="DHO Interop",
        version=__version__,
        description="FHIR R4 store and API for digital hjemmeoppfølging (remote patient follow-up).",
        lifespan=lifespan,
    )
    if services is not None:
        app.state.services = services
    app.state.policy = AccessPolicy()
    app.state.actor_resolvers = []
    install_error_handlers(app)
    app.include_router(ingest.router)
    app.include_router(fhir.router)
    # hot GET routes as plain Starlette routes, matched after the specific FastAPI ones
    for path, endpoint in fhir.FAST_ROUTES:
        app.router.routes.append(Route(path, endpoint, methods=["GET"]))  # type: ignore[arg-type]
    return app
