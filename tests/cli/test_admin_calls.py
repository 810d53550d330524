"""The `StateManager` calls the CLI stands on (`_admin.py`), in-process against a real server."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from exospherehost import ConflictError, GraphNodeModel, RetryPolicyModel, Runtime, StateManager
from tests.e2e.nodes import Boom, Upper
from tests.support.live_server import LiveServer

pytestmark = pytest.mark.e2e


def _node(ns: str, name: str, identifier: str = "only") -> GraphNodeModel:
    return GraphNodeModel(node_name=name, namespace=ns, identifier=identifier, inputs={"text": "x"})


async def _until_final(sm: StateManager, run_id: str) -> dict[str, object]:
    for _ in range(200):
        run = await sm.get_run(run_id)
        if run["status"] in ("SUCCESS", "FAILED", "CANCELLED"):
            return run
        await asyncio.sleep(0.05)
    raise AssertionError(f"run {run_id} did not end")


async def test_iter_runs_follows_the_cursor_newest_first(server: LiveServer) -> None:
    ns = f"adm-{uuid.uuid4().hex[:8]}"
    async with (
        StateManager(ns, server.base_url, server.api_key) as sm,
        Runtime(ns, "w", [Upper], state_manager_uri=server.base_url, key=server.api_key),
    ):
        await sm.upsert_graph("a", [_node(ns, "Upper")], secrets={})
        await sm.upsert_graph("b", [_node(ns, "Upper")], secrets={})
        started = [(await sm.trigger(graph))["run_id"] for graph in ("a", "b", "a")]

        every = [run["run_id"] async for run in sm.iter_runs(page_size=1)]
        only_a = [run["run_id"] async for run in sm.iter_runs(graph="a", page_size=1)]
        first_page = await sm.search_runs(limit=2)

    assert every == started[::-1]
    assert only_a == [started[2], started[0]]
    assert len(first_page["runs"]) == 2 and first_page["next_cursor"]


async def test_progress_states_and_retries_of_a_failed_run(server: LiveServer) -> None:
    ns = f"adm-{uuid.uuid4().hex[:8]}"
    no_retry = RetryPolicyModel(max_retries=0)
    async with (
        StateManager(ns, server.base_url, server.api_key) as sm,
        Runtime(ns, "w", [Boom], state_manager_uri=server.base_url, key=server.api_key),
    ):
        await sm.upsert_graph("boom", [_node(ns, "Boom")], secrets={}, retry_policy=no_retry)
        run_id = (await sm.trigger("boom"))["run_id"]
        run = await _until_final(sm, run_id)
        progress = await sm.get_run_progress(run_id)
        [failed] = (await sm.list_run_states(run_id, status="ERRORED"))["states"]
        first = await sm.retry_state(failed["id"], fanout_id="once")
        with pytest.raises(ConflictError, match="Duplicate retry"):
            await sm.retry_state(failed["id"], fanout_id="once")
        states = (await sm.list_run_states(run_id))["states"]
        viewed = await sm.get_state(failed["id"])

    assert run["status"] == "FAILED"
    assert [(n["identifier"], n["status"]) for n in progress["nodes"]] == [("only", "FAILED")]
    assert "cannot handle x" in viewed["error"]
    assert first["fanout_id"] == "once"
    assert sum(s["manual_retry_fanout_id"] == "once" for s in states) == 1  # the same fanout_id retries once


async def test_apply_graph_returns_an_invalid_graph_instead_of_raising(server: LiveServer) -> None:
    ns = f"adm-{uuid.uuid4().hex[:8]}"
    body = {
        "secrets": {},
        "nodes": [_node(ns, "Unregistered").model_dump(mode="json", exclude={"timeout_seconds"})],
    }
    async with StateManager(ns, server.base_url, server.api_key) as sm:
        graph = await sm.apply_graph("g", body)
        listed = await sm.list_graphs()

    assert graph["validation_status"] == "INVALID"
    assert graph["validation_errors"]
    assert [g["name"] for g in listed] == ["g"]
