"""Node timeouts: `timeout_seconds` on a template node bounds an attempt's running time from
claim to report, heartbeats or not; the retry policy decides what follows."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from state_manager.services.context import AppContext
from state_manager.services.recovery import recover_once
from tests.factories import ALPHA, BETA, NO_RETRY, Api, Json, fixed_retry, graph, template

TIMEOUT_SECONDS = 1


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    return {"state_lease_seconds": 60}


def timed(**options: Any) -> Json:
    root = {**template("a", "Alpha", {"x": "1"}, ["b"]), "timeout_seconds": TIMEOUT_SECONDS}
    return graph(root, template("b", "Beta", {"x": "2"}), **options)


async def _claim_and_overrun(api: Api, ctx: AppContext, **options: Any) -> Json:
    await api.setup("g", timed(**options), ALPHA, BETA)
    await api.trigger("g")
    [state] = await api.claim("Alpha", batch_size=1)
    assert 0 < state["timeout_ms"] <= TIMEOUT_SECONDS * 1000
    beat = await api.call("POST", f"/state/{state['state_id']}/heartbeat", {})
    assert beat["lease_ms"] == 60_000  # a heartbeat extends the lease, never the timeout
    await asyncio.sleep(TIMEOUT_SECONDS + 0.1)
    assert (await recover_once(ctx)).timed_out == 1
    return state


async def test_an_attempt_past_its_timeout_is_timed_out_and_its_holder_fenced(
    api: Api, ctx: AppContext
) -> None:
    state = await _claim_and_overrun(api, ctx, retry_policy=NO_RETRY)

    [stored] = await api.run_states(state["run_id"])
    assert stored["status"] == "TIMEDOUT"
    assert f"timeout of {TIMEOUT_SECONDS}s" in stored["error"]
    for suffix, body in (
        (f"/state/{state['state_id']}/executed", {"outputs": [{"y": "late"}]}),
        (f"/state/{state['state_id']}/heartbeat", {}),
    ):
        answer = await api.client.post(api.url(suffix), json=body)
        assert (answer.status_code, answer.json()["code"]) == (409, "STATE_TIMED_OUT")
    assert (await api.run_summary(state["run_id"]))["status"] == "FAILED"


async def test_the_retry_policy_decides_about_another_attempt(api: Api, ctx: AppContext) -> None:
    state = await _claim_and_overrun(api, ctx, retry_policy=fixed_retry(1, 1))

    states = await api.by_identifier(state["run_id"])
    assert sorted(s["status"] for s in states["a"]) == ["CREATED", "RETRY_CREATED"]
    await asyncio.sleep(0.01)
    [again] = await api.claim("Alpha", batch_size=1)
    assert again["retry_count"] == 1 and again["timeout_ms"] > 0  # the new attempt has its own clock


async def test_nodes_without_a_timeout_have_none(api: Api) -> None:
    await api.setup("g", timed(), ALPHA, BETA)
    await api.trigger("g")
    [a] = await api.claim("Alpha", batch_size=1)
    await api.executed(a["state_id"], [{"y": "1"}])
    [b] = await api.claim("Beta", batch_size=1)

    assert b["timeout_ms"] is None
    assert (await api.get_graph("g"))["nodes"][0]["timeout_seconds"] == TIMEOUT_SECONDS


@pytest.mark.parametrize("value", [0, -1, 31 * 24 * 3600])
async def test_a_timeout_out_of_range_is_422(api: Api, value: int) -> None:
    await api.register(ALPHA, BETA)
    body = graph({**template("a", "Alpha", {"x": "1"}), "timeout_seconds": value})
    answer = await api.upsert("g", body, expect=422)
    assert "timeout_seconds" in str(answer["detail"])
