"""Node registration: list, overwrite, and the graphs it makes valid."""

from __future__ import annotations

from bson import ObjectId

from tests.factories import ALPHA, BETA, NAMESPACE, OTHER_NAMESPACE, Api, chain, node, registration, schema


async def test_register_echoes_the_nodes_and_lists_them(api: Api) -> None:
    fetch = node("Fetch", inputs=["url"], outputs=["text", "status"], secrets=["token"])

    answer = await api.register(fetch, BETA)
    listed = await api.call("GET", "/nodes/")

    assert answer == {"runtime_name": "test-runtime", "registered_nodes": [fetch, BETA]}
    assert listed["namespace"] == NAMESPACE
    assert listed["count"] == 2
    by_name = {item["name"]: item for item in listed["nodes"]}
    assert set(by_name) == {"Fetch", "Beta"}
    stored = by_name["Fetch"]
    assert ObjectId.is_valid(stored["_id"])
    assert stored["namespace"] == NAMESPACE
    assert stored["runtime_name"] == "test-runtime"
    assert stored["inputs_schema"] == schema(["url"], "Inputs")
    assert stored["outputs_schema"] == schema(["text", "status"], "Outputs")
    assert stored["secrets"] == ["token"]
    assert stored["created_at"] and stored["updated_at"]


async def test_nodes_are_listed_per_namespace(api: Api) -> None:
    await api.register(ALPHA, namespace=OTHER_NAMESPACE)

    listed = await api.call("GET", "/nodes/")

    assert listed == {"namespace": NAMESPACE, "count": 0, "nodes": []}


async def test_registering_again_overwrites_without_duplicating(api: Api) -> None:
    await api.register(node("Fetch", inputs=["url"], outputs=["text"]))
    first_id = (await api.call("GET", "/nodes/"))["nodes"][0]["_id"]

    await api.call(
        "PUT",
        "/nodes/",
        registration(node("Fetch", inputs=["url", "depth"], outputs=["html"]), runtime_name="v2"),
    )
    listed = await api.call("GET", "/nodes/")

    assert listed["count"] == 1
    stored = listed["nodes"][0]
    assert stored["_id"] == first_id
    assert stored["runtime_name"] == "v2"
    assert stored["inputs_schema"] == schema(["url", "depth"], "Inputs")
    assert stored["outputs_schema"] == schema(["html"], "Outputs")


async def test_registration_body_is_validated(api: Api) -> None:
    missing_secrets = {
        "runtime_name": "rt",
        "nodes": [{"name": "A", "inputs_schema": {}, "outputs_schema": {}}],
    }
    empty_name = registration({**ALPHA, "name": ""})

    await api.call("PUT", "/nodes/", missing_secrets, expect=422)
    await api.call("PUT", "/nodes/", empty_name, expect=422)
    assert (await api.call("GET", "/nodes/"))["count"] == 0


async def test_registering_nodes_after_the_graph_makes_it_valid(api: Api) -> None:
    stored = await api.upsert("g", chain())
    assert stored["validation_status"] == "INVALID"
    assert f"Node Alpha in namespace {NAMESPACE} does not exist." in stored["validation_errors"]
    assert f"Node Beta in namespace {NAMESPACE} does not exist." in stored["validation_errors"]

    await api.register(ALPHA)
    halfway = await api.get_graph("g")
    await api.register(BETA)
    after = await api.get_graph("g")

    assert halfway["validation_status"] == "INVALID"
    assert halfway["validation_errors"] == [f"Node Beta in namespace {NAMESPACE} does not exist."]
    assert after["validation_status"] == "VALID"
    assert after["validation_errors"] == []
    triggered = await api.trigger("g")
    assert triggered["status"] == "CREATED"


async def test_re_registering_with_an_incompatible_schema_invalidates_the_graph(api: Api) -> None:
    await api.setup("g", chain(), ALPHA, BETA)

    await api.register(node("Alpha", outputs=["renamed"]))
    stored = await api.get_graph("g")

    assert stored["validation_status"] == "INVALID"
    assert any("y" in error and "Alpha" in error for error in stored["validation_errors"])
    await api.trigger("g", expect=400)
