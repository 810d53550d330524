"""Reading runs back: states of a namespace or a run, a run's graph, one node's details."""

from __future__ import annotations

import pytest

from state_manager.app import create_app
from state_manager.db.documents import Run, State
from state_manager.services import run_status
from tests.factories import ALPHA, BETA, NAMESPACE, NO_RETRY, Api, Json, Worker, chain, graph, template
from tests.support.in_process import settings_for, started

ALL_STATUSES = {
    "CREATED",
    "QUEUED",
    "EXECUTED",
    "NEXT_CREATED",
    "RETRY_CREATED",
    "TIMEDOUT",
    "ERRORED",
    "CANCELLED",
    "SUCCESS",
    "NEXT_CREATED_ERROR",
    "PRUNED",
}
UNKNOWN_ID = "0123456789abcdef01234567"


@pytest.fixture
async def fanned_run(api: Api) -> str:
    """a -> b where a fanned out into two: 2 `a` SUCCESS, 2 `b` (one QUEUED, one CREATED)."""
    await api.setup("g", chain(), ALPHA, BETA)
    run_id = str((await api.trigger("g"))["run_id"])
    await Worker(api, "Alpha").execute([{"y": "1"}, {"y": "2"}])
    await Worker(api, "Beta").claim_one()
    return run_id


async def test_namespace_states_list_every_state_and_run(api: Api, fanned_run: str) -> None:
    other_run = (await api.trigger("g"))["run_id"]

    listing = await api.call("GET", "/states/")

    assert listing["namespace"] == NAMESPACE
    assert listing["count"] == 5
    assert sorted(listing["run_ids"]) == sorted([fanned_run, other_run])
    item = next(s for s in listing["states"] if s["identifier"] == "b" and s["status"] == "QUEUED")
    for field in ("id", "node_name", "namespace_name", "graph_name", "run_id", "inputs", "outputs", "error"):
        assert field in item
    assert (item["node_name"], item["namespace_name"], item["graph_name"]) == ("Beta", NAMESPACE, "g")
    assert set(item["parents"]) == {"a"}
    assert item["created_at"] and item["updated_at"]


async def test_run_states_list_only_that_run(api: Api, fanned_run: str) -> None:
    await api.trigger("g")

    listing = await api.call("GET", f"/states/run/{fanned_run}")

    assert (listing["namespace"], listing["run_id"], listing["count"]) == (NAMESPACE, fanned_run, 4)
    assert {s["run_id"] for s in listing["states"]} == {fanned_run}
    assert sorted((s["identifier"], s["status"]) for s in listing["states"]) == [
        ("a", "SUCCESS"),
        ("a", "SUCCESS"),
        ("b", "CREATED"),
        ("b", "QUEUED"),
    ]


async def test_run_states_are_per_namespace(api: Api, fanned_run: str) -> None:
    listing = await api.call("GET", f"/states/run/{fanned_run}", namespace="elsewhere")

    assert listing["count"] == 0


async def test_run_graph_has_nodes_edges_and_a_summary(api: Api, fanned_run: str) -> None:
    states = {s["id"]: s for s in await api.run_states(fanned_run)}

    view = await api.call("GET", f"/states/run/{fanned_run}/graph")

    assert view["graph_name"] == "g"
    assert view["node_count"] == len(view["nodes"]) == 4
    assert {n["id"] for n in view["nodes"]} == set(states)
    for graph_node in view["nodes"]:
        stored = states[graph_node["id"]]
        assert (graph_node["identifier"], graph_node["status"], graph_node["node_name"]) == (
            stored["identifier"],
            stored["status"],
            stored["node_name"],
        )
        assert "error" in graph_node
    # fan-out clones of the root have no parents: both are roots
    assert sorted(n["identifier"] for n in view["root_states"]) == ["a", "a"]
    assert view["edge_count"] == len(view["edges"]) == 2
    expected_edges = {(s["parents"]["a"], s["id"]) for s in states.values() if s["identifier"] == "b"}
    assert {(e["source"], e["target"]) for e in view["edges"]} == expected_edges
    summary = view["execution_summary"]
    assert set(summary) == ALL_STATUSES
    assert (summary["SUCCESS"], summary["QUEUED"], summary["CREATED"], summary["ERRORED"]) == (2, 1, 1, 0)
    assert sum(summary.values()) == 4


async def test_run_graph_edges_come_from_the_direct_parent(api: Api) -> None:
    await api.register(ALPHA, BETA)
    await api.setup(
        "deep",
        graph(
            template("a", "Alpha", {"x": "1"}, ["b"]),
            template("b", "Beta", {"x": "${{ a.outputs.y }}"}, ["c"]),
            template("c", "Alpha", {"x": "${{ a.outputs.y }}/${{ b.outputs.y }}"}),
        ),
    )
    run_id = (await api.trigger("deep"))["run_id"]
    worker = Worker(api, "Alpha", "Beta")
    for _ in range(3):
        await worker.execute()

    view = await api.call("GET", f"/states/run/{run_id}/graph")

    ids = {n["identifier"]: n["id"] for n in view["nodes"]}
    assert {(e["source"], e["target"]) for e in view["edges"]} == {(ids["a"], ids["b"]), (ids["b"], ids["c"])}
    assert view["execution_summary"]["SUCCESS"] == 3


async def test_run_graph_of_an_unknown_run_is_an_empty_structure(api: Api) -> None:
    view = await api.call("GET", "/states/run/no-such-run/graph")

    assert view["graph_name"] == ""
    assert view["nodes"] == view["edges"] == view["root_states"] == []
    assert view["node_count"] == view["edge_count"] == 0
    assert set(view["execution_summary"]) == ALL_STATUSES
    assert set(view["execution_summary"].values()) == {0}


async def _node(api: Api, run_id: str, node_id: str, *, graph_name: str = "g", expect: int = 200) -> Json:
    result: Json = await api.call("GET", f"/graph/{graph_name}/run/{run_id}/node/{node_id}", expect=expect)
    return result


async def test_node_details(api: Api, fanned_run: str) -> None:
    b = next(
        s for s in await api.run_states(fanned_run) if s["identifier"] == "b" and s["status"] == "QUEUED"
    )

    details = await _node(api, fanned_run, b["id"])

    assert details["id"] == b["id"]
    assert (details["node_name"], details["identifier"], details["graph_name"], details["run_id"]) == (
        "Beta",
        "b",
        "g",
        fanned_run,
    )
    assert details["status"] == "QUEUED"
    assert details["inputs"] == b["inputs"]
    assert details["outputs"] == {}
    assert details["error"] is None
    assert set(details["parents"]) == {"a"}
    assert details["created_at"] and details["updated_at"]


async def test_node_details_with_an_invalid_id_is_400(api: Api, fanned_run: str) -> None:
    answer = await _node(api, fanned_run, "not-an-id", expect=400)

    assert answer == {"detail": "Invalid node ID format: not-an-id"}


async def test_node_details_not_found_is_404(api: Api, fanned_run: str, subtests: pytest.Subtests) -> None:
    state_id = (await api.run_states(fanned_run))[0]["id"]
    for wrong in ("node", "run", "graph"):
        with subtests.test(wrong=wrong):
            node_id = UNKNOWN_ID if wrong == "node" else state_id
            run_id = "other-run" if wrong == "run" else fanned_run
            graph_name = "other-graph" if wrong == "graph" else "g"

            answer = await _node(api, run_id, node_id, graph_name=graph_name, expect=404)

            assert answer == {"detail": f"Node {node_id} not found in run {run_id} for graph {graph_name}"}


# ---------------------------------------------------------------- the runs listing's counts


async def test_a_finished_runs_counts_are_kept_on_the_run(api: Api) -> None:
    await api.setup("g", chain(), ALPHA, BETA)
    run_id = (await api.trigger("g"))["run_id"]
    await Worker(api, "Alpha").execute()
    assert (await api.run_summary(run_id))["status"] == "PENDING"
    await Worker(api, "Beta").execute()

    first = await api.run_summary(run_id)
    # Were the listing to count the states again, this change would show.
    await State.get_motor_collection().update_many({"run_id": run_id}, {"$set": {"status": "ERRORED"}})
    again = await api.run_summary(run_id)

    assert (first["status"], first["success_count"], first["total_count"]) == ("SUCCESS", 2, 2)
    assert again == first
    stored = await Run.get_motor_collection().find_one({"run_id": run_id})
    assert stored["final"]["status"] == "SUCCESS"


async def test_a_manual_retry_reopens_a_finished_run(api: Api) -> None:
    await api.setup("g", chain(retry_policy=NO_RETRY), ALPHA, BETA)
    run_id = (await api.trigger("g"))["run_id"]
    failed, _ = await Worker(api, "Alpha").fail()
    assert (await api.run_summary(run_id))["status"] == "FAILED"

    await api.call("POST", f"/state/{failed['state_id']}/manual-retry", {"fanout_id": "op"})
    reopened = await api.run_summary(run_id)
    await Worker(api, "Alpha").execute()
    await Worker(api, "Beta").execute()
    done = await api.run_summary(run_id)

    assert (reopened["status"], reopened["pending_count"]) == ("PENDING", 1)
    assert (done["status"], done["success_count"], done["retried_count"]) == ("SUCCESS", 2, 1)


async def test_new_states_in_a_finished_run_reopen_it(api: Api) -> None:
    await api.setup("g", chain(), ALPHA, BETA)
    body = {"run_id": "my-run", "states": [{"identifier": "b", "inputs": {"x": "1"}}]}
    await api.call("POST", "/graph/g/states/create", body)
    await Worker(api, "Beta").execute()
    assert (await api.run_summary("my-run"))["status"] == "SUCCESS"

    await api.call("POST", "/graph/g/states/create", body)

    assert (await api.run_summary("my-run"))["status"] == "PENDING"


async def test_a_run_whose_states_are_not_written_yet_is_pending(api: Api) -> None:
    run = Run(run_id="crashed", namespace_name=NAMESPACE, graph_name="g", seeds=[{}], created_ms=0)
    run_status.set_keys(run)
    await run.insert()

    summary = await api.run_summary("crashed")

    assert (summary["status"], summary["total_count"]) == ("PENDING", 0)


async def test_a_run_id_used_again_in_another_store_is_counted_in_its_own_run() -> None:
    """The server remembers each run's document id to address it by primary key; a run of the
    same id in another store (a second app in the process, a store replaced under the server)
    is still counted and ended in its own document."""
    body = {"run_id": "same-run", "states": [{"identifier": "b", "inputs": {"x": "1"}}]}
    for _ in range(2):
        async with started(create_app(settings_for(mock_store=True))) as http:
            api = Api(http, NAMESPACE)
            await api.setup("g", chain(), ALPHA, BETA)
            await api.call("POST", "/graph/g/states/create", body)
            waiting = await api.run_summary("same-run")
            assert (waiting["status"], waiting["pending_count"]) == ("PENDING", 1)
            await Worker(api, "Beta").execute()
            summary = await api.run_summary("same-run")
            assert (summary["status"], summary["success_count"]) == ("SUCCESS", 1)
