"""A graph a typo cannot break, a dry run, and deletion.

An upsert that does not validate never replaces a valid live version: triggers keep using the
live one, the upsert waits as the graph's candidate and goes live once it validates (its nodes
registered). `validate_only` stores nothing. A graph is deleted only without open runs, unless
forced, which cancels them.
"""

from __future__ import annotations

from state_manager.db.documents import CronSchedule
from tests.factories import ALPHA, BETA, NAMESPACE, Api, chain, cron, graph, node, template

GAMMA = node("Gamma")


def _with_typo() -> dict[str, object]:
    """The chain with its second node's name mistyped (no such node is registered)."""
    return graph(
        template("a", "Alpha", {"x": "go"}, ["b"]), template("b", "Betta", {"x": "${{ a.outputs.y }}"})
    )


async def test_an_upsert_that_does_not_validate_leaves_the_live_version_working(api: Api) -> None:
    await api.setup("g", chain(), ALPHA, BETA)

    answer = await api.upsert("g", _with_typo())

    assert (answer["validation_status"], answer["live"]) == ("INVALID", False)
    assert any("Betta" in error for error in answer["validation_errors"])
    run_id = (await api.trigger("g"))["run_id"]  # still triggers, on the live version
    [state] = await api.claim("Alpha")
    await api.executed(state["state_id"], [{"y": "1"}])
    [child] = await api.claim("Beta")
    assert child["inputs"] == {"x": "from a: 1"} and run_id
    stored = await api.call("GET", "/graph/g")
    assert (stored["validation_status"], stored["live"]) == ("VALID", True)
    assert [n["node_name"] for n in stored["nodes"]] == ["Alpha", "Beta"]
    assert stored["candidate"]["nodes"][1]["node_name"] == "Betta"
    assert stored["candidate"]["validation_errors"] == answer["validation_errors"]


async def test_a_candidate_goes_live_when_its_nodes_register(api: Api) -> None:
    await api.setup("g", chain(), ALPHA, BETA)
    grown = graph(
        template("a", "Alpha", {"x": "go"}, ["c"]),
        template("c", "Gamma", {"x": "${{ a.outputs.y }}"}),
    )
    assert (await api.upsert("g", grown))["live"] is False  # Gamma's runtime is not up yet

    await api.register(GAMMA)

    stored = await api.call("GET", "/graph/g")
    assert (stored["validation_status"], stored["live"], stored["candidate"]) == ("VALID", True, None)
    assert [n["node_name"] for n in stored["nodes"]] == ["Alpha", "Gamma"]
    await api.trigger("g")
    [state] = await api.claim("Alpha")
    await api.executed(state["state_id"], [{"y": "1"}])
    assert len(await api.claim("Gamma")) == 1


async def test_a_valid_upsert_replaces_a_waiting_candidate(api: Api) -> None:
    await api.setup("g", chain(), ALPHA, BETA)
    await api.upsert("g", _with_typo())

    fixed = await api.upsert("g", chain())

    assert (fixed["live"], fixed["candidate"]) == (True, None)
    assert (await api.call("GET", "/graph/g"))["candidate"] is None


async def test_a_graph_without_a_valid_version_is_replaced_as_before(api: Api) -> None:
    await api.register(ALPHA)
    first = await api.upsert("g", _with_typo())
    assert (first["validation_status"], first["live"]) == ("INVALID", True)
    await api.trigger("g", expect=400)


async def test_validate_only_answers_the_verdict_and_stores_nothing(api: Api) -> None:
    await api.setup("g", chain(), ALPHA, BETA)

    checked = await api.call("PUT", "/graph/g?validate_only=true", _with_typo())
    fresh = await api.call("PUT", "/graph/new-one?validate_only=true", chain())

    assert (checked["validation_status"], checked["stored"]) == ("INVALID", False)
    assert any("Betta" in error for error in checked["validation_errors"])
    assert (fresh["validation_status"], fresh["stored"]) == ("VALID", False)
    assert (await api.call("GET", "/graph/g"))["candidate"] is None
    await api.call("GET", "/graph/new-one", expect=404)
    two_roots = graph(template("a", "Alpha", {"x": "go"}), template("b", "Beta", {"x": "go"}))
    await api.call("PUT", "/graph/g?validate_only=true", two_roots, expect=400)


async def test_a_graph_with_open_runs_is_deleted_only_when_forced(api: Api) -> None:
    await api.setup("g", {**chain(), "triggers": [cron("*/5 * * * *")]}, ALPHA, BETA)
    run_id = (await api.trigger("g"))["run_id"]

    refused = await api.call("DELETE", "/graph/g", expect=409)
    forced = await api.call("DELETE", "/graph/g?force=true")

    assert run_id in refused["detail"] and "force=true" in refused["detail"]
    assert forced == {"name": "g", "namespace": NAMESPACE, "deleted": True, "cancelled_runs": 1}
    assert (await api.run_summary(run_id))["status"] == "CANCELLED"
    await api.call("GET", "/graph/g", expect=404)
    await api.trigger("g", expect=404)
    assert await CronSchedule.find({"graph_name": "g"}).to_list() == []
    await api.call("DELETE", "/graph/g", expect=404)


async def test_a_graph_whose_runs_ended_is_deleted_and_its_runs_stay_readable(api: Api) -> None:
    await api.setup("g", chain(), ALPHA, BETA)
    run_id = (await api.trigger("g"))["run_id"]
    [state] = await api.claim("Alpha")
    await api.executed(state["state_id"], [{"y": "1"}])
    [child] = await api.claim("Beta")
    await api.executed(child["state_id"], [{"y": "2"}])

    deleted = await api.call("DELETE", "/graph/g")

    assert deleted["cancelled_runs"] == 0
    assert (await api.run_summary(run_id))["status"] == "SUCCESS"
    assert len(await api.run_states(run_id)) == 2
    await api.call("GET", f"/run/{run_id}/graph")
