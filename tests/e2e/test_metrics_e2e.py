"""A real server with our SDK runtime: `/metrics` as Prometheus scrapes it (bearer key), and the
server's own output, every line JSON, uvicorn's included."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from exospherehost import GraphNodeModel, RetryPolicyModel, Runtime, StateManager
from tests.e2e.conftest import wait_run
from tests.e2e.nodes import Boom, Upper
from tests.state_manager.metrics.scrape import Scrape, parse
from tests.support.live_server import LiveServer, start_server

pytestmark = pytest.mark.e2e

ENQUEUE_ROUTE = "/v0/namespace/{namespace_name}/states/enqueue"


@pytest.fixture(scope="module")
def server() -> Iterator[LiveServer]:  # conftest's `sdk_env` points the SDK at this one
    live = start_server(QUEUE_STALL_SECONDS=1)
    try:
        yield live
    finally:
        live.stop()


def _graph(ns: str, name: str) -> list[GraphNodeModel]:
    return [
        GraphNodeModel(
            node_name=name, namespace=ns, identifier="first", inputs={"text": "hi"}, next_nodes=["then"]
        ),
        GraphNodeModel(
            node_name="Upper", namespace=ns, identifier="then", inputs={"text": "${{ first.outputs.text }}"}
        ),
    ]


def _scrape(server: LiveServer) -> Scrape:
    response = httpx.get(f"{server.base_url}/metrics", headers={"Authorization": f"Bearer {server.api_key}"})
    assert response.status_code == 200, response.text
    return parse(response.text)


def _log_lines(server: LiveServer) -> list[dict[str, Any]]:
    text = server.log_text()
    lines = [line for line in text.splitlines() if line.strip()]
    parsed = []
    for line in lines:
        try:
            parsed.append(json.loads(line))
        except json.JSONDecodeError:
            raise AssertionError(f"a server line is not JSON: {line!r}") from None
    return parsed


async def test_a_successful_and_a_failing_run_show_in_metrics_and_logs(sdk_env: LiveServer) -> None:
    ns = f"e2e-{uuid.uuid4().hex[:8]}"
    async with Runtime(ns, "rt", [Upper, Boom], workers=2), StateManager(ns) as client:
        await client.upsert_graph("ok", _graph(ns, "Upper"), secrets={})
        await client.upsert_graph(
            "bad", _graph(ns, "Boom"), secrets={}, retry_policy=RetryPolicyModel(max_retries=0)
        )
        ok = await client.trigger("ok")
        bad = await client.trigger("bad")
        ok_states = await wait_run(client, ok["run_id"], min_states=2)
        bad_states = await wait_run(client, bad["run_id"], min_states=1)

    m = _scrape(sdk_env)
    assert m.total("exosphere_runs_triggered_total", namespace=ns) == 2
    assert m.total("exosphere_runs_finished_total", namespace=ns, graph="ok", status="SUCCESS") == 1
    assert m.total("exosphere_runs_finished_total", namespace=ns, graph="bad", status="FAILED") == 1
    assert m.total("exosphere_run_duration_seconds_count", namespace=ns) == 2
    assert m.total("exosphere_states_created_total", namespace=ns) == 3
    assert m.total("exosphere_states_finished_total", namespace=ns, node="Upper", status="SUCCESS") == 2
    assert m.total("exosphere_states_finished_total", namespace=ns, node="Boom", status="ERRORED") == 1
    assert m.total("exosphere_state_queue_wait_seconds_count", namespace=ns) == 3
    assert m.total("exosphere_state_execution_seconds_count", namespace=ns) == 3
    assert m.total("exosphere_enqueue_requests_total", namespace=ns, result="claimed") >= 1
    # The three states came in at least two claims (the roots of both runs may come in one).
    assert m.total("exosphere_http_request_duration_seconds_count", route=ENQUEUE_ROUTE, code="200") >= 2
    ids = {ok["run_id"], bad["run_id"]} | {s["id"] for s in ok_states + bad_states}
    assert m.label_values().isdisjoint(ids)

    lines = _log_lines(sdk_env)  # every line JSON, or this fails
    uvicorn = [line for line in lines if line.get("logger") == "uvicorn.error"]
    assert any("Uvicorn running on" in line["event"] for line in uvicorn)
    requests = [line for line in lines if line["event"] == "http_request"]
    assert any(line["route"] == ENQUEUE_ROUTE and line["status"] == 200 for line in requests)
    assert all(line["route"] not in ("/health", "/metrics") for line in requests)  # both were called
    assert all(len(line["request_id"]) == 36 for line in requests)
    failed = [
        line
        for line in lines
        if line["event"] == "state_transition"
        and line["run_id"] == bad["run_id"]
        and line["status"] == "ERRORED"
    ]
    assert len(failed) == 1 and "cannot handle hi" in failed[0]["error"]
    ends = {line["run_id"]: line["status"] for line in lines if line["event"] == "run_finished"}
    assert (ends[ok["run_id"]], ends[bad["run_id"]]) == ("SUCCESS", "FAILED")


async def test_work_nobody_polls_for_is_warned_about_and_exported(sdk_env: LiveServer) -> None:
    ns = f"e2e-{uuid.uuid4().hex[:8]}"
    async with StateManager(ns) as client:
        # Registered once by a runtime that is gone, so the graph validates; nobody polls now.
        async with Runtime(ns, "gone", [Upper]):
            pass
        lone = GraphNodeModel(node_name="Upper", namespace=ns, identifier="only", inputs={"text": "hi"})
        await client.upsert_graph("orphan", [lone], secrets={})
        await client.trigger("orphan")

    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        warnings = [
            line
            for line in _log_lines(sdk_env)
            if line["event"] == "queue_stalled" and line["namespace"] == ns
        ]
        if warnings:
            break
        await asyncio.sleep(0.2)
    assert [(w["node"], w["level"]) for w in warnings] == [("Upper", "warning")]
    m = _scrape(sdk_env)
    assert m.total("exosphere_node_stalled", namespace=ns, node="Upper") == 1
    assert m.total("exosphere_queue_backlog_states", namespace=ns, node="Upper") == 1
