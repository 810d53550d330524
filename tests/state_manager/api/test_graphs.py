"""Graph templates: upsert, validation, read back, secrets."""

from __future__ import annotations

from typing import Any

import pytest

from state_manager.db.documents import GraphTemplate
from tests.factories import (
    ALPHA,
    BETA,
    NAMESPACE,
    Api,
    Json,
    Worker,
    chain,
    cron,
    fixed_retry,
    graph,
    node,
    template,
)

GAMMA = node("Gamma")


async def test_upsert_with_registered_nodes_is_201_valid(api: Api) -> None:
    await api.register(ALPHA, BETA)

    stored = await api.upsert("g", chain())

    assert stored["validation_status"] == "VALID"
    assert stored["validation_errors"] == []
    assert [n["identifier"] for n in stored["nodes"]] == ["a", "b"]
    assert stored["nodes"][0]["next_nodes"] == ["b"]
    assert stored["nodes"][1]["inputs"] == {"x": "from a: ${{ a.outputs.y }}"}
    assert stored["secrets"] == {}
    assert stored["created_at"] and stored["updated_at"]


async def test_upsert_without_registered_nodes_is_201_invalid_with_messages(api: Api) -> None:
    await api.register(ALPHA)

    stored = await api.upsert("g", chain())

    assert stored["validation_status"] == "INVALID"
    assert stored["validation_errors"] == [f"Node Beta in namespace {NAMESPACE} does not exist."]


async def test_upsert_reports_missing_secrets_and_input_fields(api: Api) -> None:
    await api.register(node("Alpha", inputs=["x", "extra"], secrets=["token"]), BETA)

    stored = await api.upsert("g", chain())

    assert stored["validation_status"] == "INVALID"
    errors = " | ".join(stored["validation_errors"])
    assert "token" in errors
    assert "extra" in errors


async def test_upsert_reports_an_output_field_the_parent_does_not_declare(api: Api) -> None:
    await api.register(node("Alpha", outputs=["other"]), BETA)

    stored = await api.upsert("g", chain())

    assert stored["validation_status"] == "INVALID"
    assert any("y" in e and "Alpha" in e for e in stored["validation_errors"]), stored["validation_errors"]


STRUCTURE_ERRORS: list[tuple[str, list[Json], list[str]]] = [
    (
        "two roots",
        [template("a", "Alpha", {"x": "1"}), template("b", "Beta", {"x": "2"})],
        ["root", "a", "b"],
    ),
    (
        "cycle",
        [
            template("a", "Alpha", {"x": "1"}, ["b"]),
            template("b", "Beta", {"x": "2"}, ["c"]),
            template("c", "Gamma", {"x": "3"}, ["b"]),
        ],
        ["cycle", "b"],
    ),
    (
        "diamond",
        [
            template("a", "Alpha", {"x": "1"}, ["b", "c"]),
            template("b", "Beta", {"x": "2"}, ["d"]),
            template("c", "Gamma", {"x": "3"}, ["d"]),
            template("d", "Alpha", {"x": "4"}),
        ],
        ["d", "more than one parent"],
    ),
    (
        "unknown next node",
        [template("a", "Alpha", {"x": "1"}, ["ghost"])],
        ["a", "ghost"],
    ),
    (
        "placeholder to a sibling",
        [
            template("a", "Alpha", {"x": "1"}, ["b", "c"]),
            template("b", "Beta", {"x": "2"}),
            template("c", "Gamma", {"x": "${{ b.outputs.y }}"}),
        ],
        ["c", "b", "not an ancestor"],
    ),
    (
        "placeholder to a descendant",
        [
            template("a", "Alpha", {"x": "1"}, ["b"]),
            template("b", "Beta", {"x": "${{ c.outputs.y }}"}, ["c"]),
            template("c", "Gamma", {"x": "2"}),
        ],
        ["b", "c", "not an ancestor"],
    ),
    (
        "root references an output",
        [template("a", "Alpha", {"x": "${{ b.outputs.y }}"}, ["b"]), template("b", "Beta", {"x": "2"})],
        ["a", "root"],
    ),
    (
        "unclosed placeholder",
        [template("a", "Alpha", {"x": "1"}, ["b"]), template("b", "Beta", {"x": "${{ a.outputs.y"})],
        ["b", "x"],
    ),
    (
        "placeholder without outputs",
        [template("a", "Alpha", {"x": "1"}, ["b"]), template("b", "Beta", {"x": "${{ a.y }}"})],
        ["b", "x"],
    ),
    (
        "store key not configured",
        [template("a", "Alpha", {"x": "${{ store.missing }}"})],
        ["a", "missing"],
    ),
    (
        "non-string input",
        [template("a", "Alpha", {"x": 5})],
        ["a", "x", "string"],
    ),
    (
        "duplicate identifiers",
        [template("a", "Alpha", {"x": "1"}, ["a2"]), template("a2", "Beta", {}), template("a", "Gamma", {})],
        ["a", "not unique"],
    ),
    (
        "unreachable node",
        [
            template("a", "Alpha", {"x": "1"}),
            template("b", "Beta", {"x": "2"}, ["c"]),
            template("c", "Gamma", {"x": "3"}, ["b"]),
        ],
        ["b", "c"],
    ),
    ("no nodes", [], ["at least one node"]),
]

UNITES_ERRORS: list[tuple[str, list[Json], list[str]]] = [
    (
        "unites target unknown",
        [template("a", "Alpha", {"x": "1"}, ["m"]), template("m", "Beta", {"x": "2"}, unites="ghost")],
        ["m", "ghost"],
    ),
    (
        "unites itself",
        [template("a", "Alpha", {"x": "1"}, ["m"]), template("m", "Beta", {"x": "2"}, unites="m")],
        ["m", "itself"],
    ),
]


async def _assert_structure_error(api: Api, nodes: list[Json], expected: list[str]) -> None:
    answer = await api.upsert("g", graph(*nodes), expect=400)

    detail = answer["detail"]
    assert detail.startswith("Error validating graph template: ")
    for word in expected:
        assert word in detail, f"{word!r} not in {detail!r}"
    await api.get_graph("g", expect=404)


async def test_structural_errors_are_400_naming_the_problem(api: Api, subtests: pytest.Subtests) -> None:
    await api.register(ALPHA, BETA, GAMMA)

    for name, nodes, expected in STRUCTURE_ERRORS:
        with subtests.test(name):
            await _assert_structure_error(api, nodes, expected)


@pytest.mark.parametrize(
    ("nodes", "expected"),
    [pytest.param(nodes, expected, id=name) for name, nodes, expected in UNITES_ERRORS],
)
async def test_bad_unites_targets_are_400_naming_the_problem(
    api: Api, nodes: list[Json], expected: list[str]
) -> None:
    await api.register(ALPHA, BETA, GAMMA)

    await _assert_structure_error(api, nodes, expected)


async def test_a_rejected_upsert_leaves_the_stored_graph_unchanged(api: Api) -> None:
    await api.setup("g", chain(), ALPHA, BETA)

    await api.upsert("g", graph(template("a", "Alpha", {"x": "1"}, ["ghost"])), expect=400)
    stored = await api.get_graph("g")

    assert [n["identifier"] for n in stored["nodes"]] == ["a", "b"]
    assert stored["validation_status"] == "VALID"


def _with_node(**changes: Any) -> Json:
    return graph({**template("a", "Alpha", {"x": "1"}), **changes})


MALFORMED_BODIES: list[tuple[str, Json, str]] = [
    ("empty node_name", _with_node(node_name=""), "Node name cannot be empty"),
    ("blank node_name", _with_node(node_name="   "), "Node name cannot be empty"),
    ("empty identifier", _with_node(identifier=""), "Node identifier cannot be empty"),
    ("identifier store", _with_node(identifier="store"), "reserved word 'store'"),
    ("duplicate next node", _with_node(next_nodes=["b", "b"]), "Next node identifier b is not unique"),
    ("blank next node", _with_node(next_nodes=[" "]), "Next node identifier cannot be empty"),
    ("blank unites", _with_node(unites={"identifier": " "}), "Unites identifier cannot be empty"),
    ("bad cron", {**_with_node(), "triggers": [cron("not a cron")]}, "Invalid cron expression"),
    ("cron without expression", {**_with_node(), "triggers": [{"type": "CRON", "value": {}}]}, "expression"),
    ("unknown trigger type", {**_with_node(), "triggers": [{"type": "WEBHOOK", "value": {}}]}, "type"),
    ("negative max_retries", {**_with_node(), "retry_policy": {"max_retries": -1}}, "max_retries"),
    ("unknown strategy", {**_with_node(), "retry_policy": {"strategy": "SOMETIMES"}}, "strategy"),
    (
        "dotted store key",
        {**_with_node(), "store_config": {"required_keys": ["a.b"]}},
        "must not contain '.'",
    ),
    ("secrets missing", {"nodes": [template("a", "Alpha", {"x": "1"})]}, "secrets"),
]


async def test_malformed_bodies_are_422(api: Api, subtests: pytest.Subtests) -> None:
    for name, body, message in MALFORMED_BODIES:
        with subtests.test(name):
            answer = await api.upsert("g", body, expect=422)

            assert message in str(answer["detail"])
    await api.get_graph("g", expect=404)


async def test_get_returns_what_was_stored(api: Api) -> None:
    await api.register(ALPHA, BETA)
    body = chain(
        retry_policy={
            "max_retries": 5,
            "strategy": "LINEAR",
            "backoff_factor": 10,
            "exponent": 3,
            "max_delay": 99,
        },
        store_config={"required_keys": ["k"], "default_values": {"d": "v"}},
        triggers=[cron("*/5 * * * *")],
        secrets={"token": "s3cret"},
    )
    await api.upsert("g", body)

    stored = await api.get_graph("g")

    assert stored["retry_policy"] == {
        "max_retries": 5,
        "strategy": "LINEAR",
        "backoff_factor": 10,
        "exponent": 3,
        "max_delay": 99,
    }
    assert stored["store_config"] == {"required_keys": ["k"], "default_values": {"d": "v"}}
    assert stored["triggers"] == [cron("*/5 * * * *")]
    assert stored["secrets"] == {"token": True}
    assert stored["validation_status"] == "VALID"


async def test_get_unknown_graph_is_404(api: Api) -> None:
    answer = await api.get_graph("nope", expect=404)

    assert answer == {"detail": f"Graph template nope not found in namespace {NAMESPACE}"}


async def test_graphs_are_per_namespace(api: Api) -> None:
    await api.setup("g", chain(), ALPHA, BETA)

    await api.call("GET", "/graph/g", expect=404, namespace="elsewhere")
    listed = await api.call("GET", "/graphs/", namespace="elsewhere")

    assert listed == {"namespace": "elsewhere", "count": 0, "templates": []}


async def test_re_upsert_replaces_the_template(api: Api) -> None:
    await api.setup("g", chain(retry_policy=fixed_retry(2)), ALPHA, BETA)

    await api.upsert("g", graph(template("a", "Alpha", {"x": "only"})))
    stored = await api.get_graph("g")
    listed = await api.call("GET", "/graphs/")

    assert [n["identifier"] for n in stored["nodes"]] == ["a"]
    assert stored["retry_policy"]["max_retries"] == 3  # back to the default: not merged
    assert listed["count"] == 1


async def test_secrets_are_shown_as_names_only(api: Api) -> None:
    await api.register(ALPHA, BETA)

    stored = await api.upsert("g", chain(secrets={"api_key": "plain-value", "other": "x"}))

    assert stored["secrets"] == {"api_key": True, "other": True}
    assert "plain-value" not in str(stored)


async def test_re_upserted_secret_value_is_the_one_a_worker_reads(api: Api) -> None:
    await api.register(node("Alpha", secrets=["api_key"]), BETA)
    await api.setup("g", chain(secrets={"api_key": "old-value"}))
    await api.setup("g", chain(secrets={"api_key": "new-value"}))
    await api.trigger("g")
    claimed = await Worker(api, "Alpha").claim_one()

    answer = await api.call("GET", f"/state/{claimed['state_id']}/secrets")

    assert answer == {"secrets": {"api_key": "new-value"}}


async def test_graph_listing_never_contains_secret_values(api: Api) -> None:
    await api.setup("g", chain(secrets={"api_key": "plain-value"}), ALPHA, BETA)
    stored = await GraphTemplate.find_one({"name": "g", "namespace": NAMESPACE})
    assert stored is not None
    ciphertext = stored.secrets["api_key"]
    assert ciphertext != "plain-value"  # encrypted at rest

    response = await api.client.get(api.url("/graphs/"))

    assert response.status_code == 200
    assert "plain-value" not in response.text
    assert ciphertext not in response.text
    body = response.json()
    assert body["namespace"] == NAMESPACE
    assert body["count"] == 1
    listed = body["templates"][0]
    assert listed["name"] == "g"
    assert listed["_id"] == str(stored.id)
    assert listed["secrets"] == {"api_key": True}
    assert listed["validation_status"] == "VALID"
