"""The application factory: `create_app(settings)`.

The lifespan opens the database and starts the background loops (recovery, cron); routers are
mounted under `/v0` with the API-key dependency applied once per router. `/health` pings the
database (`app.state.database_ping`, set by the lifespan). With a `store_status` (the embedded
engine's, from `python -m state_manager`), `StoreGuard` answers 503 once that store is lost.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import structlog
from fastapi import APIRouter, Depends, FastAPI
from fastapi.middleware.cors import CORSMiddleware

from state_manager import __version__, dashboard, metrics
from state_manager.api import (
    audit,
    debug,
    diffs,
    forks,
    graphs,
    health,
    keys,
    nodes,
    queues,
    runs,
    states,
    why,
)
from state_manager.api.audit_trail import AuditTrail
from state_manager.api.deps import require_api_key
from state_manager.api.docs import install_api_docs
from state_manager.api.errors import install_error_handlers
from state_manager.api.guard import RequestGuard
from state_manager.api.health import DatabasePing, StoreGuard
from state_manager.api.metrics import router as metrics_router
from state_manager.api.openapi_docs import API_DESCRIPTION, TAGS
from state_manager.config import Settings, get_settings
from state_manager.crypto import SecretCipher
from state_manager.db.database import open_database
from state_manager.db.monitoring import install_command_counter
from state_manager.observability import (
    REQUEST_ID_HEADER,
    RequestIdMiddleware,
    RequestLog,
    StallWatch,
    install_tracing,
)
from state_manager.services import audit as audit_log
from state_manager.services import crons, recovery, retention, upgrade
from state_manager.services.context import AppContext
from state_manager.store.status import StoreStatus

log = structlog.get_logger(__name__)


async def _every(seconds: float, name: str, step: Callable[[], Awaitable[Any]]) -> None:
    """Run `step` forever, `seconds` apart; a failing pass is logged and the loop goes on."""
    while True:
        try:
            await step()
        except Exception:
            log.exception("background_pass_failed", loop=name)
        await asyncio.sleep(seconds)


def _store_kind(settings: Settings) -> str:
    if settings.mock_store:
        return "in-process mock (tests)"
    return "MongoDB wire protocol" if settings.mongo_uri else "none"


def _lifespan(context: AppContext) -> Callable[[FastAPI], Any]:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        settings = context.settings
        client = await open_database(settings)
        # The mock store of the tests answers by construction: only a real database is pinged.
        app.state.database_ping = DatabasePing(client) if settings.mongo_uri else None
        # Data stored by earlier versions: runs' progress and listing keys, waiting states' queue keys.
        await upgrade.upgrade_runs(settings.recovery_batch_size)
        await upgrade.upgrade_listing_keys()
        await upgrade.upgrade_queue_keys()
        metrics.activate(app.state.metrics)  # the background loops' hooks update this app's series
        stalls = StallWatch(lambda: app.state.metrics.queue_rows(context))
        tasks: list[asyncio.Task[None]] = []
        if settings.background_loops:
            tasks = [
                asyncio.create_task(
                    _every(
                        settings.recovery_interval_seconds, "recovery", lambda: recovery.recover_once(context)
                    )
                ),
                asyncio.create_task(
                    _every(settings.cron_interval_seconds, "cron", lambda: crons.fire_due(context))
                ),
                asyncio.create_task(
                    _every(min(max(settings.queue_stall_seconds / 2, 1), 30), "stall_watch", stalls.check)
                ),
            ]
            tasks.append(  # AUDIT_RETENTION: the audit log's records older than that go
                asyncio.create_task(
                    _every(
                        settings.retention_interval, "audit_retention", lambda: audit_log.purge_old(context)
                    )
                )
            )
            if settings.run_retention is not None:  # RUN_RETENTION: delete runs that ended long ago
                tasks.append(
                    asyncio.create_task(
                        _every(
                            settings.retention_interval, "retention", lambda: retention.purge_once(context)
                        )
                    )
                )
        log.info("state_manager_started", version=__version__, store=_store_kind(settings))
        try:
            yield
        finally:
            for task in tasks:
                task.cancel()
            for task in tasks:
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            store_status: StoreStatus | None = app.state.store_status
            if store_status is None or store_status.problem is None:
                # Not once the store is lost: closing ends the client's sessions on the server,
                # which would wait for the dead one (30 s of server selection, blocking the loop).
                client.close()

    return lifespan


def create_app(settings: Settings | None = None, store_status: StoreStatus | None = None) -> FastAPI:
    settings = settings or get_settings()
    settings.refuse_public_secrets()
    context = AppContext(settings=settings, cipher=SecretCipher(settings.encryption_key))
    app = FastAPI(
        title="Exosphere state manager",
        version=__version__,
        description=API_DESCRIPTION,
        openapi_tags=TAGS,
        docs_url=None,  # served from vendored assets by install_api_docs, not from a CDN
        redoc_url=None,
        lifespan=_lifespan(context),
    )
    app.state.context = context
    app.state.metrics = metrics.Metrics(__version__)
    app.state.store_status = store_status

    app.include_router(health.router)
    secured = [Depends(require_api_key)]
    namespaced = APIRouter(prefix="/v0/namespace/{namespace_name}", dependencies=secured)
    for module in (nodes, graphs, states, runs, forks, diffs, why, queues):
        namespaced.include_router(module.router)
    app.include_router(namespaced)
    app.include_router(nodes.global_router, prefix="/v0", dependencies=secured)
    app.include_router(keys.router, prefix="/v0", dependencies=secured)
    app.include_router(audit.router, prefix="/v0", dependencies=secured)
    if settings.count_db_commands:  # benchmarks: before the database client exists
        app.state.db_command_counter = install_command_counter()
        app.include_router(debug.router, prefix="/v0", dependencies=secured)

    app.include_router(metrics_router)
    install_api_docs(app)
    dashboard.install(app)  # /ui: pages, static assets, and their guard (session, origin, headers)
    install_error_handlers(app)
    app.add_middleware(AuditTrail)  # audited calls are recorded once answered (api/access.py)
    if store_status is not None:  # innermost: its 503s are logged, counted and given CORS headers
        app.add_middleware(StoreGuard, status=store_status)
    app.add_middleware(
        CORSMiddleware,
        allow_origins=settings.cors_origin_list,
        allow_credentials=True,
        allow_methods=["GET", "POST", "PUT", "DELETE", "OPTIONS", "PATCH"],
        allow_headers=[
            "Accept",
            "Accept-Language",
            "Content-Language",
            "Content-Type",
            "X-API-Key",
            "Authorization",
            "X-Requested-With",
            "X-Exosphere-Request-ID",
        ],
        expose_headers=[REQUEST_ID_HEADER],
        max_age=600,
    )
    app.add_middleware(
        RequestGuard,
        api_key=settings.state_manager_secret.get_secret_value(),
        max_body_bytes=settings.max_request_bytes,
    )
    app.add_middleware(RequestLog, app_metrics=app.state.metrics, routes=app.router.routes)
    app.add_middleware(RequestIdMiddleware)
    app.state.tracer_provider = install_tracing(app, settings.otel_exporter_otlp_endpoint)
    return app
