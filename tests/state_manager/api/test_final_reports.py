"""A report that leaves nothing to write after it (one output of a node with no next node) is
written SUCCESS at once, without the EXECUTED step; a change of the graph between the claim and
the report is honoured (the report takes the usual path and creates what the new graph says)."""

from __future__ import annotations

from tests.factories import ALPHA, BETA, Api, graph, template


async def test_a_last_step_ends_its_run_in_one_report(api: Api) -> None:
    await api.setup("one", graph(template("a", "Alpha", {"x": "go"})), ALPHA)
    run_id = (await api.trigger("one"))["run_id"]
    [state] = await api.claim("Alpha")

    await api.executed(state["state_id"], [{"y": "done"}])

    [stored] = await api.run_states(run_id)
    assert (stored["status"], stored["outputs"]) == ("SUCCESS", {"y": "done"})
    assert (await api.run_summary(run_id))["status"] == "SUCCESS"
    await api.executed(state["state_id"], [{"y": "done"}])  # a repeat answers the same


async def test_a_next_node_added_after_the_claim_still_runs(api: Api) -> None:
    await api.setup("grow", graph(template("a", "Alpha", {"x": "go"})), ALPHA, BETA)
    run_id = (await api.trigger("grow"))["run_id"]
    [state] = await api.claim("Alpha")
    grown = graph(
        template("a", "Alpha", {"x": "go"}, ["b"]), template("b", "Beta", {"x": "${{ a.outputs.y }}"})
    )
    await api.upsert("grow", grown)

    await api.executed(state["state_id"], [{"y": "1"}])

    [child] = await api.claim("Beta")
    assert child["inputs"] == {"x": "1"}
    assert (await api.run_summary(run_id))["status"] != "SUCCESS"


async def test_a_last_step_that_fans_out_writes_its_copies(api: Api) -> None:
    await api.setup("fan", graph(template("a", "Alpha", {"x": "go"})), ALPHA)
    run_id = (await api.trigger("fan"))["run_id"]
    [state] = await api.claim("Alpha")

    await api.executed(state["state_id"], [{"y": "1"}, {"y": "2"}, {"y": "3"}])

    states = await api.run_states(run_id)
    assert sorted(s["outputs"]["y"] for s in states) == ["1", "2", "3"]
    assert {s["status"] for s in states} == {"SUCCESS"}
    assert (await api.run_summary(run_id))["status"] == "SUCCESS"
