"""Graph template validation: structure (layer 1) and registered nodes (layer 2)."""

from __future__ import annotations

from typing import Any

import pytest

from state_manager.domain.graph import GraphShape, GraphStructureError, check_registered, validate_structure
from state_manager.domain.models import NodeTemplate, RegisteredNodeInfo, StoreConfig, Unites


def node(
    identifier: str,
    next_nodes: list[str] | None = None,
    *,
    unites: str | None = None,
    inputs: dict[str, Any] | None = None,
    name: str | None = None,
    namespace: str = "ns",
) -> NodeTemplate:
    return NodeTemplate(
        node_name=name if name is not None else f"{identifier.capitalize()}Node",
        namespace=namespace,
        identifier=identifier,
        inputs=inputs or {},
        next_nodes=next_nodes,
        unites=Unites(identifier=unites) if unites is not None else None,
    )


def store(*required: str, **defaults: str) -> StoreConfig:
    return StoreConfig(required_keys=list(required), default_values=defaults)


def errors_of(nodes: list[NodeTemplate], store_config: StoreConfig | None = None) -> list[str]:
    with pytest.raises(GraphStructureError) as info:
        validate_structure(nodes, store_config or StoreConfig())
    assert str(info.value) == "; ".join(info.value.errors)
    return info.value.errors


def fan_join(**m_inputs: str) -> list[NodeTemplate]:
    """r -> s -> p, and m unites r."""
    return [node("r", ["s"]), node("s", ["p"]), node("p"), node("m", unites="r", inputs=m_inputs)]


# ---------------------------------------------------------------- accepted shapes


def test_single_node_is_its_own_root() -> None:
    shape = validate_structure([node("r")], StoreConfig())
    assert shape == GraphShape(
        root="r", ancestors={"r": []}, parents={"r": None}, joins_on={}, by_id=shape.by_id
    )
    assert shape.by_id["r"].node_name == "RNode"


def test_chain_ancestors_are_in_path_order() -> None:
    shape = validate_structure([node("c"), node("b", ["c"]), node("a", ["b"])], StoreConfig())
    assert shape.root == "a"
    assert shape.ancestors == {"a": [], "b": ["a"], "c": ["a", "b"]}
    assert shape.parents == {"a": None, "b": "a", "c": "b"}


def test_fan_out_tree_gives_each_branch_its_own_path() -> None:
    shape = validate_structure([node("r", ["a", "b"]), node("a", ["c"]), node("b"), node("c")], StoreConfig())
    assert shape.ancestors == {"r": [], "a": ["r"], "b": ["r"], "c": ["r", "a"]}


def test_join_uniting_on_root_is_accepted() -> None:
    shape = validate_structure(fan_join(x="${{ r.outputs.y }}"), StoreConfig())
    assert shape.root == "r"
    assert shape.parents == {"r": None, "s": "r", "p": "s", "m": "r"}
    assert shape.ancestors["m"] == ["r"]
    assert shape.joins_on == {"r": ["m"]}


@pytest.mark.parametrize("listed_by", [["p"], ["s", "p"], ["r", "s", "p"]])
def test_join_may_be_listed_by_any_number_of_nodes(listed_by: list[str]) -> None:
    nodes = [
        node("r", ["s", "m"] if "r" in listed_by else ["s"]),
        node("s", ["p", "m"] if "s" in listed_by else ["p"]),
        node("p", ["m"]),
        node("m", unites="r"),
    ]
    shape = validate_structure(nodes, StoreConfig())
    assert shape.parents["m"] == "r"
    assert shape.ancestors["m"] == ["r"]


def test_join_ancestors_are_those_of_the_united_node() -> None:
    nodes = [
        node("r", ["a"]),
        node("a", ["b", "c"]),
        node("b"),
        node("c"),
        node("j", ["z"], unites="a"),
        node("z"),
    ]
    shape = validate_structure(nodes, StoreConfig())
    assert shape.ancestors["j"] == ["r", "a"]
    assert shape.ancestors["z"] == ["r", "a", "j"]
    assert shape.parents["z"] == "j"


def test_several_joins_on_one_node_are_listed_in_template_order() -> None:
    nodes = [node("r", ["a"]), node("k", unites="r"), node("a"), node("j", unites="r")]
    assert validate_structure(nodes, StoreConfig()).joins_on == {"r": ["k", "j"]}


def test_nodes_may_reference_any_ancestor_and_the_store() -> None:
    nodes = [
        node("r", ["a"], inputs={"q": "${{ store.topic }}"}),
        node("a", ["b"], inputs={"x": "${{ r.outputs.o }}"}),
        node("b", inputs={"x": "${{ r.outputs.o }}+${{ a.outputs.o }} ${{ store.lang }}"}),
    ]
    validate_structure(nodes, store("topic", lang="en"))


def test_node_after_a_join_may_reference_the_join_and_its_ancestors() -> None:
    nodes = [
        node("r", ["s"]),
        node("s", ["p"]),
        node("p", ["m"]),
        node("m", ["z"], unites="r"),
        node("z", inputs={"x": "${{ m.outputs.o }} ${{ r.outputs.o }}"}),
    ]
    validate_structure(nodes, StoreConfig())


# ---------------------------------------------------------------- node-level problems


def test_empty_graph_is_refused() -> None:
    assert errors_of([]) == ["Graph must have at least one node"]


def test_duplicate_identifiers_are_refused_once() -> None:
    errors = errors_of([node("r", ["a"]), node("a"), node("a")])
    assert errors == ["Node identifier a is not unique"]


def test_store_is_a_reserved_identifier() -> None:
    assert "Node identifier 'store' is reserved for the run store" in errors_of([node("store")])


@pytest.mark.parametrize(
    ("template", "message"),
    [
        (node("r", name=" "), "Node r has an empty node_name"),
        (node("r", namespace=""), "Node r has an empty namespace"),
        (node("", name="Fetch"), "Node at position 1 (Fetch) has an empty identifier"),
    ],
)
def test_empty_fields_are_named(template: NodeTemplate, message: str) -> None:
    assert message in errors_of([template])


@pytest.mark.parametrize(
    ("nodes", "message"),
    [
        ([node("r", ["ghost"])], "Node r lists next node ghost that does not exist in the graph"),
        ([node("r", ["a", "a"]), node("a")], "Node r lists next node a more than once"),
        ([node("r", ["a"]), node("a", ["a"])], "Node a lists itself as a next node"),
        ([node("r"), node("j", unites="ghost")], "Node j unites on ghost, which does not exist in the graph"),
        ([node("r"), node("j", unites="j")], "Node j cannot unite on itself"),
    ],
)
def test_edge_problems_name_the_node(nodes: list[NodeTemplate], message: str) -> None:
    assert message in errors_of(nodes)


@pytest.mark.parametrize("value", [1, None, ["a"], {"k": "v"}, True])
def test_inputs_must_be_strings(value: Any) -> None:
    assert errors_of([node("r", inputs={"n": value})]) == ["Input 'n' of node r must be a string"]


@pytest.mark.parametrize(
    ("value", "fragment"),
    [("${{ store.k", "not closed"), ("${{ r.result }}", "Invalid placeholder '${{ r.result }}'")],
)
def test_bad_placeholders_name_node_and_input(value: str, fragment: str) -> None:
    [error] = errors_of([node("r", inputs={"q": value})])
    assert error.startswith("Input 'q' of node r: ")
    assert fragment in error


def test_reference_to_a_missing_node_is_named() -> None:
    errors = errors_of([node("r", ["a"]), node("a", inputs={"x": "${{ ghost.outputs.y }}"})])
    assert errors == ["Input 'x' of node a references ghost, which does not exist in the graph"]


# ---------------------------------------------------------------- store references and config


@pytest.mark.parametrize("config", [store("k"), store(k="default")])
def test_store_reference_needs_a_required_or_default_key(config: StoreConfig) -> None:
    validate_structure([node("r", inputs={"q": "${{ store.k }}"})], config)


def test_unknown_store_key_is_refused() -> None:
    errors = errors_of([node("r", inputs={"q": "${{ store.k }}"})], store("other"))
    assert errors == [
        "Input 'q' of node r references store key k, which is neither a required key nor has a default value"
    ]


@pytest.mark.parametrize(
    ("config", "message"),
    [
        (store(""), "Store key in required_keys must not be empty"),
        (store(**{" ": "v"}), "Store key in default_values must not be empty"),
        (store("a.b"), "Store key 'a.b' in required_keys must not contain '.'"),
        (store(**{"a.b": "v"}), "Store key 'a.b' in default_values must not contain '.'"),
        (store("k", "k"), "Store key 'k' is listed more than once in required_keys"),
    ],
)
def test_store_config_keys_are_checked(config: StoreConfig, message: str) -> None:
    assert errors_of([node("r")], config) == [message]


# ---------------------------------------------------------------- topology


def test_two_roots_are_refused_and_listed() -> None:
    errors = errors_of([node("a"), node("b")])
    assert errors == ["Graph must have exactly one root node, found 2: [a, b]"]


def test_a_join_never_counts_as_a_root() -> None:
    validate_structure([node("r"), node("j", unites="r")], StoreConfig())


def test_diamond_is_refused() -> None:
    nodes = [node("r", ["b", "c"]), node("b", ["d"]), node("c", ["d"]), node("d")]
    assert errors_of(nodes) == ["Node d has more than one parent (b, c); use unites to join branches"]


def test_cycle_with_no_root_is_refused() -> None:
    errors = errors_of([node("a", ["b"]), node("b", ["a"])])
    assert "Graph must have exactly one root node, found 0: []" in errors
    assert "Node a is part of a cycle: a -> b -> a" in errors


def test_cycle_through_a_join_is_refused() -> None:
    nodes = [node("r", ["j"]), node("j", ["b"], unites="b"), node("b")]
    assert errors_of(nodes) == ["Node j is part of a cycle: j -> b -> j"]


def test_cycle_below_the_root_names_its_nodes() -> None:
    errors = errors_of([node("r", ["a"]), node("a", ["b"]), node("b", ["c"]), node("c", ["a"])])
    assert "Node a is part of a cycle: a -> b -> c -> a" in errors
    assert "Node a has more than one parent (r, c); use unites to join branches" in errors


def test_unreachable_nodes_are_named_with_the_root() -> None:
    errors = errors_of([node("r", ["a"]), node("a"), node("j", unites="ghost"), node("x", ["x"])])
    assert "Node j is not connected to the root node r" in errors
    assert "Node x is not connected to the root node r" in errors
    assert "Node a is not connected to the root node r" not in errors


def test_all_problems_are_reported_together() -> None:
    nodes = [node("a", inputs={"n": 1}), node("b", ["ghost"])]
    errors = errors_of(nodes, store("x.y"))
    assert errors == [
        "Store key 'x.y' in required_keys must not contain '.'",
        "Input 'n' of node a must be a string",
        "Node b lists next node ghost that does not exist in the graph",
        "Graph must have exactly one root node, found 2: [a, b]",
    ]


# ---------------------------------------------------------------- ancestor references


def test_root_referencing_a_child_output_is_refused() -> None:
    errors = errors_of([node("r", ["a"], inputs={"q": "${{ a.outputs.y }}"}), node("a")])
    assert errors == ["Input 'q' of node r references a, but the root node may reference only store keys"]


def test_join_referencing_a_non_ancestor_is_refused() -> None:
    errors = errors_of(fan_join(x="${{ p.outputs.y }}", z="${{ s.outputs.y }}"))
    assert errors == [
        "Input 'x' of node m references p, which is not an ancestor of m",
        "Input 'z' of node m references s, which is not an ancestor of m",
    ]


@pytest.mark.parametrize(
    ("referenced", "why"),
    [("b", "sibling"), ("c", "descendant"), ("a", "itself")],
)
def test_non_ancestor_references_are_refused(referenced: str, why: str) -> None:
    nodes = [
        node("r", ["a", "b"]),
        node("a", ["c"], inputs={"x": f"${{{{ {referenced}.outputs.y }}}}"}),
        node("b"),
        node("c"),
    ]
    assert errors_of(nodes) == [
        f"Input 'x' of node a references {referenced}, which is not an ancestor of a"
    ], why


def test_repeated_reference_is_reported_once() -> None:
    nodes = [
        node("r", ["a", "b"]),
        node("a", inputs={"x": "${{ b.outputs.y }}${{ b.outputs.y }}"}),
        node("b"),
    ]
    assert errors_of(nodes) == ["Input 'x' of node a references b, which is not an ancestor of a"]


# ---------------------------------------------------------------- layer 2: registered nodes


def schema(*fields: str, kind: str = "string") -> dict[str, Any]:
    return {"type": "object", "properties": {field: {"type": kind} for field in fields}}


def registered(
    template: NodeTemplate,
    inputs: dict[str, Any] | None = None,
    outputs: dict[str, Any] | None = None,
    secrets: list[str] | None = None,
) -> tuple[tuple[str, str], RegisteredNodeInfo]:
    info = RegisteredNodeInfo(
        name=template.node_name,
        namespace=template.namespace,
        inputs_schema=inputs if inputs is not None else schema(*template.inputs),
        outputs_schema=outputs if outputs is not None else schema("y"),
        secrets=secrets or [],
    )
    return (template.node_name, template.namespace), info


def pipeline() -> list[NodeTemplate]:
    return [node("r", ["a"], inputs={"q": "hello"}), node("a", inputs={"x": "${{ r.outputs.y }}"})]


def check(
    nodes: list[NodeTemplate],
    registry: dict[tuple[str, str], RegisteredNodeInfo],
    secrets: set[str] | None = None,
) -> list[str]:
    return check_registered(nodes, validate_structure(nodes, StoreConfig()), registry, secrets or set())


def test_fully_registered_graph_is_valid() -> None:
    nodes = pipeline()
    assert check(nodes, dict(registered(n, secrets=["api_key"]) for n in nodes), {"api_key"}) == []


def test_unregistered_node_is_reported_with_its_namespace() -> None:
    nodes = pipeline()
    assert check(nodes, dict([registered(nodes[0])])) == ["Node ANode in namespace ns does not exist."]


def test_missing_secret_is_reported_once_per_node_name() -> None:
    nodes = [node("r", ["a"]), node("a", ["b"], name="Shared"), node("b", name="Shared")]
    registry = dict(registered(n, secrets=["token", "present"]) for n in nodes)
    assert check(nodes, registry, {"present"}) == [
        "Secret token is required by node RNode but not present in the graph template",
        "Secret token is required by node Shared but not present in the graph template",
    ]


def test_non_string_registered_input_is_reported() -> None:
    nodes = pipeline()
    registry = dict(registered(n) for n in nodes)
    registry[("ANode", "ns")] = registered(nodes[1], inputs=schema("x", kind="integer"))[1]
    assert check(nodes, registry) == ["Input x of node a (ANode) is not a string"]


def test_registered_input_missing_from_template_is_reported() -> None:
    nodes = pipeline()
    registry = dict(registered(n) for n in nodes)
    registry[("ANode", "ns")] = registered(nodes[1], inputs=schema("x", "limit"))[1]
    assert check(nodes, registry) == ["Input limit of node a (ANode) is not present in the graph template"]


def test_extra_template_inputs_are_allowed() -> None:
    nodes = pipeline()
    registry = dict(registered(n, inputs=schema()) for n in nodes)
    assert check(nodes, registry) == []


def test_referenced_output_field_must_be_registered() -> None:
    nodes = pipeline()
    registry = dict(registered(n, outputs=schema("other")) for n in nodes)
    assert check(nodes, registry) == [
        "Input 'x' of node a references field y, which node r (RNode) does not output"
    ]


def test_store_references_need_no_registered_output() -> None:
    nodes = [node("r", inputs={"q": "${{ store.k }}"})]
    assert (
        check_registered(nodes, validate_structure(nodes, store("k")), dict([registered(nodes[0])]), set())
        == []
    )


@pytest.mark.parametrize("target", ["ghost", "j"])
def test_a_join_on_an_unknown_node_or_itself_is_a_structure_error_not_a_crash(target: str) -> None:
    errors = errors_of([node("r", ["j"]), node("j", unites=target)])
    assert any("Node j" in error and target in error for error in errors)
