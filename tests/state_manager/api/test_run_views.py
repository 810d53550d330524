"""Runs as the dashboard and the CLI read them: stored status (PENDING, RUNNING, then final) with
times and counts, filtered cursor-paged listings, a run's paged states, its template graph with
per-node counts, and the run-wide retry of failed states."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

from state_manager.db.documents import Run, State
from state_manager.services.context import AppContext
from state_manager.services.recovery import recover_once
from tests.factories import (
    ALPHA,
    BETA,
    NO_RETRY,
    Api,
    Json,
    Worker,
    chain,
    graph,
    node,
    now_ms,
    template,
)


async def _run(api: Api, run_id: str, expect: int = 200) -> Any:
    return await api.call("GET", f"/run/{run_id}", expect=expect)


async def _runs(api: Api, query: str = "", expect: int = 200) -> Any:
    return await api.call("GET", f"/runs{query}", expect=expect)


async def test_a_run_is_pending_then_running_then_success_with_its_times_and_counts(api: Api) -> None:
    await api.setup("g", chain(), ALPHA, BETA)
    before = now_ms()
    run_id = (await api.trigger("g", {"store": {"k": "v"}}))["run_id"]

    pending = await _run(api, run_id)
    assert pending["status"] == "PENDING" and pending["started_ms"] is None
    assert pending["finished_ms"] is None and pending["triggered_by"] == "api"
    assert pending["store"] == {"k": "v"} and pending["counts"] == {"CREATED": 1}
    assert before <= pending["created_ms"] <= now_ms()

    await Worker(api, "Alpha").execute()
    running = await _run(api, run_id)
    assert running["status"] == "RUNNING" and running["started_ms"] >= pending["created_ms"]
    assert running["counts"] == {"SUCCESS": 1, "CREATED": 1}
    # The upstream listing keeps its values: no RUNNING there.
    assert (await api.run_summary(run_id))["status"] == "PENDING"

    await Worker(api, "Beta").execute()
    done = await _run(api, run_id)
    assert done["status"] == "SUCCESS" and done["finished_ms"] >= done["started_ms"]
    assert done["counts"] == {"SUCCESS": 2} and done["success_count"] == 2 and done["total_count"] == 2
    assert done["duration_ms"] == done["finished_ms"] - done["created_ms"]
    stored = await Run.find_one({"run_id": run_id})
    assert stored is not None and stored.status == "SUCCESS" and stored.final is not None
    assert (await api.run_summary(run_id))["status"] == "SUCCESS"


async def test_a_failed_run_and_a_cancelled_run_are_stored_as_such(api: Api) -> None:
    await api.setup("g", chain(retry_policy=NO_RETRY), ALPHA, BETA)
    failing = (await api.trigger("g"))["run_id"]
    await Worker(api, "Alpha").fail("no luck")
    delayed = (await api.trigger("g", {"start_delay": 60_000}))["run_id"]
    await api.call("POST", f"/run/{delayed}/cancel")

    failed, cancelled = await _run(api, failing), await _run(api, delayed)

    assert (
        failed["status"] == "FAILED" and failed["counts"] == {"ERRORED": 1} and failed["errored_count"] == 1
    )
    assert cancelled["status"] == "CANCELLED" and cancelled["finished_ms"] is not None
    assert cancelled["cancelled_at"] == cancelled["finished_ms"] and cancelled["counts"] == {"CANCELLED": 1}
    assert [r["run_id"] for r in (await _runs(api, "?status=CANCELLED"))["runs"]] == [delayed]
    assert [r["run_id"] for r in (await _runs(api, "?status=FAILED"))["runs"]] == [failing]


async def test_the_two_last_branches_ending_at_once_still_finish_the_run(api: Api) -> None:
    fan = graph(
        template("a", "Alpha", {"x": "go"}, ["b"]), template("b", "Beta", {"x": "${{ a.outputs.y }}"})
    )
    await api.setup("g", fan, ALPHA, BETA)
    run_id = (await api.trigger("g"))["run_id"]
    await Worker(api, "Alpha").execute([{"y": "1"}, {"y": "2"}])
    claimed = await api.claim("Beta", batch_size=10)
    assert len(claimed) == 2

    await asyncio.gather(*(api.executed(state["state_id"], [{"y": "ok"}]) for state in claimed))

    assert (await _run(api, run_id))["status"] == "SUCCESS"
    stored = await Run.find_one({"run_id": run_id})
    assert stored is not None and stored.finished_ms is not None


async def test_runs_are_filtered_by_graph_status_and_time_newest_first(api: Api) -> None:
    await api.register(ALPHA, BETA)
    await api.setup("g", chain())
    await api.setup("h", chain())
    first = (await api.trigger("g"))["run_id"]
    await asyncio.sleep(0.01)
    middle = now_ms()
    await asyncio.sleep(0.01)  # `until` includes its millisecond: the next run is created after it
    second = (await api.trigger("h"))["run_id"]
    third = (await api.trigger("g"))["run_id"]
    await Worker(api, "Alpha").claim_one()  # the oldest due: `first` is now RUNNING

    everything = await _runs(api)
    assert [r["run_id"] for r in everything["runs"]] == [third, second, first]
    assert everything["next_cursor"] is None and everything["namespace"] == "testns"
    assert [r["run_id"] for r in (await _runs(api, "?graph=g"))["runs"]] == [third, first]
    assert [r["run_id"] for r in (await _runs(api, "?status=RUNNING"))["runs"]] == [first]
    assert [r["run_id"] for r in (await _runs(api, "?status=PENDING&graph=g"))["runs"]] == [third]
    assert [r["run_id"] for r in (await _runs(api, f"?since={middle}"))["runs"]] == [third, second]
    assert [r["run_id"] for r in (await _runs(api, f"?until={middle}"))["runs"]] == [first]
    iso = datetime.fromtimestamp(middle / 1000, UTC).isoformat()
    assert [r["run_id"] for r in (await _runs(api, f"?since={iso.replace('+00:00', 'Z')}"))["runs"]] == [
        third,
        second,
    ]
    assert (await _runs(api))["runs"][0]["graph_name"] == "g"
    assert (await api.call("GET", "/runs", namespace="otherns"))["runs"] == []


async def test_runs_are_paged_with_a_cursor_without_gaps_or_repeats(api: Api) -> None:
    await api.setup("g", chain(), ALPHA, BETA)
    made = [(await api.trigger("g"))["run_id"] for _ in range(7)]

    seen: list[str] = []
    cursor = ""
    pages = 0
    while True:
        page = await _runs(api, f"?limit=3{cursor}")
        seen += [r["run_id"] for r in page["runs"]]
        pages += 1
        if page["next_cursor"] is None:
            break
        cursor = f"&cursor={page['next_cursor']}"

    assert seen == list(reversed(made)) and pages == 3


async def test_bad_run_filters_are_clear_4xx(api: Api) -> None:
    assert "cursor" in (await _runs(api, "?cursor=nope", expect=400))["detail"]
    assert "since" in (await _runs(api, "?since=yesterday", expect=400))["detail"]
    bad_status = await _runs(api, "?status=DONE", expect=422)
    assert bad_status["detail"][0]["loc"] == ["query", "status"]
    assert (await _runs(api, "?limit=0", expect=422))["detail"][0]["loc"] == ["query", "limit"]
    assert "not found" in (await _run(api, "no-such-run", expect=404))["detail"]
    assert (await api.call("GET", "/run/no-such-run/states", expect=404))["detail"]
    assert (await api.call("GET", "/run/x/graph?view=states", expect=422))["detail"][0]["loc"] == [
        "query",
        "view",
    ]


async def _fan_out(api: Api, branches: int, *, beta_retry: Json | None = None) -> str:
    fan = graph(
        template("a", "Alpha", {"x": "go"}, ["b"]),
        template("b", "Beta", {"x": "${{ a.outputs.y }}"}),
        retry_policy=beta_retry or NO_RETRY,
    )
    await api.setup("fan", fan, ALPHA, BETA)
    run_id: str = (await api.trigger("fan"))["run_id"]
    await Worker(api, "Alpha").execute([{"y": str(i)} for i in range(branches)])
    return run_id


async def test_a_runs_states_are_paged_and_filtered(api: Api) -> None:
    run_id = await _fan_out(api, 7)
    [failing, *_] = await api.claim("Beta", batch_size=1)
    await api.errored(failing["state_id"], "broken <b>")

    ids: list[str] = []
    cursor = ""
    while True:
        page = await api.call("GET", f"/run/{run_id}/states?limit=3{cursor}")
        ids += [s["id"] for s in page["states"]]
        if page["next_cursor"] is None:
            break
        cursor = f"&cursor={page['next_cursor']}"
    # A fan-out of 7: the reporting state and 6 copies of it (one per further output), each
    # with its child.
    assert len(ids) == len(set(ids)) == 14 and ids == sorted(ids)

    errored = (await api.call("GET", f"/run/{run_id}/states?status=ERRORED"))["states"]
    assert [s["id"] for s in errored] == [failing["state_id"]]
    [state] = errored
    assert state["error"] == "broken <b>" and state["claimed_ms"] <= state["ended_ms"]
    assert state["retry_count"] == 0 and state["parents"]["a"] in ids
    betas = (await api.call("GET", f"/run/{run_id}/states?identifier=b&limit=500"))["states"]
    assert len(betas) == 7 and {s["identifier"] for s in betas} == {"b"}

    view = await api.call("GET", f"/state/{failing['state_id']}/view")
    assert view == state
    assert await api.call("GET", f"/state/{failing['state_id']}/view", namespace="otherns", expect=404)
    assert "Invalid state id" in (await api.call("GET", "/state/zzz/view", expect=422))["detail"]


async def test_the_template_graph_counts_a_fan_out_in_one_node(api: Api) -> None:
    run_id = await _fan_out(api, 3)
    first, second, _ = await api.claim("Beta", batch_size=3)
    await api.executed(first["state_id"], [{"y": "ok"}])
    await api.errored(second["state_id"], "bad")

    view = await api.call("GET", f"/run/{run_id}/graph?view=template")

    nodes = {n["identifier"]: n for n in view["nodes"]}
    assert nodes["a"]["status"] == "SUCCESS" and nodes["a"]["counts"] == {"SUCCESS": 3}
    assert nodes["b"]["counts"] == {"SUCCESS": 1, "ERRORED": 1, "QUEUED": 1} and nodes["b"]["total"] == 3
    assert nodes["b"]["status"] == "RUNNING" and nodes["a"]["next_nodes"] == ["b"]
    assert view["edges"] == [{"source": "a", "target": "b"}] and view["status"] == "RUNNING"

    [third] = (await api.call("GET", f"/run/{run_id}/states?status=QUEUED"))["states"]
    await api.executed(third["id"], [{"y": "ok"}])
    after = await api.call("GET", f"/run/{run_id}/graph")
    assert {n["identifier"]: n["status"] for n in after["nodes"]} == {"a": "SUCCESS", "b": "FAILED"}
    assert after["status"] == "FAILED"


async def test_a_node_nothing_reached_yet_is_not_started(api: Api) -> None:
    await api.setup("g", chain(), ALPHA, BETA)
    run_id = (await api.trigger("g"))["run_id"]
    view = await api.call("GET", f"/run/{run_id}/graph")
    assert [(n["identifier"], n["status"], n["total"]) for n in view["nodes"]] == [
        ("a", "PENDING", 1),
        ("b", "NOT_STARTED", 0),
    ]


async def test_retry_failed_retries_each_failed_state_once_and_the_run_can_then_succeed(api: Api) -> None:
    run_id = await _fan_out(api, 3)
    claimed = await api.claim("Beta", batch_size=3)
    await api.executed(claimed[0]["state_id"], [{"y": "ok"}])
    for state in claimed[1:]:
        await api.errored(state["state_id"], "flaky")
    assert (await _run(api, run_id))["status"] == "FAILED"

    first, again = await asyncio.gather(
        api.call("POST", f"/run/{run_id}/retry-failed"), api.call("POST", f"/run/{run_id}/retry-failed")
    )
    third = await api.call("POST", f"/run/{run_id}/retry-failed")

    assert first["retried"] + again["retried"] == 2 and third["retried"] == 0
    assert len(set(first["state_ids"]) | set(again["state_ids"])) == 2
    assert (await _run(api, run_id))["status"] == "RUNNING"
    retries = await api.claim("Beta", batch_size=10)
    assert len(retries) == 2
    for state in retries:
        await api.executed(state["state_id"], [{"y": "ok"}])
    done = await _run(api, run_id)
    assert done["status"] == "SUCCESS" and done["counts"] == {"SUCCESS": 6, "RETRY_CREATED": 2}
    assert (await api.call("POST", f"/run/{run_id}/retry-failed"))["retried"] == 0


async def test_retry_failed_of_a_cancelled_run_is_409(api: Api) -> None:
    await api.setup("g", chain(), ALPHA, BETA)
    run_id = (await api.trigger("g", {"start_delay": 60_000}))["run_id"]
    await api.call("POST", f"/run/{run_id}/cancel")
    answer = await api.call("POST", f"/run/{run_id}/retry-failed", expect=409)
    assert "cancelled" in answer["detail"]


async def _crash_before_the_tally(run_id: str, identifier: str) -> None:
    """Leave the run as if the process died between the state's last status write and its count
    in the run: the state still owes its tally (untouched for a while), the run counts it open."""
    state = await State.get_motor_collection().find_one({"run_id": run_id, "identifier": identifier})
    assert state is not None and state["status"] == "SUCCESS"
    bit = 1 << (state["owed_index"] % 8)
    chunk = f"owed.{state['owed_group']}.{state['owed_index'] // 8}"
    await State.get_motor_collection().update_one(
        {"_id": state["_id"]}, {"$set": {"pending_effect": "tally", "updated_ms": 0}}
    )
    await Run.get_motor_collection().update_one(
        {"run_id": run_id},
        {
            "$set": {"final": None, "status": "RUNNING", "finished_ms": None, "counts": {}},
            "$inc": {chunk: bit, "open": 1, "settled.SUCCESS": -1},
        },
    )


async def test_a_run_end_a_crash_missed_is_stored_by_the_next_recovery_pass(
    api: Api, ctx: AppContext
) -> None:
    await api.setup("g", chain(), ALPHA, BETA)
    run_id = (await api.trigger("g"))["run_id"]
    await Worker(api, "Alpha").execute()
    await Worker(api, "Beta").execute()
    await _crash_before_the_tally(run_id, "b")
    assert (await _stored(run_id)).status == "RUNNING"

    report = await recover_once(ctx)

    assert report.effects_completed == 1
    stored = await _stored(run_id)
    assert (stored.status, stored.counts, stored.open) == ("SUCCESS", {"SUCCESS": 2}, 0)
    assert stored.finished_ms is not None
    assert (await recover_once(ctx)).effects_completed == 0


async def test_queues_show_due_delayed_and_claimed_work_and_when_a_runtime_last_asked(api: Api) -> None:
    await api.setup("g", chain(), ALPHA, BETA, node("Idle"))
    for _ in range(3):
        await api.trigger("g")
    await api.trigger("g", {"start_delay": 60_000})
    before = now_ms()
    await api.claim("Alpha", batch_size=1)

    view = await api.call("GET", "/queues")

    rows = {row["node_name"]: row for row in view["nodes"]}
    alpha = rows["Alpha"]
    assert (alpha["due"], alpha["delayed"], alpha["claimed"]) == (2, 1, 1)
    assert alpha["registered"] and before <= alpha["last_poll_ms"] <= now_ms()
    assert alpha["oldest_due_age_seconds"] >= 0 and not alpha["stalled"]
    assert rows["Idle"]["due"] == 0 and rows["Idle"]["last_poll_ms"] is None and not rows["Idle"]["stalled"]
    assert rows["Beta"]["due"] == 0 and view["stall_after_seconds"] == 30


async def _stored(run_id: str) -> Run:
    run = await Run.find_one({"run_id": run_id})
    assert run is not None
    return run


async def test_the_last_report_stores_the_runs_end_without_anyone_reading_it(api: Api) -> None:
    await api.setup("g", chain(retry_policy=NO_RETRY), ALPHA, BETA)
    good = (await api.trigger("g"))["run_id"]
    await Worker(api, "Alpha").execute()
    assert (await _stored(good)).status == "RUNNING"
    await Worker(api, "Beta").execute()
    bad = (await api.trigger("g"))["run_id"]
    await Worker(api, "Alpha").fail()

    finished, failed = await _stored(good), await _stored(bad)
    assert (finished.status, finished.counts) == ("SUCCESS", {"SUCCESS": 2}) and finished.finished_ms
    assert (failed.status, failed.counts) == ("FAILED", {"ERRORED": 1}) and failed.finished_ms


async def test_a_fan_out_with_a_join_ends_when_the_join_does(api: Api) -> None:
    fan_in = graph(
        template("a", "Alpha", {"x": "go"}, ["b"]),
        template("b", "Beta", {"x": "${{ a.outputs.y }}"}, ["c"]),
        template("c", "Gamma", {"x": "${{ b.outputs.y[*] }}"}, unites="a"),
    )
    await api.setup("g", fan_in, ALPHA, BETA, node("Gamma"))
    run_id = (await api.trigger("g"))["run_id"]
    await Worker(api, "Alpha").execute()
    await Worker(api, "Beta").execute([{"y": str(i)} for i in range(4)])  # b fans out to 4
    assert (await _stored(run_id)).status == "RUNNING"  # the join is due, not done

    join = await Worker(api, "Gamma").execute()

    assert join["inputs"] == {"x": '["0", "1", "2", "3"]'}
    stored = await _stored(run_id)
    assert stored.status == "SUCCESS" and stored.counts == {"SUCCESS": 6}


async def test_a_run_the_recovery_pass_cannot_count_does_not_stop_the_others(
    api: Api, ctx: AppContext
) -> None:
    await api.setup("g", chain(), ALPHA, BETA)
    broken, healthy = (await api.trigger("g"))["run_id"], (await api.trigger("g"))["run_id"]
    for _ in range(2):
        await Worker(api, "Alpha").execute()
        await Worker(api, "Beta").execute()
    for run_id in (broken, healthy):
        await _crash_before_the_tally(run_id, "b")
    await Run.get_motor_collection().update_one({"run_id": broken}, {"$set": {"owed": "not a map"}})

    report = await recover_once(ctx)

    assert report.effects_completed == 1 and report.failures == 1
    assert (await _stored(healthy)).status == "SUCCESS"
    left = await State.get_motor_collection().find_one({"run_id": broken, "identifier": "b"})
    assert left is not None and left["pending_effect"] == "tally"  # tried again by the next pass
