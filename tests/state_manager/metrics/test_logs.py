"""The server's log: one line per request, one per state transition and per run end, and
every line (uvicorn's too) in the same JSON shape."""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import structlog
from fastapi import FastAPI
from structlog.contextvars import merge_contextvars

from state_manager.observability import REQUEST_ID_HEADER, configure_logging
from tests.factories import ALPHA, BETA, NAMESPACE, NO_RETRY, Api, Worker, chain

TRIGGER_ROUTE = "/v0/namespace/{namespace_name}/graph/{graph_name}/trigger"


def _lines(logs: list[dict[str, Any]], event: str) -> list[dict[str, Any]]:
    return [line for line in logs if line["event"] == event]


async def test_a_request_is_one_line_with_route_template_status_duration_and_request_id(
    api: Api, client: httpx.AsyncClient
) -> None:
    await api.setup("g", chain(), ALPHA, BETA)
    request_id = str(uuid.uuid4())

    with structlog.testing.capture_logs(processors=[merge_contextvars]) as logs:
        response = await client.post(
            api.url("/graph/g/trigger"), json={}, headers={REQUEST_ID_HEADER: request_id}
        )

    assert response.status_code == 200
    [line] = _lines(logs, "http_request")
    assert line["method"] == "POST"
    assert line["route"] == TRIGGER_ROUTE
    assert line["status"] == 200
    assert isinstance(line["duration_ms"], float) and line["duration_ms"] >= 0
    assert line["request_id"] == request_id == response.headers[REQUEST_ID_HEADER]
    assert line["log_level"] == "info"


async def test_health_and_metrics_are_not_logged_nor_timed(client: httpx.AsyncClient, app: FastAPI) -> None:
    with structlog.testing.capture_logs() as logs:
        assert (await client.get("/health")).status_code == 200
        assert (await client.get("/metrics")).status_code == 200

    assert _lines(logs, "http_request") == []
    assert 'route="/health"' not in app.state.metrics.render().decode()
    assert 'route="/metrics"' not in app.state.metrics.render().decode()


async def test_refused_and_unknown_requests_name_their_route_or_unmatched(app: FastAPI) -> None:
    transport = httpx.ASGITransport(app=app.state.asgi)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as anonymous:
        with structlog.testing.capture_logs() as logs:
            await anonymous.get(f"/v0/namespace/{NAMESPACE}/runs")  # no key: 401 before routing
            await anonymous.get("/no/such/page/123")

    assert [(line["route"], line["status"]) for line in _lines(logs, "http_request")] == [
        ("/v0/namespace/{namespace_name}/runs", 401),
        ("unmatched", 404),
    ]


async def test_every_transition_and_the_run_end_are_logged_with_errors(api: Api) -> None:
    await api.setup("g", chain(retry_policy=NO_RETRY), ALPHA, BETA)

    with structlog.testing.capture_logs() as logs:
        run_id = (await api.trigger("g"))["run_id"]
        alpha = await Worker(api, "Alpha").execute()
        beta, _ = await Worker(api, "Beta").fail("bad input: no y")

    transitions = _lines(logs, "state_transition")
    seen = [(t["node"], t["status"]) for t in transitions if t["log_level"] != "debug"]
    assert seen == [
        ("Alpha", "QUEUED"),
        ("Alpha", "EXECUTED"),
        ("Alpha", "SUCCESS"),
        ("Beta", "QUEUED"),
        ("Beta", "ERRORED"),
    ]
    for line in transitions:
        assert line["namespace"] == NAMESPACE and line["graph"] == "g" and line["run_id"] == run_id
        assert line["state_id"] in (alpha["state_id"], beta["state_id"])
    failed = transitions[-1]
    assert (failed["state_id"], failed["log_level"], failed["error"]) == (
        beta["state_id"],
        "warning",
        "bad input: no y",
    )
    [end] = _lines(logs, "run_finished")
    assert (end["namespace"], end["graph"], end["run_id"], end["status"]) == (
        NAMESPACE,
        "g",
        run_id,
        "FAILED",
    )


@pytest.fixture
def restore_logging() -> Iterator[None]:
    """configure_logging is process-wide: give later tests the defaults back."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    structlog.reset_defaults()
    root.handlers[:] = handlers
    root.setLevel(level)


@pytest.mark.usefixtures("restore_logging")
def test_uvicorn_lines_are_json_like_ours(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging("INFO", "json")
    logging.getLogger("uvicorn.error").info(
        "Uvicorn running on %s (Press CTRL+C to quit)", "http://127.0.0.1:8000"
    )
    structlog.get_logger("tests.logs").info("state_manager_started", version="x")

    uvicorn_line, our_line = (json.loads(line) for line in capsys.readouterr().out.strip().splitlines()[-2:])
    assert uvicorn_line["event"] == "Uvicorn running on http://127.0.0.1:8000 (Press CTRL+C to quit)"
    assert (uvicorn_line["level"], uvicorn_line["logger"]) == ("info", "uvicorn.error")
    assert set(our_line) - {"version"} <= set(uvicorn_line)  # same keys: event, level, timestamp
    assert uvicorn_line["timestamp"].endswith("Z")


@pytest.mark.usefixtures("restore_logging")
def test_a_second_configuration_replaces_the_handler_and_console_is_not_json(
    capsys: pytest.CaptureFixture[str],
) -> None:
    configure_logging("INFO", "json")
    configure_logging("INFO", "console")
    logging.getLogger("uvicorn.error").info("Started server process [%d]", 42)

    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 1  # one handler, not two
    assert "Started server process [42]" in lines[0]
    assert not lines[0].startswith("{")
