"""Reports read no graph: each process keeps the newest template it has seen, and a state
created under a newer version (upserted through another replica) makes it read again."""

from __future__ import annotations

from bson import ObjectId

from state_manager.schemas.graphs import UpsertGraphRequest
from state_manager.schemas.states import TriggerRequest
from state_manager.services.context import AppContext
from state_manager.services.graphs import upsert_graph
from state_manager.services.runs import trigger_graph
from state_manager.services.states import mark_executed
from tests.factories import ALPHA, BETA, NAMESPACE, Api, Json, Worker, graph, template


def two_step(label: str) -> Json:
    return graph(
        template("a", "Alpha", {"x": "start"}, ["b"]),
        template("b", "Beta", {"x": f"{label}: ${{{{ a.outputs.y }}}}"}),
    )


async def test_a_replica_that_sees_a_newer_version_uses_it(api: Api, ctx: AppContext) -> None:
    other_replica = AppContext(settings=ctx.settings, cipher=ctx.cipher)
    await api.setup("g", two_step("v1"), ALPHA, BETA)
    first = (await api.trigger("g"))["run_id"]
    await Worker(api, "Alpha").execute([{"y": "one"}])  # this process now holds v1
    await upsert_graph(other_replica, NAMESPACE, "g", UpsertGraphRequest.model_validate(two_step("v2")))

    run, _ = await trigger_graph(other_replica, NAMESPACE, "g", TriggerRequest())  # a run of v2
    second = run.run_id
    state = await Worker(api, "Alpha").claim_one()
    await mark_executed(ctx, NAMESPACE, ObjectId(state["state_id"]), [{"y": "two"}])

    assert [s["inputs"]["x"] for s in (await api.by_identifier(first))["b"]] == ["v1: one"]
    assert [s["inputs"]["x"] for s in (await api.by_identifier(second))["b"]] == ["v2: two"]


async def test_states_remember_the_version_they_were_created_under(api: Api) -> None:
    await api.setup("g", two_step("v1"), ALPHA, BETA)
    await api.upsert("g", two_step("v2"))
    run_id = (await api.trigger("g"))["run_id"]
    await Worker(api, "Alpha").execute([{"y": "x"}])

    versions = {s["identifier"]: s["graph_version"] for s in await api.run_states(run_id)}
    stored = await api.get_graph("g")
    assert versions == {"a": 2, "b": 2} and stored["validation_status"] == "VALID"
