"""Joins (`unites`): they fire exactly once when their scope settles, or fail; they never hang."""

from __future__ import annotations

import asyncio
import json

import pytest
from bson import ObjectId

from state_manager.db.documents import State
from tests.factories import NO_RETRY, Api, Json, Worker, graph, node, template

R, S, P, M = node("R"), node("S"), node("P"), node("M", inputs=["x", "z"])


def fan_join(strategy: str | None = None, **graph_options: object) -> Json:
    """r -> s -> p; m unites r and reads r's output."""
    return graph(
        template("r", "R", {"x": "start"}, ["s"]),
        template("s", "S", {"x": "${{ r.outputs.y }}"}, ["p"]),
        template("p", "P", {"x": "${{ s.outputs.y }}"}, ["m"]),
        template("m", "M", {"x": "joined ${{ r.outputs.y }}", "z": "static"}, unites="r", strategy=strategy),
        **graph_options,
    )


async def _start(api: Api, body: Json) -> str:
    await api.setup("join", body, R, S, P, M)
    run_id = str((await api.trigger("join"))["run_id"])
    await Worker(api, "R").execute([{"y": "root-out"}])
    await Worker(api, "S").execute([{"y": "s1"}, {"y": "s2"}, {"y": "s3"}])
    return run_id


async def test_join_fires_once_after_the_last_branch_succeeds(api: Api) -> None:
    run_id = await _start(api, fan_join())
    p_states = await api.claim("P", batch_size=10)
    assert len(p_states) == 3

    for index, state in enumerate(p_states):
        assert "m" not in await api.by_identifier(run_id), f"join created after {index} of 3 branches"
        await api.executed(state["state_id"], [{"y": f"p{index}"}])

    states = await api.by_identifier(run_id)
    [join] = states["m"]
    r_state = states["r"][0]
    assert join["status"] == "CREATED"
    assert join["inputs"] == {"x": "joined root-out", "z": "static"}
    assert join["parents"] == {"r": r_state["id"]}
    assert join["does_unites"] is True
    await Worker(api, "M").execute()
    summary = await api.run_summary(run_id)
    assert (summary["status"], summary["total_count"], summary["success_count"]) == ("SUCCESS", 8, 8)


async def test_join_does_not_fire_while_a_branch_is_retrying(api: Api) -> None:
    run_id = await _start(
        api, fan_join(retry_policy={"max_retries": 1, "strategy": "FIXED", "backoff_factor": 1})
    )
    first, second, third = await api.claim("P", batch_size=10)
    await api.executed(first["state_id"], [{"y": "ok"}])
    await api.errored(second["state_id"], "flaky")
    await api.executed(third["state_id"], [{"y": "ok"}])
    assert "m" not in await api.by_identifier(run_id)

    await Worker(api, "P").execute([{"y": "second try"}])

    [join] = (await api.by_identifier(run_id))["m"]
    assert join["status"] == "CREATED"


async def test_a_failed_branch_cancels_an_all_success_join(api: Api) -> None:
    run_id = await _start(api, fan_join(retry_policy=NO_RETRY))
    first, second, last = await api.claim("P", batch_size=10)
    await api.executed(first["state_id"], [{"y": "ok"}])
    await api.executed(second["state_id"], [{"y": "ok"}])

    await api.errored(last["state_id"], "broken")  # the last branch to settle fails

    [join] = (await api.by_identifier(run_id))["m"]
    assert join["status"] == "CANCELLED"
    assert "p" in join["error"]
    assert "r" in join["error"]
    assert await api.claim("M") == []
    summary = await api.run_summary(run_id)
    assert (summary["status"], summary["pending_count"]) == ("FAILED", 0)


async def test_a_cancelled_join_is_made_again_when_its_failed_branch_is_retried(api: Api) -> None:
    run_id = await _start(api, fan_join(retry_policy=NO_RETRY))
    first, second, last = await api.claim("P", batch_size=10)
    await api.executed(first["state_id"], [{"y": "ok"}])
    await api.executed(second["state_id"], [{"y": "ok"}])
    await api.errored(last["state_id"], "broken")
    [cancelled] = (await api.by_identifier(run_id))["m"]

    await api.call("POST", f"/state/{last['state_id']}/manual-retry", {"fanout_id": "fix-p"})
    await Worker(api, "P").execute([{"y": "fixed"}])
    claimed = await Worker(api, "M").execute()

    assert claimed["state_id"] != cancelled["id"]
    assert claimed["inputs"] == {"x": "joined root-out", "z": "static"}
    assert (await api.run_summary(run_id))["status"] == "SUCCESS"
    superseded = await api.state(run_id, cancelled["id"])
    assert superseded["status"] == "RETRY_CREATED"
    # The superseded join cannot be retried on its own any more.
    await api.call("POST", f"/state/{cancelled['id']}/manual-retry", {"fanout_id": "fix-m"}, expect=400)


async def test_a_failed_early_branch_cancels_the_join_when_the_rest_settle(api: Api) -> None:
    run_id = await _start(api, fan_join(retry_policy=NO_RETRY))
    first, *rest = await api.claim("P", batch_size=10)
    await api.errored(first["state_id"], "broken")
    assert "m" not in await api.by_identifier(run_id)

    for state in rest:
        await api.executed(state["state_id"], [{"y": "ok"}])

    [join] = (await api.by_identifier(run_id))["m"]
    assert join["status"] == "CANCELLED"
    assert (await api.run_summary(run_id))["status"] == "FAILED"


async def test_an_all_done_join_fires_despite_a_failed_branch(api: Api) -> None:
    run_id = await _start(api, fan_join("ALL_DONE", retry_policy=NO_RETRY))
    first, second, last = await api.claim("P", batch_size=10)
    await api.executed(first["state_id"], [{"y": "ok"}])
    await api.executed(second["state_id"], [{"y": "ok"}])

    await api.errored(last["state_id"], "broken")

    [join] = (await api.by_identifier(run_id))["m"]
    assert join["status"] == "CREATED"
    assert join["inputs"] == {"x": "joined root-out", "z": "static"}
    await Worker(api, "M").execute()
    assert (await api.run_summary(run_id))["status"] == "FAILED"  # a branch failed all the same


@pytest.mark.parametrize("strategy", [None, "ALL_DONE"])
async def test_a_pruned_branch_settles_the_join(api: Api, strategy: str | None) -> None:
    run_id = await _start(api, fan_join(strategy))
    first, second, last = await api.claim("P", batch_size=10)
    await api.executed(first["state_id"], [{"y": "ok"}])
    await api.executed(second["state_id"], [{"y": "ok"}])

    await api.call("POST", f"/state/{last['state_id']}/prune", {"data": {}})

    [join] = (await api.by_identifier(run_id))["m"]
    assert join["status"] == "CREATED"
    await Worker(api, "M").execute()
    assert (await api.run_summary(run_id))["status"] == "SUCCESS"


async def test_join_on_the_direct_predecessor_fires(api: Api) -> None:
    await api.setup(
        "direct",
        graph(
            template("r", "R", {"x": "start"}, ["m"]),
            template("m", "M", {"x": "${{ r.outputs.y }}", "z": "z"}, unites="r"),
        ),
        R,
        M,
    )
    run_id = (await api.trigger("direct"))["run_id"]

    await Worker(api, "R").execute([{"y": "root-out"}])

    [join] = (await api.by_identifier(run_id))["m"]
    assert (join["status"], join["inputs"]) == ("CREATED", {"x": "root-out", "z": "z"})
    await Worker(api, "M").execute()
    assert (await api.run_summary(run_id))["status"] == "SUCCESS"


async def test_join_on_a_fanned_out_node_joins_each_clone_subtree(api: Api) -> None:
    """m unites s: each `s` clone is its own anchor, so there is one `m` per `s` branch."""
    await api.setup(
        "per-branch",
        graph(
            template("r", "R", {"x": "start"}, ["s"]),
            template("s", "S", {"x": "${{ r.outputs.y }}"}, ["p"]),
            template("p", "P", {"x": "${{ s.outputs.y }}"}),
            template("m", "M", {"x": "${{ s.outputs.y }}", "z": "${{ r.outputs.y }}"}, unites="s"),
        ),
        R,
        S,
        P,
        M,
    )
    run_id = (await api.trigger("per-branch"))["run_id"]
    await Worker(api, "R").execute([{"y": "root"}])
    await Worker(api, "S").execute([{"y": "s1"}, {"y": "s2"}])

    await Worker(api, "P").drain()

    joins = (await api.by_identifier(run_id))["m"]
    assert sorted(j["inputs"]["x"] for j in joins) == ["s1", "s2"]
    assert {j["inputs"]["z"] for j in joins} == {"root"}


async def test_two_joins_on_one_anchor_fire_together_without_waiting_for_each_other(api: Api) -> None:
    body = graph(
        template("r", "R", {"x": "start"}, ["s"]),
        template("s", "S", {"x": "${{ r.outputs.y }}"}, ["p"]),
        template("p", "P", {"x": "${{ s.outputs.y }}"}),
        template("m", "M", {"x": "m ${{ r.outputs.y }}", "z": "1"}, unites="r"),
        template("n", "M", {"x": "n ${{ r.outputs.y }}", "z": "2"}, unites="r"),
    )
    run_id = await _start(api, body)
    await Worker(api, "P").drain([{"y": "done"}])

    states = await api.by_identifier(run_id)
    assert [s["status"] for s in states["m"]] == ["CREATED"]
    assert [s["status"] for s in states["n"]] == ["CREATED"]


async def test_branches_finishing_at_once_on_two_replicas_create_one_join(api: Api) -> None:
    run_id = await _start(api, fan_join())
    p_states = await api.claim("P", batch_size=10)

    await asyncio.gather(*(api.executed(s["state_id"], [{"y": "p"}]) for s in p_states))

    [join] = (await api.by_identifier(run_id))["m"]
    assert join["status"] == "CREATED"


async def test_a_join_inside_another_joins_scope_is_waited_for(api: Api) -> None:
    """m unites each `s` branch and q follows it; o unites r and collects every q: o waits for
    the inner joins and what follows them, which are made while o's branches arrive."""
    q = node("Q", inputs=["x"])
    o = node("O", inputs=["all"])
    await api.setup(
        "nested",
        graph(
            template("r", "R", {"x": "start"}, ["s"]),
            template("s", "S", {"x": "${{ r.outputs.y }}"}, ["p"]),
            template("p", "P", {"x": "${{ s.outputs.y }}"}),
            template("m", "M", {"x": "${{ s.outputs.y }}", "z": "z"}, ["q"], unites="s"),
            template("q", "Q", {"x": "${{ m.outputs.y }}"}),
            template("o", "O", {"all": "${{ q.outputs.y[*] }}"}, unites="r"),
        ),
        R,
        S,
        P,
        M,
        q,
        o,
    )
    run_id = (await api.trigger("nested"))["run_id"]
    await Worker(api, "R").execute([{"y": "root"}])
    await Worker(api, "S").execute([{"y": "s1"}, {"y": "s2"}])
    await Worker(api, "P").drain()
    assert "o" not in await api.by_identifier(run_id)  # the inner joins are made, not yet run

    for branch in await api.claim("M", batch_size=10):
        await api.executed(branch["state_id"], [{"y": f"m-{branch['inputs']['x']}"}])
        assert "o" not in await api.by_identifier(run_id)
    for branch in await api.claim("Q", batch_size=10):
        await api.executed(branch["state_id"], [{"y": f"q-{branch['inputs']['x']}"}])

    [outer] = (await api.by_identifier(run_id))["o"]
    assert (outer["status"], sorted(json.loads(outer["inputs"]["all"]))) == ("CREATED", ["q-m-s1", "q-m-s2"])
    await Worker(api, "O").execute()
    assert (await api.run_summary(run_id))["status"] == "SUCCESS"


async def test_a_join_on_a_fan_out_with_no_next_states_joins_each_copy(api: Api) -> None:
    await api.setup(
        "leaves",
        graph(
            template("r", "R", {"x": "start"}, ["s"]),
            template("s", "S", {"x": "${{ r.outputs.y }}"}),
            template("m", "M", {"x": "${{ s.outputs.y }}", "z": "z"}, unites="s"),
        ),
        R,
        S,
        M,
    )
    run_id = (await api.trigger("leaves"))["run_id"]
    await Worker(api, "R").execute([{"y": "root"}])
    await Worker(api, "S").execute([{"y": "s1"}, {"y": "s2"}, {"y": "s3"}])

    joins = (await api.by_identifier(run_id))["m"]
    assert sorted(j["inputs"]["x"] for j in joins) == ["s1", "s2", "s3"]
    await Worker(api, "M").drain()
    assert (await api.run_summary(run_id))["status"] == "SUCCESS"


async def test_a_run_written_before_anchors_kept_their_tally_is_joined_by_reading_it(api: Api) -> None:
    """An upgraded server: the anchor was written by a server that kept no tally below it (no
    `join_tally`); its branches, written after, decide the join the old way."""
    run_id = await _start(api, fan_join())
    await State.get_motor_collection().update_many(
        {"run_id": run_id, "identifier": "r"},
        {"$set": {"join_tally": False}, "$unset": {"below_owed": "", "below_open": "", "below_created": ""}},
    )
    branches = await api.claim("P", batch_size=10)
    for branch in branches[:-1]:
        await api.executed(branch["state_id"], [{"y": "ok"}])
        assert "m" not in await api.by_identifier(run_id)

    await api.executed(branches[-1]["state_id"], [{"y": "ok"}])

    [join] = (await api.by_identifier(run_id))["m"]
    assert (join["status"], join["inputs"]["x"]) == ("CREATED", "joined root-out")
    await Worker(api, "M").execute()
    assert (await api.run_summary(run_id))["status"] == "SUCCESS"


async def test_a_new_attempt_of_an_anchor_counts_nothing_of_the_old_one_below_it(api: Api) -> None:
    """An attempt that failed after counting children below it (its spawn given up) leaves bits
    its retry must not inherit, or the join above the retry would wait for them for ever."""
    await api.setup("anchor", fan_join(retry_policy=NO_RETRY), R, S, P, M)
    run_id = (await api.trigger("anchor"))["run_id"]
    failed, _ = await Worker(api, "R").fail()
    await State.get_motor_collection().update_one(
        {"_id": ObjectId(failed["state_id"])},
        {"$set": {"below_owed": {"cgone": {"0": 1}}, "below_open": 1, "below_created": 1}},
    )

    await api.call("POST", f"/state/{failed['state_id']}/manual-retry", {"fanout_id": "again"})
    await Worker(api, "R").execute([{"y": "root-out"}])
    await Worker(api, "S").execute()
    await Worker(api, "P").execute()

    [join] = (await api.by_identifier(run_id))["m"]
    assert (join["status"], join["inputs"]["x"]) == ("CREATED", "joined root-out")
