"""Optional OpenTelemetry tracing: off unless an OTLP endpoint is configured; when on, a span per
request (not /health, /metrics) with the route template, and a child span per database command."""

from __future__ import annotations

import base64
import http.server
import os
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor
from opentelemetry.instrumentation.pymongo import PymongoInstrumentor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from state_manager.app import create_app
from state_manager.config import Settings
from state_manager.observability import install_tracing
from state_manager.store import run_engine
from tests.factories import API_KEY
from tests.support.in_process import started

GRAPHS_ROUTE = "/v0/namespace/{namespace_name}/graphs/"


def _settings(**values: Any) -> Settings:
    key = base64.urlsafe_b64encode(os.urandom(32)).decode()
    return Settings(  # type: ignore[call-arg]
        state_manager_secret=API_KEY,
        secrets_encryption_key=key,
        background_loops=False,
        _env_file=None,
        **values,
    )


def test_tracing_is_off_without_an_endpoint() -> None:
    app = create_app(_settings(mock_store=True))

    assert install_tracing(app, None) is None
    assert not getattr(app, "_is_instrumented_by_opentelemetry", False)


async def test_requests_and_database_commands_become_spans() -> None:
    exporter = InMemorySpanExporter()
    with run_engine(None) as engine:  # a real wire-protocol store: the database client is traced
        app = create_app(_settings(mongo_uri=engine.uri))
        install_tracing(app, None, exporter=exporter)
        try:
            async with started(app) as client:
                exporter.clear()  # startup's index creation
                assert (await client.get("/health")).status_code == 200
                assert (await client.get("/v0/namespace/ns/graphs/")).status_code == 200
        finally:
            FastAPIInstrumentor.uninstrument_app(app)
            PymongoInstrumentor().uninstrument()

    spans = exporter.get_finished_spans()
    [request] = [s for s in spans if s.kind == SpanKind.SERVER]
    assert request.attributes is not None and request.attributes.get("http.route") == GRAPHS_ROUTE
    commands = [s for s in spans if s.kind == SpanKind.CLIENT and "mongodb" in str(s.attributes)]
    finds = [c for c in commands if c.name.endswith(".find")]  # the graphs listing's read
    assert finds, [(s.name, s.kind) for s in spans]
    assert all(c.context.trace_id == request.context.trace_id for c in finds)  # in the request's trace


class _Collector(http.server.BaseHTTPRequestHandler):
    received: list[tuple[str, str, int]] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("content-length", 0)))
        self.received.append((self.path, self.headers.get("content-type", ""), len(body)))
        self.send_response(200)
        self.send_header("content-length", "0")
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def collector() -> Iterator[str]:
    """An OTLP/HTTP receiver on loopback that records what it is sent."""
    _Collector.received = []
    server = http.server.HTTPServer(("127.0.0.1", 0), _Collector)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


async def test_the_endpoint_setting_exports_spans_over_otlp_http(collector: str) -> None:
    app = create_app(_settings(mock_store=True, otel_exporter_otlp_endpoint=collector))
    try:
        async with started(app) as client:
            assert (await client.get("/v0/namespace/ns/graphs/")).status_code == 200
    finally:
        FastAPIInstrumentor.uninstrument_app(app)
        PymongoInstrumentor().uninstrument()
    provider = app.state.tracer_provider
    assert provider.force_flush(5_000)
    provider.shutdown()

    assert _Collector.received, "no spans reached the collector"
    path, content_type, size = _Collector.received[0]
    assert (path, content_type) == ("/v1/traces", "application/x-protobuf") and size > 0
