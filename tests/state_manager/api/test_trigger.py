"""Starting runs: SEED `{"states": [...]}`, HEAD `{"inputs", "store", "start_delay"}`, states/create, runs."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from tests.factories import ALPHA, BETA, NAMESPACE, Api, Json, Worker, chain, graph, node, now_ms, template


@pytest.fixture
async def chain_graph(api: Api) -> str:
    await api.setup("g", chain(), ALPHA, BETA)
    return "g"


# ---------------------------------------------------------------- SEED form


async def test_seed_trigger_creates_the_listed_states(api: Api, chain_graph: str) -> None:
    answer = await api.trigger(
        chain_graph,
        {
            "states": [
                {"identifier": "a", "inputs": {"x": "one"}},
                {"identifier": "b", "inputs": {"x": "two"}},
            ]
        },
    )

    assert answer["status"] == "CREATED"
    run_id = answer["run_id"]
    assert uuid.UUID(run_id)
    assert [(s["identifier"], s["node_name"], s["inputs"]) for s in answer["states"]] == [
        ("a", "Alpha", {"x": "one"}),
        ("b", "Beta", {"x": "two"}),
    ]
    for item in answer["states"]:
        assert item["run_id"] == run_id
        assert item["graph_name"] == chain_graph
        assert item["state_id"] and item["created_at"]
    stored = await api.run_states(run_id)
    assert sorted(s["id"] for s in stored) == sorted(s["state_id"] for s in answer["states"])
    assert {s["status"] for s in stored} == {"CREATED"}


async def test_seed_trigger_with_unknown_identifier_is_404(api: Api, chain_graph: str) -> None:
    answer = await api.trigger(chain_graph, {"states": [{"identifier": "ghost", "inputs": {}}]}, expect=404)

    assert "ghost" in answer["detail"]
    assert (await api.call("GET", "/states/"))["count"] == 0


async def test_seed_trigger_with_empty_states_is_422(api: Api, chain_graph: str) -> None:
    await api.trigger(chain_graph, {"states": []}, expect=422)

    assert (await api.call("GET", "/states/"))["count"] == 0


async def test_trigger_with_malformed_body_is_422(
    api: Api, chain_graph: str, subtests: pytest.Subtests
) -> None:
    bodies: list[Json] = [
        {"states": [{"identifier": "a", "inputs": {"x": 5}}]},
        {"states": [{"identifier": "a", "inputs": {"x": None}}]},
        {"states": [{"inputs": {"x": "1"}}]},
        {"inputs": {"x": 5}},
        {"store": {"k": ["list"]}},
        {"start_delay": -1},
    ]
    for body in bodies:
        with subtests.test(body=body):
            await api.trigger(chain_graph, body, expect=422)
    assert (await api.call("GET", "/states/"))["count"] == 0


# ---------------------------------------------------------------- HEAD form


async def test_head_trigger_overrides_template_inputs_per_key(api: Api) -> None:
    await api.register(node("Alpha", inputs=["x", "y"]))
    await api.setup("g", graph(template("a", "Alpha", {"x": "template-x", "y": "template-y"})))

    answer = await api.trigger("g", {"inputs": {"x": "given-x", "unknown": "ignored"}})

    assert answer["status"] == "CREATED"
    [root] = await api.run_states(answer["run_id"])
    assert root["identifier"] == "a"
    assert root["status"] == "CREATED"
    assert root["inputs"] == {"x": "given-x", "y": "template-y"}


async def test_empty_body_starts_the_root_with_template_inputs(api: Api, chain_graph: str) -> None:
    response = await api.client.post(api.url(f"/graph/{chain_graph}/trigger"))

    assert response.status_code == 200
    [root] = await api.run_states(response.json()["run_id"])
    assert (root["identifier"], root["inputs"]) == ("a", {"x": "start"})


async def test_store_placeholders_resolve_from_store_then_defaults(api: Api) -> None:
    await api.register(node("Alpha", inputs=["x"]), BETA)
    body = graph(
        template("a", "Alpha", {"x": "${{ store.given }}/${{ store.fallback }}"}, ["b"]),
        template("b", "Beta", {"x": "${{ store.given }}+${{ a.outputs.y }}+${{ store.fallback }}"}),
        store_config={"required_keys": ["given"], "default_values": {"fallback": "dflt", "given": "unused"}},
    )
    await api.setup("g", body)

    answer = await api.trigger("g", {"store": {"given": "mine"}})
    await Worker(api, "Alpha").execute([{"y": "out"}])

    states = await api.by_identifier(answer["run_id"])
    assert states["a"][0]["inputs"] == {"x": "mine/dflt"}
    assert states["b"][0]["inputs"] == {"x": "mine+out+dflt"}


async def test_store_value_overrides_a_default(api: Api) -> None:
    await api.register(ALPHA)
    await api.setup(
        "g",
        graph(
            template("a", "Alpha", {"x": "${{ store.k }}"}), store_config={"default_values": {"k": "dflt"}}
        ),
    )

    with_store = await api.trigger("g", {"store": {"k": "given"}})
    without = await api.trigger("g", {})

    assert (await api.run_states(with_store["run_id"]))[0]["inputs"] == {"x": "given"}
    assert (await api.run_states(without["run_id"]))[0]["inputs"] == {"x": "dflt"}


async def test_missing_required_store_key_is_400(api: Api) -> None:
    await api.register(ALPHA)
    await api.setup("g", graph(template("a", "Alpha", {"x": "1"}), store_config={"required_keys": ["must"]}))

    answer = await api.trigger("g", {"store": {"other": "v"}}, expect=400)

    assert answer["detail"].startswith("Missing store keys")
    assert "must" in answer["detail"]
    assert (await api.call("GET", "/runs/1/10"))["total"] == 0


async def test_root_referencing_another_node_is_refused_at_upsert(api: Api) -> None:
    await api.register(ALPHA, BETA)

    answer = await api.upsert(
        "g",
        graph(template("a", "Alpha", {"x": "${{ b.outputs.y }}"}, ["b"]), template("b", "Beta", {"x": "1"})),
        expect=400,
    )

    assert "root" in answer["detail"]


async def test_unresolvable_given_inputs_are_400(
    api: Api, chain_graph: str, subtests: pytest.Subtests
) -> None:
    cases = [
        ("${{ b.outputs.y }}", "references b"),
        ("${{ broken", "not closed"),
        ("${{ store.nope }}", "nope"),
    ]
    for given, message in cases:
        with subtests.test(given=given):
            answer = await api.trigger(chain_graph, {"inputs": {"x": given}}, expect=400)

            assert answer["detail"].startswith("Invalid input: ")
            assert message in answer["detail"]
    assert (await api.call("GET", "/runs/1/10"))["total"] == 0


async def test_start_delay_holds_the_root_back(api: Api, chain_graph: str) -> None:
    before = now_ms()
    answer = await api.trigger(chain_graph, {"start_delay": 400})

    assert await api.claim("Alpha") == []
    await asyncio.sleep(0.42)
    claimed = await api.claim("Alpha")

    assert [s["run_id"] for s in claimed] == [answer["run_id"]]
    [root] = await api.run_states(answer["run_id"])
    assert before + 400 <= root["enqueue_after"] <= now_ms()


async def test_trigger_of_an_invalid_graph_is_400(api: Api) -> None:
    await api.register(ALPHA)
    stored = await api.upsert("g", chain())
    assert stored["validation_status"] == "INVALID"

    answer = await api.trigger("g", expect=400)
    await api.trigger("g", {"states": [{"identifier": "a", "inputs": {"x": "1"}}]}, expect=400)

    assert "not valid" in answer["detail"]
    assert "Beta" in answer["detail"]
    assert (await api.call("GET", "/states/"))["count"] == 0


async def test_trigger_of_an_unknown_graph_is_404(api: Api) -> None:
    answer = await api.trigger("nope", expect=404)

    assert answer["detail"] == f"Graph template not found for namespace {NAMESPACE} and graph nope"


async def test_graph_of_another_namespace_cannot_be_triggered(api: Api, chain_graph: str) -> None:
    await api.call("POST", f"/graph/{chain_graph}/trigger", {}, expect=404, namespace="elsewhere")


# ---------------------------------------------------------------- states/create


async def test_states_create_uses_the_callers_run_id(api: Api, chain_graph: str) -> None:
    run_id = "my-own-run"

    first = await api.call(
        "POST",
        f"/graph/{chain_graph}/states/create",
        {"run_id": run_id, "states": [{"identifier": "a", "inputs": {"x": "1"}}]},
    )
    second = await api.call(
        "POST",
        f"/graph/{chain_graph}/states/create",
        {"run_id": run_id, "states": [{"identifier": "b", "inputs": {"x": "2"}}]},
    )

    assert first["status"] == second["status"] == "CREATED"
    assert [s["run_id"] for s in first["states"] + second["states"]] == [run_id, run_id]
    stored = await api.run_states(run_id)
    assert sorted((s["identifier"], s["inputs"]["x"]) for s in stored) == [("a", "1"), ("b", "2")]
    claimed = await api.claim("Alpha", "Beta")
    assert {s["run_id"] for s in claimed} == {run_id}


async def test_states_create_with_malformed_body_is_422(
    api: Api, chain_graph: str, subtests: pytest.Subtests
) -> None:
    bodies: list[Json] = [
        {"run_id": "r", "states": []},
        {"states": [{"identifier": "a", "inputs": {}}]},
        {"run_id": "", "states": [{"identifier": "a", "inputs": {}}]},
        {"run_id": "r", "states": [{"identifier": "a", "inputs": {"x": 1}}]},
    ]
    for body in bodies:
        with subtests.test(body=body):
            await api.call("POST", f"/graph/{chain_graph}/states/create", body, expect=422)


async def test_states_create_with_unknown_identifier_is_404(api: Api, chain_graph: str) -> None:
    await api.call(
        "POST",
        f"/graph/{chain_graph}/states/create",
        {"run_id": "r", "states": [{"identifier": "ghost", "inputs": {}}]},
        expect=404,
    )


# ---------------------------------------------------------------- runs listing


async def test_runs_listing_counts_states_and_derives_status(api: Api, chain_graph: str) -> None:
    finished = await api.trigger(chain_graph)
    worker = Worker(api, "Alpha", "Beta")
    await worker.execute()
    await worker.execute()
    await asyncio.sleep(0.005)  # creation times are stored to the millisecond
    pending = await api.trigger(chain_graph)

    listing = await api.call("GET", "/runs/1/10")

    assert listing["namespace"] == NAMESPACE
    assert listing["total"] == 2
    assert (listing["page"], listing["size"]) == (1, 10)
    by_id = {run["run_id"]: run for run in listing["runs"]}
    assert [run["run_id"] for run in listing["runs"]] == [pending["run_id"], finished["run_id"]]
    done = by_id[finished["run_id"]]
    assert done["graph_name"] == chain_graph
    assert (done["success_count"], done["pending_count"], done["errored_count"], done["total_count"]) == (
        2,
        0,
        0,
        2,
    )
    assert done["status"] == "SUCCESS"
    waiting = by_id[pending["run_id"]]
    assert (waiting["pending_count"], waiting["total_count"], waiting["status"]) == (1, 1, "PENDING")
    assert waiting["created_at"]


async def test_runs_listing_pages(api: Api, chain_graph: str) -> None:
    run_ids = []
    for _ in range(3):
        run_ids.append((await api.trigger(chain_graph))["run_id"])
        await asyncio.sleep(0.005)  # creation times are stored to the millisecond

    first = await api.call("GET", "/runs/1/2")
    second = await api.call("GET", "/runs/2/2")

    assert first["total"] == second["total"] == 3
    listed = [run["run_id"] for run in first["runs"] + second["runs"]]
    assert listed == list(reversed(run_ids))


async def test_runs_listing_bad_page_or_size_is_422(api: Api, subtests: pytest.Subtests) -> None:
    for path in ("/runs/0/10", "/runs/1/0", "/runs/x/10", "/runs/-1/10", "/runs/1/1001"):
        with subtests.test(path=path):
            await api.call("GET", path, expect=422)


async def test_seed_trigger_also_needs_the_required_store_keys(api: Api) -> None:
    await api.register(ALPHA)
    body = graph(template("a", "Alpha", {"x": "1"}))
    body["store_config"] = {"required_keys": ["tenant"]}
    await api.upsert("g", body)

    answer = await api.trigger("g", {"states": [{"identifier": "a", "inputs": {"x": "1"}}]}, expect=400)

    assert answer["detail"] == "Missing store keys: ['tenant']"
