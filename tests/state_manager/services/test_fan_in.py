"""Fan-in that collects results: `${{ x.outputs.f[*] }}` in a join's inputs is the JSON array of
f from every successful x below the join's anchor, in fan-out order."""

from __future__ import annotations

import json

import pytest
from bson import ObjectId

from state_manager.db.documents import Run, State
from tests.factories import Api, Json, Worker, fixed_retry, graph, node, template

START, SPLIT, SQUARE = (
    node("Start"),
    node("Split", outputs=["n"]),
    node("Square", inputs=["n"], outputs=["sq"]),
)
SUM = node("Sum", inputs=["values"], outputs=["total"])


def map_reduce(strategy: str | None = None, **options: object) -> Json:
    return graph(
        template("start", "Start", {"x": "go"}, ["split"]),
        template("split", "Split", {"x": "${{ start.outputs.y }}"}, ["square"]),
        template("square", "Square", {"n": "${{ split.outputs.n }}"}),
        template("sum", "Sum", {"values": "${{ square.outputs.sq[*] }}"}, unites="start", strategy=strategy),
        **options,
    )


async def _fan_out(api: Api, body: Json, items: list[str]) -> tuple[str, list[Json]]:
    await api.setup("mr", body, START, SPLIT, SQUARE, SUM)
    run_id = str((await api.trigger("mr"))["run_id"])
    await Worker(api, "Start").execute([{"y": "go"}])
    await Worker(api, "Split").execute([{"n": item} for item in items])
    squares = await api.claim("Square", batch_size=100)
    return run_id, squares


def _square(state: Json) -> list[Json]:
    n = int(state["inputs"]["n"])
    return [{"sq": str(n * n)}]


async def _sum_inputs(api: Api, run_id: str) -> list[str]:
    [join] = (await api.by_identifier(run_id))["sum"]
    values: list[str] = json.loads(join["inputs"]["values"])
    return values


async def test_the_join_receives_every_result_in_fan_out_order(api: Api) -> None:
    run_id, squares = await _fan_out(api, map_reduce(), ["3", "1", "2", "5"])

    for state in reversed(squares):  # finishing order is not fan-out order
        await api.executed(state["state_id"], _square(state))

    assert await _sum_inputs(api, run_id) == ["9", "1", "4", "25"]


async def test_a_retried_branch_takes_its_place_in_the_order(api: Api) -> None:
    run_id, squares = await _fan_out(api, map_reduce(retry_policy=fixed_retry(1, 1)), ["3", "1", "2"])
    first, *others = squares
    await api.errored(first["state_id"], "flaky")
    for state in others:
        await api.executed(state["state_id"], _square(state))
    [again] = await api.claim("Square", batch_size=1, wait_ms=2000)
    await api.executed(again["state_id"], _square(again))

    assert await _sum_inputs(api, run_id) == ["9", "1", "4"]


async def test_under_all_done_failed_branches_are_left_out(api: Api) -> None:
    run_id, squares = await _fan_out(
        api, map_reduce("ALL_DONE", retry_policy={"max_retries": 0}), ["3", "1", "2"]
    )
    for state in squares:
        if state["inputs"]["n"] == "1":
            await api.errored(state["state_id"], "boom")
        else:
            await api.executed(state["state_id"], _square(state))

    assert await _sum_inputs(api, run_id) == ["9", "4"]


async def test_a_missing_field_fails_the_join_visibly(api: Api) -> None:
    run_id, squares = await _fan_out(api, map_reduce(), ["3", "1"])
    for state in squares:
        await api.executed(state["state_id"], [{"other": "x"}])

    [join] = (await api.by_identifier(run_id))["sum"]
    assert join["status"] == "CANCELLED" and "did not output 'sq'" in join["error"]


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"square": {"n": "${{ split.outputs.n[*] }}"}}, "only a join"),
        ({"sum": {"values": "${{ start.outputs.y[*] }}"}}, "not in the join's scope"),
    ],
)
async def test_collecting_is_checked_at_upsert(api: Api, changes: dict[str, Json], message: str) -> None:
    await api.register(START, SPLIT, SQUARE, SUM)
    body = map_reduce()
    for item in body["nodes"]:
        item["inputs"].update(changes.get(item["identifier"], {}))

    answer = await api.upsert("mr", body, expect=400)

    assert message in answer["detail"]


async def test_a_big_fan_outs_tallies_drop_their_cleared_chunks(api: Api) -> None:
    """The run and the join's anchor are rewritten on each count: once a chunk of a big group's
    bits is all cleared it is removed, so they do not keep a key per eight branches."""
    run_id, squares = await _fan_out(api, map_reduce(), [str(n) for n in range(200)])
    squares += await api.claim("Square", batch_size=100)
    for state in squares:
        await api.executed(state["state_id"], _square(state))

    run = await Run.get_motor_collection().find_one({"run_id": run_id})
    [start] = (await api.by_identifier(run_id))["start"]
    anchor = await State.get_motor_collection().find_one({"_id": ObjectId(start["id"])})
    square = await State.get_motor_collection().find_one({"run_id": run_id, "identifier": "square"})
    group = square["owed_group"]  # the squares: 200 members, 25 chunks
    assert len(run["owed"][group]) <= 2 and len(anchor["below_owed"][group]) <= 2
    assert set(run["owed"][group].values()) == {0} == set(anchor["below_owed"][group].values())
    assert (anchor["below_open"], anchor["below_settled"]) == (0, {"SUCCESS": 400})  # split, copies, squares
    assert len(await _sum_inputs(api, run_id)) == 200
