"""The FastAPI application: routes, error mapping, metrics, optional auth, store lifecycle.

`create_app()` builds an app around settings from the environment (or given ones); when a
FeatureStore is passed in, the app borrows it and does not close it. One process per store root:
the root has one writer.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from app import feast_api, native_api
from app.auth import BearerAuthMiddleware
from app.errors import install_error_handlers
from app.fast_path import OnlineFastPath
from app.metrics import MetricsMiddleware, RequestMetrics, app_registry
from app.service import StoreService
from app.settings import Settings
from store import FeatureStore

log = logging.getLogger(__name__)


def create_app(settings: Settings | None = None, store: FeatureStore | None = None) -> FastAPI:
    """The rickhouse server app. Opens the store at startup (lifespan) unless one is given."""
    settings = settings or Settings.from_env()
    service = StoreService(settings, store)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        previous = sys.getswitchinterval()
        if settings.switch_interval_us:
            sys.setswitchinterval(settings.switch_interval_us / 1e6)
        await service.open()
        try:
            yield
        finally:
            await service.close()
            sys.setswitchinterval(previous)

    app = FastAPI(
        title="rickhouse",
        version="0.1.0",
        description=(
            "A feature store: Feast-compatible online serving and writes, native ingestion "
            "(JSON or Arrow IPC), point-in-time training exports, definitions, stats and audit."
        ),
        lifespan=lifespan,
        # /metrics is our telemetry; FastAPI's OpenTelemetry hooks stay off the hot path.
        telemetry={"tracing": False, "metrics": False, "logs": False, "operation_spans": False},
    )
    app.state.service = service
    app.state.request_metrics = RequestMetrics()
    # one registry per app: request metrics, and the store's figures read at scrape time
    app.state.metrics_registry = app_registry(app.state.request_metrics, service.stats_or_none)
    install_error_handlers(app)
    app.include_router(feast_api.router)
    app.include_router(native_api.router)
    # Innermost of ours: the hot endpoint skips FastAPI's per-request machinery.
    app.add_middleware(OnlineFastPath, service=service)
    if settings.api_token:
        app.add_middleware(BearerAuthMiddleware, token=settings.api_token)
    # Added last = outermost: times every request, 401s included.
    app.add_middleware(MetricsMiddleware, metrics=app.state.request_metrics)
    return app


def app_from_env() -> FastAPI:
    """Factory for `uvicorn --factory app.server:app_from_env` (the Docker entry point)."""
    return create_app(Settings.from_env())
