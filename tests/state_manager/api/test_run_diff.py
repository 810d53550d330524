"""`GET /run/{a}/diff/{b}`: two runs of one graph compared node by node, as a user reads it after
changing an input or repairing a run; refusals for an unknown run and runs of two graphs."""

from __future__ import annotations

from typing import Any

import pytest

from tests.factories import (
    ALPHA,
    BETA,
    NO_RETRY,
    OTHER_NAMESPACE,
    Api,
    Json,
    Worker,
    chain,
    graph,
    template,
)
from tests.support.map_reduce import CLEAN_TOTAL, ITEMS, NODES, map_reduce, result, work

NOTHING = {"same": 0, "changed": 0, "only_a": 0, "only_b": 0}


async def _diff(api: Api, a: str, b: str, expect: int = 200, namespace: str | None = None) -> Any:
    return await api.call("GET", f"/run/{a}/diff/{b}", expect=expect, namespace=namespace)


def _changes(diff: Json) -> list[tuple[str, list[int], str]]:
    return [(n["identifier"], n["position"], n["change"]) for n in diff["nodes"]]


async def _chain_run(api: Api, first: str, second: str = "done") -> str:
    """A run of the chain whose `a` answers `first` and `b` answers `second`."""
    run_id: str = (await api.trigger("g"))["run_id"]
    await Worker(api, "Alpha").execute([{"y": first}])
    await Worker(api, "Beta").execute([{"y": second}])
    return run_id


async def test_a_changed_output_shows_on_its_node_and_on_the_inputs_it_fed(api: Api) -> None:
    await api.setup("g", chain(), ALPHA, BETA)
    a = await _chain_run(api, "one")
    b = await _chain_run(api, "two")

    diff = await _diff(api, a, b)

    assert (diff["a"], diff["b"], diff["graph"]) == (a, b, "g")
    assert diff["summary"] == {**NOTHING, "changed": 2}
    first, second = diff["nodes"]
    assert (first["identifier"], first["position"], first["change"]) == ("a", [0], "changed")
    assert first["fields"] == [{"path": "outputs.y", "a": "one", "b": "two"}]
    assert (second["identifier"], second["position"], second["change"]) == ("b", [0, 0], "changed")
    assert second["fields"] == [{"path": "inputs.x", "a": "from a: one", "b": "from a: two"}]
    # Each side is that run's state, as the run's own listing shows it.
    states_a = {s["identifier"]: s for s in await api.run_states(a)}
    assert first["a"] == {
        "state_id": states_a["a"]["id"],
        "status": "SUCCESS",
        "inputs": {"x": "start"},
        "outputs": {"y": "one"},
    }
    assert first["b"]["outputs"] == {"y": "two"} and first["b"]["state_id"] != first["a"]["state_id"]


async def test_two_runs_that_did_the_same_are_the_same_and_so_is_a_run_with_itself(api: Api) -> None:
    await api.setup("g", chain(), ALPHA, BETA)
    a = await _chain_run(api, "one")
    b = await _chain_run(api, "one")

    for left, right in ((a, b), (b, a), (a, a)):
        diff = await _diff(api, left, right)
        assert diff["summary"] == {**NOTHING, "same": 2}
        assert all(n["fields"] == [] for n in diff["nodes"])


async def test_a_run_that_stopped_early_has_nodes_only_in_the_other_run(api: Api) -> None:
    await api.setup("g", chain(retry_policy=NO_RETRY), ALPHA, BETA)
    failed = (await api.trigger("g"))["run_id"]
    await Worker(api, "Alpha").fail("no luck")
    done = await _chain_run(api, "one")

    diff = await _diff(api, failed, done)

    assert _changes(diff) == [("a", [0], "changed"), ("b", [0, 0], "only_b")]
    assert diff["nodes"][0]["fields"] == [
        {"path": "status", "a": "ERRORED", "b": "SUCCESS"},
        {"path": "outputs.y", "a": None, "b": "one"},
    ]
    assert diff["nodes"][1]["a"] is None and diff["nodes"][1]["b"]["status"] == "SUCCESS"
    assert diff["summary"] == {**NOTHING, "changed": 1, "only_b": 1}
    reverse = await _diff(api, done, failed)
    assert _changes(reverse) == [("a", [0], "changed"), ("b", [0, 0], "only_a")]


def _map_reduce_places() -> list[tuple[str, list[int], str]]:
    """Every place of a map-reduce run: split fans out into one square per item, below `start`."""
    squares = [("square", [0, i, 0], "same") for i in range(len(ITEMS))]
    splits = [("split", [0, i], "same") for i in range(len(ITEMS))]
    return [("start", [0], "same"), *splits, *squares, ("sum", [0, 0], "same")]


async def test_a_fan_out_is_compared_copy_by_copy_and_a_repaired_run_equals_a_clean_one(api: Api) -> None:
    await api.setup("mr", map_reduce("ALL_SUCCESS"), *NODES)
    clean = (await api.trigger("mr"))["run_id"]
    await work(api, broken=None)
    repaired = (await api.trigger("mr"))["run_id"]
    await work(api, broken="2")  # the square of 2 (the third item) fails, the join is cancelled

    broken = await _diff(api, clean, repaired)

    where = ITEMS.index("2")
    expected = _map_reduce_places()
    expected[1 + len(ITEMS) + where] = ("square", [0, where, 0], "changed")
    expected[-1] = ("sum", [0, 0], "changed")
    assert _changes(broken) == expected
    square = broken["nodes"][1 + len(ITEMS) + where]
    assert square["fields"] == [
        {"path": "status", "a": "SUCCESS", "b": "ERRORED"},
        {"path": "outputs.sq", "a": "4", "b": None},
    ]
    join = broken["nodes"][-1]
    assert {"path": "outputs.total", "a": CLEAN_TOTAL, "b": None} in join["fields"]

    await api.call("POST", f"/run/{repaired}/retry-failed")
    await work(api, broken=None)
    assert await result(api, repaired) == ("SUCCESS", [CLEAN_TOTAL])

    # The retried square and the join made again are compared, not their failed attempts.
    fixed = await _diff(api, clean, repaired)
    assert _changes(fixed) == _map_reduce_places()
    assert fixed["summary"] == {**NOTHING, "same": 2 + 2 * len(ITEMS)}
    sums = (await api.by_identifier(repaired))["sum"]
    [made_again] = [s["id"] for s in sums if s["status"] == "SUCCESS"]
    assert fixed["nodes"][-1]["b"]["state_id"] == made_again


async def test_nodes_come_in_the_graph_order_and_in_the_order_first_seen_once_it_is_deleted(
    api: Api,
) -> None:
    # The template lists `b` before `a`, although `a` runs first.
    body = graph(
        template("b", "Beta", {"x": "from a: ${{ a.outputs.y }}"}),
        template("a", "Alpha", {"x": "start"}, ["b"]),
    )
    await api.setup("g", body, ALPHA, BETA)
    a = await _chain_run(api, "one")
    b = await _chain_run(api, "two")

    assert [n["identifier"] for n in (await _diff(api, a, b))["nodes"]] == ["b", "a"]

    await api.call("DELETE", "/graph/g")
    after = await _diff(api, a, b)
    assert [n["identifier"] for n in after["nodes"]] == ["a", "b"]
    assert after["summary"] == {**NOTHING, "changed": 2}


@pytest.mark.parametrize("side", ["a", "b"])
async def test_an_unknown_run_is_not_found_naming_it(api: Api, side: str) -> None:
    await api.setup("g", chain(), ALPHA, BETA)
    known = await _chain_run(api, "one")
    a, b = ("nope", known) if side == "a" else (known, "nope")

    answer = await _diff(api, a, b, expect=404)

    assert answer["detail"] == "Run nope not found in namespace testns"


async def test_a_run_of_another_namespace_is_not_found_there(api: Api) -> None:
    await api.setup("g", chain(), ALPHA, BETA)
    a = await _chain_run(api, "one")
    b = await _chain_run(api, "two")

    answer = await _diff(api, a, b, expect=404, namespace=OTHER_NAMESPACE)

    assert answer["detail"] == f"Run {a} not found in namespace {OTHER_NAMESPACE}"


async def test_runs_of_two_graphs_are_refused_naming_both_graphs(api: Api) -> None:
    await api.setup("first", chain(), ALPHA, BETA)
    await api.setup("second", chain())
    a = (await api.trigger("first"))["run_id"]
    b = (await api.trigger("second"))["run_id"]

    answer = await _diff(api, a, b, expect=422)

    assert "first" in answer["detail"] and "second" in answer["detail"]
    assert a in answer["detail"] and b in answer["detail"]
