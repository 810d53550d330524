"""Repair in the same run: a map-reduce whose branch failed, once the branch is fixed and retried,
gives the result a clean run gives (invariant I4: a join runs with its branches' outputs as they
are when it runs), under ALL_SUCCESS and ALL_DONE; a retried join collects its inputs afresh."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.factories import Api
from tests.support.map_reduce import CLEAN_TOTAL, ITEMS, NODES, execute, map_reduce, result, work


async def _retry_failed(api: Api, run_id: str) -> Any:
    return await api.call("POST", f"/run/{run_id}/retry-failed")


@pytest.mark.parametrize("strategy", ["ALL_SUCCESS", "ALL_DONE"])
async def test_a_repaired_map_reduce_ends_as_a_clean_run(api: Api, strategy: str) -> None:
    await api.setup("mr", map_reduce(strategy), *NODES)
    clean = (await api.trigger("mr"))["run_id"]
    await work(api, broken=None)
    assert await result(api, clean) == ("SUCCESS", [CLEAN_TOTAL])

    run_id = (await api.trigger("mr"))["run_id"]
    await work(api, broken="2")
    status, partial = await result(api, run_id)
    assert status == "FAILED"
    assert partial == ([] if strategy == "ALL_SUCCESS" else [str(9 + 1 + 25)])

    answer = await _retry_failed(api, run_id)  # the node is fixed: Square now works for 2
    assert answer["retried"] == 1
    executed = await work(api, broken=None)

    assert executed == 2  # the retried branch and the join, nothing else again
    status, totals = await result(api, run_id)
    assert (status, totals[-1:]) == ("SUCCESS", [CLEAN_TOTAL])
    states = await api.run_states(run_id)
    superseded = [s for s in states if s["identifier"] == "sum" and s["status"] == "RETRY_CREATED"]
    assert len(superseded) == 1  # the join made from the failed branches is kept, superseded


async def test_a_repeated_retry_failed_retries_nothing_twice(api: Api) -> None:
    await api.setup("mr", map_reduce("ALL_SUCCESS"), *NODES)
    run_id = (await api.trigger("mr"))["run_id"]
    await work(api, broken="2")

    first = await _retry_failed(api, run_id)
    again = await _retry_failed(api, run_id)
    await work(api, broken=None)

    assert (first["retried"], again["retried"]) == (1, 0)
    assert await result(api, run_id) == ("SUCCESS", [CLEAN_TOTAL])
    sums = (await api.by_identifier(run_id))["sum"]
    assert sorted(s["status"] for s in sums) == ["RETRY_CREATED", "SUCCESS"]


async def test_retrying_one_branch_makes_the_join_again(api: Api) -> None:
    await api.setup("mr", map_reduce("ALL_SUCCESS"), *NODES)
    run_id = (await api.trigger("mr"))["run_id"]
    await work(api, broken="2")
    [failed] = [s for s in await api.run_states(run_id) if s["status"] == "ERRORED"]

    await api.call("POST", f"/state/{failed['id']}/manual-retry", {"fanout_id": "fix-1"})
    await work(api, broken=None)

    assert await result(api, run_id) == ("SUCCESS", [CLEAN_TOTAL])


async def test_a_join_blocked_by_failed_branches_is_refused_and_unchanged(api: Api) -> None:
    await api.setup("mr", map_reduce("ALL_SUCCESS"), *NODES)
    run_id = (await api.trigger("mr"))["run_id"]
    await work(api, broken="2")
    [join] = (await api.by_identifier(run_id))["sum"]
    assert join["status"] == "CANCELLED"

    answer = await api.call("POST", f"/state/{join['id']}/manual-retry", {"fanout_id": "j"}, expect=409)

    assert "square" in answer["detail"] and "retry" in answer["detail"]
    assert [s["status"] for s in (await api.by_identifier(run_id))["sum"]] == ["CANCELLED"]
    assert (await api.run_summary(run_id))["status"] == "FAILED"


async def test_a_retried_join_collects_its_inputs_afresh(api: Api) -> None:
    """The join's own node failed; retrying it makes the next generation from the branches."""
    await api.setup("mr", map_reduce("ALL_SUCCESS"), *NODES)
    run_id = (await api.trigger("mr"))["run_id"]
    await work(api, broken=None)
    # Run it again with a join that fails: the same graph, a Sum worker that errors once.
    run_id = (await api.trigger("mr"))["run_id"]
    for name in ("Start", "Split", "Square"):
        for state in await api.claim(name, batch_size=50):
            await execute(api, name, state, None)
    [held] = await api.claim("Sum")
    await api.errored(held["state_id"], "sum crashed")
    assert (await api.run_summary(run_id))["status"] == "FAILED"

    answer = await api.call("POST", f"/state/{held['state_id']}/manual-retry", {"fanout_id": "again"})

    assert answer["status"] == "CREATED" and answer["id"] != held["state_id"]
    [made] = await api.claim("Sum")
    assert made["state_id"] == answer["id"]
    assert json.loads(made["inputs"]["values"]) == [str(int(n) ** 2) for n in ITEMS]
    await execute(api, "Sum", made, None)
    assert await result(api, run_id) == ("SUCCESS", [CLEAN_TOTAL])
