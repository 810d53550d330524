"""Structured logging, the request id every log line carries, the request log line, and the
warning about work that no runtime asks for.

The request id comes from `x-exosphere-request-id` when it is a UUID, else a new uuid4; it is
bound in a context variable (never passed around) and echoed on every response.

Log lines (LOG_FORMAT=json, the default: one JSON object per line on stdout):
- `http_request`: one per request but `/health` and `/metrics`: method, route template,
  status, duration_ms, request_id;
- `state_transition` and `run_finished` (state_manager/metrics.py, services/run_status.py);
- `queue_stalled` (warning): states wait for a node that no runtime has asked for, at most
  once per node every `StallWatch.window_seconds`;
- the lines of uvicorn and of the libraries, in the same format.
"""

from __future__ import annotations

import logging
import os
import sys
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any

import structlog
from starlette.routing import BaseRoute, Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from state_manager import metrics

try:  # recent FastAPI includes routers lazily; earlier versions flatten them, with full paths
    from fastapi.routing import iter_route_contexts
except ImportError:  # pragma: no cover
    iter_route_contexts = None  # type: ignore[assignment]

if TYPE_CHECKING:
    from state_manager.schemas.queues import QueueRow

REQUEST_ID_HEADER = "x-exosphere-request-id"
QUIET_PATHS = frozenset({"/health", "/metrics"})  # no request line, no request metric
LOG_FORMATS = ("json", "console")

log = structlog.get_logger("state_manager")


class _OurHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """The root handler `configure_logging` installs (replaced, never stacked, on a second call)."""


def configure_logging(level: str, fmt: str = "json") -> None:
    """One JSON object per line on stdout (`fmt="console"`: readable lines for a terminal);
    `log.exception(...)` carries the traceback as text. Standard-library records (uvicorn's,
    the libraries') go through the same processors, so every line has the same shape.

    Loggers are cached on first use: call this once, before anything logs (tests that call it
    restore structlog's defaults afterwards with `structlog.reset_defaults()`).
    """
    renderer: Any = (
        structlog.dev.ConsoleRenderer(colors=False)
        if fmt == "console"
        else structlog.processors.JSONRenderer()
    )
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    handler = _OurHandler(sys.stdout)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=[*shared, structlog.stdlib.add_logger_name],
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                structlog.processors.format_exc_info,
                renderer,
            ],
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [h for h in root.handlers if not isinstance(h, _OurHandler)] + [handler]
    root.setLevel(level.upper())
    structlog.configure(
        processors=[
            *shared,
            structlog.processors.format_exc_info,  # exc_info -> "exception": "Traceback ..."
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level.upper())),
        logger_factory=structlog.PrintLoggerFactory(sys.stdout),
        cache_logger_on_first_use=True,
    )


def _request_id(scope: Scope) -> str:
    for name, value in scope.get("headers", []):
        if name == REQUEST_ID_HEADER.encode():
            try:
                return str(uuid.UUID(value.decode("latin-1")))
            except ValueError:
                break
    return str(uuid.uuid4())


def current_request_id() -> str | None:
    value = structlog.contextvars.get_contextvars().get("request_id")
    return value if isinstance(value, str) else None


class RequestIdMiddleware:
    """Pure ASGI middleware (no BaseHTTPMiddleware): binds and echoes the request id."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = _request_id(scope)
        structlog.contextvars.clear_contextvars()
        structlog.contextvars.bind_contextvars(request_id=request_id)

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [(k, v) for k, v in message.get("headers", []) if k != REQUEST_ID_HEADER.encode()]
                headers.append((REQUEST_ID_HEADER.encode(), request_id.encode()))
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, send_with_id)


_METHODS = frozenset({"GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"})
UNMATCHED = "unmatched"


class RouteTemplates:
    """The template of the route that served a request (`/v0/namespace/{namespace_name}/...`).

    FastAPI puts the route on the scope; since it includes routers lazily that route carries
    its path relative to its router, so the full template is looked up by route (the index is
    built on first use, once every route is in place). A request answered before routing (401,
    413), by no route (404), or by a route included twice is matched against every route
    instead, and is `unmatched` when none fits: the values form a bounded set.
    """

    def __init__(self, routes: Sequence[BaseRoute]) -> None:
        self._routes = routes
        self._candidates: list[Any] | None = None
        self._by_route: dict[int, str] = {}

    def _index(self) -> list[Any]:
        if iter_route_contexts is None:  # FastAPI before lazy inclusion: routes have full paths
            candidates: list[Any] = list(self._routes)
        else:
            candidates = list(iter_route_contexts(self._routes))
        seen: dict[int, list[str]] = {}
        for candidate in candidates:
            original = getattr(candidate, "original_route", candidate)
            seen.setdefault(id(original), []).append(str(getattr(candidate, "path", "")))
        self._by_route = {key: paths[0] for key, paths in seen.items() if len(paths) == 1}
        return candidates

    def of(self, scope: Scope) -> str:
        if self._candidates is None:
            self._candidates = self._index()
        route = scope.get("route")
        if route is not None and (path := self._by_route.get(id(route))):
            return path
        for candidate in self._candidates:
            matched, _ = candidate.matches(scope)
            if matched != Match.NONE:
                return str(getattr(candidate, "path", UNMATCHED))
        return UNMATCHED


class RequestLog:
    """Pure ASGI middleware, inside `RequestIdMiddleware`: activates the app's metrics for the
    request, then logs one `http_request` line and observes its duration (not for QUIET_PATHS)."""

    def __init__(self, app: ASGIApp, *, app_metrics: metrics.Metrics, routes: Sequence[BaseRoute]) -> None:
        self.app = app
        self.metrics = app_metrics
        self.routes = RouteTemplates(routes)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        token = metrics.activate(self.metrics)
        try:
            if scope["path"] in QUIET_PATHS:
                await self.app(scope, receive, send)
                return
            await self._timed(scope, receive, send)
        finally:
            metrics.deactivate(token)

    async def _timed(self, scope: Scope, receive: Receive, send: Send) -> None:
        started = time.perf_counter()
        status = 500  # unless a response starts: an exception escaped

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            seconds = time.perf_counter() - started
            method = scope["method"] if scope["method"] in _METHODS else "OTHER"
            route = self.routes.of(scope)
            metrics.observe_request(method, route, status, seconds)
            log.info(
                "http_request",
                method=method,
                route=route,
                status=status,
                duration_ms=round(seconds * 1000, 2),
            )


class StallWatch:
    """Warns (`queue_stalled`) when states are due for a node and no runtime asked for that
    node's work in QUEUE_STALL_SECONDS (`QueueRow.stalled`), once per node and window."""

    def __init__(
        self,
        read: Callable[[], Awaitable[list[tuple[str, QueueRow]]]],
        window_seconds: float = 300.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.read = read
        self.window_seconds = window_seconds
        self.clock = clock
        self._warned: dict[tuple[str, str], float] = {}

    async def check(self) -> int:
        """Read the queues and warn about the stalled nodes not warned about within the window;
        returns how many warnings were logged."""
        rows = await self.read()
        now = self.clock()
        self._warned = {key: at for key, at in self._warned.items() if now - at < self.window_seconds}
        warned = 0
        for namespace, row in rows:
            key = (namespace, row.node_name)
            if not row.stalled or key in self._warned:
                continue
            self._warned[key] = now
            warned += 1
            log.warning(
                "queue_stalled",
                namespace=namespace,
                node=row.node_name,
                due=row.due,
                oldest_due_age_seconds=row.oldest_due_age_seconds,
                last_poll_age_seconds=row.last_poll_age_seconds,
                registered=row.registered,
                message=(
                    f"{row.due} state(s) of node {row.node_name} in namespace {namespace} have been "
                    "waiting and no runtime has asked for this node's work recently: is a runtime "
                    "serving it running, and pointed at this server and namespace?"
                ),
            )
        return warned


TRACES_PATH = "/v1/traces"


def install_tracing(app: Any, endpoint: str | None, exporter: Any = None) -> Any:
    """OpenTelemetry spans for every request (but `/health`, `/metrics`) and every database
    command, exported over OTLP/HTTP to `endpoint` (OTEL_EXPORTER_OTLP_ENDPOINT, e.g.
    `http://collector:4318`), or to `exporter` (tests). Off, and nothing imported, when neither
    is given; needs the `otel` extra. Returns the tracer provider, or None when off.

    The database client is instrumented for the whole process (pymongo's command listeners are
    global), with the first provider installed: one app per process, as the server runs.
    """
    if endpoint is None and exporter is None:
        return None
    try:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor
        from opentelemetry.instrumentation.pymongo import PymongoInstrumentor
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor
    except ImportError as exc:
        raise RuntimeError(
            "OTEL_EXPORTER_OTLP_ENDPOINT is set but the tracing packages are missing: "
            "pip install 'exosphere-state-manager[otel]'"
        ) from exc
    from state_manager import __version__

    attributes = {"service.version": __version__}
    if not os.environ.get("OTEL_SERVICE_NAME"):
        attributes["service.name"] = "exosphere-state-manager"
    provider = TracerProvider(resource=Resource.create(attributes))
    if exporter is not None:
        provider.add_span_processor(SimpleSpanProcessor(exporter))
    else:
        assert endpoint is not None
        url = endpoint if endpoint.rstrip("/").endswith(TRACES_PATH) else endpoint.rstrip("/") + TRACES_PATH
        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=url)))
    FastAPIInstrumentor.instrument_app(
        app, tracer_provider=provider, excluded_urls=",".join(f"{path}$" for path in QUIET_PATHS)
    )
    PymongoInstrumentor().instrument(tracer_provider=provider)
    log.info("tracing_enabled", endpoint=endpoint)
    return provider
