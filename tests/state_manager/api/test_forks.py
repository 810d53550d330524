"""Forking a run that has ended (issue 17, decision 0023): what is reused is copied and not run
again; the nodes forked from and everything below them run again, with the inputs given."""

from __future__ import annotations

import asyncio
import json

import pytest

from tests.factories import NO_RETRY, Api, Json, Worker, graph, node, template

A, B, C = node("A"), node("B"), node("C")
START, SPLIT, SQUARE = (
    node("Start"),
    node("Split", outputs=["n"]),
    node("Square", inputs=["n"], outputs=["sq"]),
)
SUM = node("Sum", inputs=["values"], outputs=["total"])


def chain() -> Json:
    return graph(
        template("a", "A", {"x": "go"}, ["b"]),
        template("b", "B", {"x": "${{ a.outputs.y }}"}, ["c"]),
        template("c", "C", {"x": "${{ b.outputs.y }}"}),
        retry_policy=NO_RETRY,
    )


def map_reduce() -> Json:
    return graph(
        template("start", "Start", {"x": "go"}, ["split"]),
        template("split", "Split", {"x": "${{ start.outputs.y }}"}, ["square"]),
        template("square", "Square", {"n": "${{ split.outputs.n }}"}),
        template("sum", "Sum", {"values": "${{ square.outputs.sq[*] }}"}, unites="start"),
        retry_policy=NO_RETRY,
    )


async def _finished_chain(api: Api) -> str:
    await api.setup("chain", chain(), A, B, C)
    run_id = str((await api.trigger("chain"))["run_id"])
    await Worker(api, "A").execute([{"y": "from-a"}])
    await Worker(api, "B").execute([{"y": "from-b"}])
    await Worker(api, "C").execute([{"y": "from-c"}])
    return run_id


async def _fork(api: Api, run_id: str, body: Json, expect: int = 201) -> Json:
    answer: Json = await api.call("POST", f"/run/{run_id}/fork", body, expect=expect)
    return answer


async def test_a_fork_reuses_what_is_above_and_runs_the_rest_with_the_new_inputs(api: Api) -> None:
    original = await _finished_chain(api)

    forked = await _fork(api, original, {"from": ["b"], "inputs": {"b": {"x": "edited"}}})

    assert forked["forked_from"] == {"run_id": original, "from": ["b"]}
    assert (forked["reused"], forked["status"]) == (1, "PENDING")
    new = forked["run_id"]
    before = await api.by_identifier(original)
    [a] = (await api.by_identifier(new))["a"]
    assert (a["status"], a["outputs"], a["reused_from"]) == ("SUCCESS", {"y": "from-a"}, before["a"][0]["id"])
    assert await api.claim("A") == []  # reused: never run again
    [b] = await api.claim("B")
    assert (b["run_id"], b["inputs"]) == (new, {"x": "edited"})
    await api.executed(b["state_id"], [{"y": "edited-b"}])
    [c] = await api.claim("C")
    assert c["inputs"] == {"x": "edited-b"}
    await api.executed(c["state_id"], [{"y": "done"}])
    assert (await api.run_summary(new))["status"] == "SUCCESS"
    assert (await api.run_summary(original))["status"] == "SUCCESS"  # the original is untouched


async def test_forking_from_the_root_with_a_new_store_runs_everything_again(api: Api) -> None:
    await api.setup(
        "stored",
        graph(template("a", "A", {"x": "${{ store.topic }}"}), store_config={"required_keys": ["topic"]}),
        A,
    )
    original = (await api.call("POST", "/graph/stored/trigger", {"store": {"topic": "cats"}}))["run_id"]
    await Worker(api, "A").execute()

    forked = await _fork(api, original, {"from": ["a"], "store": {"topic": "dogs"}})

    assert forked["reused"] == 0
    [a] = await api.claim("A")
    assert (a["run_id"], a["inputs"]) == (forked["run_id"], {"x": "dogs"})


async def test_a_fork_of_a_fan_out_reuses_every_copy_and_joins_the_new_branches(api: Api) -> None:
    await api.setup("mr", map_reduce(), START, SPLIT, SQUARE, SUM)
    original = str((await api.trigger("mr"))["run_id"])
    await Worker(api, "Start").execute([{"y": "go"}])
    await Worker(api, "Split").execute([{"n": "3"}, {"n": "1"}, {"n": "2"}])
    for state in await api.claim("Square", batch_size=10):
        await api.executed(state["state_id"], [{"sq": str(int(state["inputs"]["n"]) ** 2)}])
    await Worker(api, "Sum").execute([{"total": "14"}])

    forked = await _fork(api, original, {"from": ["square"]})

    assert forked["reused"] == 4  # start, split and its two copies
    new = forked["run_id"]
    copies = (await api.by_identifier(new))["split"]
    originals = (await api.by_identifier(original))["split"]  # listed in the same order
    assert [(s["outputs"], s["reused_from"]) for s in copies] == [(s["outputs"], s["id"]) for s in originals]
    squares = await api.claim("Square", batch_size=10)
    assert sorted(s["inputs"]["n"] for s in squares) == ["1", "2", "3"]
    for state in squares[:-1]:
        await api.executed(state["state_id"], [{"sq": "x" + state["inputs"]["n"]}])
        assert "sum" not in await api.by_identifier(new)  # the join waits for every new branch
    await api.executed(squares[-1]["state_id"], [{"sq": "x" + squares[-1]["inputs"]["n"]}])
    [join] = (await api.by_identifier(new))["sum"]
    assert json.loads(join["inputs"]["values"]) == ["x3", "x1", "x2"]
    await Worker(api, "Sum").execute([{"total": "new"}])
    assert (await api.run_summary(new))["status"] == "SUCCESS"


async def test_forking_from_the_join_alone_reuses_every_branch(api: Api) -> None:
    await api.setup("mr", map_reduce(), START, SPLIT, SQUARE, SUM)
    original = str((await api.trigger("mr"))["run_id"])
    await Worker(api, "Start").execute([{"y": "go"}])
    await Worker(api, "Split").execute([{"n": "3"}, {"n": "1"}])
    for state in await api.claim("Square", batch_size=10):
        await api.executed(state["state_id"], [{"sq": str(int(state["inputs"]["n"]) ** 2)}])
    await Worker(api, "Sum").execute([{"total": "10"}])

    forked = await _fork(api, original, {"from": ["sum"], "inputs": {"sum": {"values": "[]"}}})

    assert forked["reused"] == 5
    [join] = await api.claim("Sum")
    assert (join["run_id"], join["inputs"]) == (forked["run_id"], {"values": "[]"})
    await api.executed(join["state_id"], [{"total": "0"}])
    assert (await api.run_summary(forked["run_id"]))["status"] == "SUCCESS"


async def test_a_fork_of_a_failed_run_from_where_it_failed_finishes_it(api: Api) -> None:
    await api.setup("chain", chain(), A, B, C)
    original = str((await api.trigger("chain"))["run_id"])
    await Worker(api, "A").execute([{"y": "from-a"}])
    await Worker(api, "B").fail("bad prompt")
    assert (await api.run_summary(original))["status"] == "FAILED"

    forked = await _fork(api, original, {"from": ["b"]})

    await Worker(api, "B").execute([{"y": "fixed"}])
    await Worker(api, "C").execute()
    assert (await api.run_summary(forked["run_id"]))["status"] == "SUCCESS"


async def test_a_fork_onto_the_current_graph_version_follows_an_upsert(api: Api) -> None:
    original = await _finished_chain(api)
    changed = chain()
    changed["nodes"][1]["inputs"] = {"x": "v2 ${{ a.outputs.y }}"}
    changed["nodes"][2]["inputs"] = {"x": "v2 ${{ b.outputs.y }}"}
    await api.upsert("chain", changed)

    on_original = (await _fork(api, original, {"from": ["b"]}))["run_id"]
    on_current = (await _fork(api, original, {"from": ["b"], "graph_version": "current"}))["run_id"]

    claimed = await api.claim("B", batch_size=10)
    assert {s["run_id"]: s["inputs"]["x"] for s in claimed} == {
        on_original: "from-a",
        on_current: "v2 from-a",
    }
    for state in claimed:  # and what follows keeps to the fork's version too
        await api.executed(state["state_id"], [{"y": "b"}])
    below = {s["run_id"]: s["inputs"]["x"] for s in await api.claim("C", batch_size=10)}
    assert below == {on_original: "b", on_current: "v2 b"}
    assert [r["graph_version"] for r in [await api.call("GET", f"/run/{on_original}")]] == [1]


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"from": ["nope"]}, "graph chain has no node 'nope' (it has a, b, c)"),
        ({"from": ["b"], "inputs": {"c": {"x": "1"}}}, "inputs.c: node 'c' is not forked from"),
        (
            {"from": ["b"], "inputs": {"b": {"prompt": "1"}}},
            "inputs.b.prompt: node b has no input 'prompt' (it has x)",
        ),
        ({"from": []}, "from"),
    ],
)
async def test_a_fork_that_names_what_the_graph_does_not_have_is_422(
    api: Api, body: Json, message: str
) -> None:
    original = await _finished_chain(api)
    answer = await _fork(api, original, body, expect=422)
    assert message in json.dumps(answer)


async def test_a_fork_that_would_reuse_a_failed_node_is_422(api: Api) -> None:
    await api.setup("chain", chain(), A, B, C)
    original = str((await api.trigger("chain"))["run_id"])
    await Worker(api, "A").execute([{"y": "from-a"}])
    await Worker(api, "B").fail()

    answer = await _fork(api, original, {"from": ["c"]}, expect=422)

    assert (
        "Node b did not succeed in run" in answer["detail"]
        and "fork from it or from before it" in answer["detail"]
    )


async def test_a_run_still_going_cannot_be_forked_and_an_unknown_one_is_404(api: Api) -> None:
    await api.setup("chain", chain(), A, B, C)
    going = str((await api.trigger("chain"))["run_id"])

    answer = await _fork(api, going, {"from": ["a"]}, expect=409)
    assert "has not ended" in answer["detail"]
    await _fork(api, "no-such-run", {"from": ["a"]}, expect=404)


async def test_a_forks_lineage_is_on_both_runs_and_the_runs_list_filters_forks(api: Api) -> None:
    original = await _finished_chain(api)
    first = (await _fork(api, original, {"from": ["b"]}))["run_id"]
    second = (await _fork(api, original, {"from": ["c"]}))["run_id"]
    await api.trigger("chain")  # not a fork

    assert (await api.call("GET", f"/run/{original}"))["forks"] == [first, second]
    fork = await api.call("GET", f"/run/{first}")
    assert (fork["forked_from"], fork["forks"]) == ({"run_id": original, "from": ["b"]}, [])
    listed = await api.call("GET", f"/runs?forked_from={original}")
    assert sorted(run["run_id"] for run in listed["runs"]) == sorted([first, second])
    assert all(run["forked_from"]["run_id"] == original for run in listed["runs"])


async def _failed_at_b(api: Api) -> str:
    run_id = str((await api.trigger("chain"))["run_id"])
    await Worker(api, "A").execute([{"y": "from-a"}])
    await Worker(api, "B").fail("the bug")
    return run_id


async def _fork_failed(api: Api, body: Json, key: str | None = None) -> Json:
    headers = {"Idempotency-Key": key} if key else {}
    response = await api.client.post(api.url("/runs/fork-failed"), json=body, headers=headers)
    assert response.status_code == 200, response.text
    answer: Json = response.json()
    return answer


async def test_the_failed_runs_of_a_graph_are_forked_from_where_they_failed(api: Api) -> None:
    await api.setup("chain", chain(), A, B, C)
    failed = [await _failed_at_b(api), await _failed_at_b(api)]
    succeeded = str((await api.trigger("chain"))["run_id"])
    for worker in ("A", "B", "C"):
        await Worker(api, worker).execute()
    assert (await api.run_summary(succeeded))["status"] == "SUCCESS"

    answer = await _fork_failed(api, {"graph": "chain"}, key="fix-1")

    assert sorted(f["forked_from"]["run_id"] for f in answer["forks"]) == sorted(failed)
    assert {tuple(f["forked_from"]["from"]) for f in answer["forks"]} == {("b",)}
    assert answer["skipped"] == []
    again = await _fork_failed(api, {"graph": "chain"}, key="fix-1")
    assert [f["run_id"] for f in again["forks"]] == [f["run_id"] for f in answer["forks"]]  # none twice
    forks = [f["run_id"] for f in answer["forks"]]
    assert sorted(s["run_id"] for s in await api.claim("B", batch_size=10)) == sorted(forks)


async def test_fork_failed_keeps_to_its_window_and_without_a_key_forks_again(api: Api) -> None:
    await api.setup("chain", chain(), A, B, C)
    old = await _failed_at_b(api)
    cut = (await api.call("GET", f"/run/{old}"))["created_ms"] + 1
    await asyncio.sleep(0.01)  # the next run is created after the cut
    new = await _failed_at_b(api)

    later = await _fork_failed(api, {"graph": "chain", "since": str(cut)})
    earlier = await _fork_failed(api, {"graph": "chain", "until": str(cut - 1)})
    again = await _fork_failed(api, {"graph": "chain", "since": str(cut)})

    assert [f["forked_from"]["run_id"] for f in later["forks"]] == [new]
    assert [f["forked_from"]["run_id"] for f in earlier["forks"]] == [old]
    assert again["forks"][0]["run_id"] != later["forks"][0]["run_id"]


@pytest.fixture
def settings_overrides() -> dict[str, object]:
    return {"max_document_bytes": 256 * 1024}


async def test_an_input_too_large_to_store_is_refused_before_anything_is_written(api: Api) -> None:
    original = await _finished_chain(api)
    runs_before = len((await api.call("GET", "/runs?limit=500"))["runs"])

    answer = await _fork(api, original, {"from": ["b"], "inputs": {"b": {"x": "x" * 300_000}}}, expect=413)

    assert "over the store's limit" in answer["detail"]
    assert len((await api.call("GET", "/runs?limit=500"))["runs"]) == runs_before


async def test_two_bulk_forks_with_one_key_at_once_fork_each_run_once(api: Api) -> None:
    await api.setup("chain", chain(), A, B, C)
    failed = [await _failed_at_b(api) for _ in range(3)]

    first, second = await asyncio.gather(
        _fork_failed(api, {"graph": "chain"}, key="same"), _fork_failed(api, {"graph": "chain"}, key="same")
    )

    assert sorted(f["run_id"] for f in first["forks"]) == sorted(f["run_id"] for f in second["forks"])
    forks = (await api.call("GET", "/runs?limit=500"))["runs"]
    assert sorted(r["forked_from"]["run_id"] for r in forks if r["forked_from"]) == sorted(failed)


async def test_a_bulk_fork_repeated_with_its_key_and_another_window_forks_nothing_again(api: Api) -> None:
    await api.setup("chain", chain(), A, B, C)
    failed = await _failed_at_b(api)
    first = await _fork_failed(api, {"graph": "chain", "since": "0"}, key="night")
    [fork] = first["forks"]
    await Worker(api, "B").fail("still broken")  # the fork fails too
    assert (await api.run_summary(fork["run_id"]))["status"] == "FAILED"

    again = await _fork_failed(api, {"graph": "chain", "since": "1"}, key="night")

    assert [f["run_id"] for f in again["forks"]] == [fork["run_id"]]  # the same fork of `failed`
    assert again["forks"][0]["forked_from"]["run_id"] == failed
