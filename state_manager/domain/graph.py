"""Graph template validation, in two layers.

1. :func:`validate_structure` checks what the template alone decides (identifiers, edges, one root,
   no cycle, no diamond, placeholders, store keys) and returns the :class:`GraphShape` the rest of
   the server works with. It raises :class:`GraphStructureError` listing every problem found.
2. :func:`check_registered` checks the template against the nodes the runtimes registered (existence,
   secrets, input and output fields) and returns the problems as strings.

Edges are the ``next_nodes`` edges plus, for each join node ``J`` with ``unites: U``, an edge
``U -> J``. Every node but the root has exactly one parent: its single ``next_nodes`` predecessor, or
``U`` for a join. A node's ancestors are the path from the root to its parent, so a join may
reference only ``U``, ``U``'s ancestors and the store::

    r ──> s ──> p          m unites r: parents[m] = r, ancestors[m] = [r]
    └───────────────> m
"""

from __future__ import annotations

from collections import Counter, deque
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from state_manager.domain.models import ConcurrencyLimit, NodeTemplate, RegisteredNodeInfo, StoreConfig
from state_manager.domain.names import field_name_problem
from state_manager.domain.placeholders import OutputRef, PlaceholderError, Ref, StoreRef, find_refs

RESERVED_IDENTIFIER = "store"


class GraphStructureError(ValueError):
    """The template is structurally invalid; ``errors`` lists every problem found."""

    def __init__(self, errors: list[str]) -> None:
        super().__init__("; ".join(errors))
        self.errors = list(errors)


@dataclass(frozen=True)
class GraphShape:
    """The resolved structure of a valid template, keyed by node identifier."""

    root: str
    ancestors: dict[str, list[str]]
    parents: dict[str, str | None]
    joins_on: dict[str, list[str]]
    by_id: dict[str, NodeTemplate]


# ---------------------------------------------------------------- layer 1: structure


def validate_structure(nodes: list[NodeTemplate], store_config: StoreConfig) -> GraphShape:
    """Check the template's structure and return its shape, or raise :class:`GraphStructureError`."""
    if not nodes:
        raise GraphStructureError(["Graph must have at least one node"])
    identity_errors = _identity_errors(nodes)
    errors = _store_config_errors(store_config) + identity_errors
    store_keys = set(store_config.required_keys) | set(store_config.default_values)
    identifiers = {node.identifier for node in nodes}
    for position, node in enumerate(nodes, start=1):
        errors += _node_errors(node, position, identifiers, store_keys)
    shape: GraphShape | None = None
    if not identity_errors:
        topology_errors, shape = _analyse_topology(nodes)
        errors += topology_errors
        if shape is not None:
            errors += _ancestor_errors(nodes, shape)
    if errors or shape is None:
        raise GraphStructureError(list(dict.fromkeys(errors)))
    return shape


def _store_config_errors(store_config: StoreConfig) -> list[str]:
    errors: list[str] = []
    sources = (("required_keys", store_config.required_keys), ("default_values", store_config.default_values))
    for where, keys in sources:
        for key in keys:
            if not key.strip():
                errors.append(f"Store key in {where} must not be empty")
            elif problem := field_name_problem(key):
                errors.append(f"Store key {key!r} in {where} {problem}")
    for key, count in Counter(store_config.required_keys).items():
        if count > 1:
            errors.append(f"Store key '{key}' is listed more than once in required_keys")
    return errors


def _identity_errors(nodes: list[NodeTemplate]) -> list[str]:
    """Problems that make an identifier ambiguous; the edges cannot be analysed while any remain."""
    errors: list[str] = []
    for position, node in enumerate(nodes, start=1):
        if not node.identifier.strip():
            errors.append(f"Node at position {position} ({node.node_name}) has an empty identifier")
        elif problem := field_name_problem(node.identifier):
            errors.append(
                f"Node identifier {node.identifier!r} (position {position}, {node.node_name}) {problem}"
            )
    for identifier, count in Counter(node.identifier for node in nodes).items():
        if count > 1 and identifier.strip():
            errors.append(f"Node identifier {identifier} is not unique")
    return errors


def _node_errors(node: NodeTemplate, position: int, identifiers: set[str], store_keys: set[str]) -> list[str]:
    errors: list[str] = []
    label = node.identifier if node.identifier.strip() else f"at position {position}"
    if not node.node_name.strip():
        errors.append(f"Node {label} has an empty node_name")
    if not node.namespace.strip():
        errors.append(f"Node {label} has an empty namespace")
    if node.identifier == RESERVED_IDENTIFIER:
        errors.append(f"Node identifier '{RESERVED_IDENTIFIER}' is reserved for the run store")
    errors += _next_nodes_errors(node, identifiers)
    errors += _unites_errors(node, identifiers)
    errors += _input_errors(node, identifiers, store_keys)
    errors += _limit_errors(node, identifiers, store_keys)
    return errors


MAX_LIMIT = 1_000_000  # the most a concurrency limit, a rate or a burst may be


def _limit_errors(node: NodeTemplate, identifiers: set[str], store_keys: set[str]) -> list[str]:
    """Problems with a node's flow-control settings (issue 18): their numbers, and their keys'
    placeholders (ancestry is checked with the inputs', in `_ancestor_errors`)."""
    errors: list[str] = []
    where = f"node {node.identifier}"
    if node.concurrency is not None:
        errors += concurrency_errors(node.concurrency, where, store_keys, identifiers)
    if node.rate_limit is not None:
        rate = node.rate_limit
        if not 0 < rate.per_second <= MAX_LIMIT:
            errors.append(f"rate_limit.per_second of {where} must be above 0 and at most {MAX_LIMIT}")
        if not 1 <= rate.burst <= MAX_LIMIT:
            errors.append(f"rate_limit.burst of {where} must be at least 1 and at most {MAX_LIMIT}")
        errors += _key_errors(rate.key, f"rate_limit.key of {where}", store_keys, identifiers)
    return errors


def concurrency_errors(
    limit: ConcurrencyLimit, where: str, store_keys: set[str], identifiers: set[str] | None
) -> list[str]:
    """Problems with a `concurrency` setting of a node, or of a graph (`identifiers` None: its
    key may name store keys only, as a run's key is known when it is triggered)."""
    errors: list[str] = []
    if not 1 <= limit.limit <= MAX_LIMIT:
        errors.append(f"concurrency.limit of {where} must be at least 1 and at most {MAX_LIMIT}")
    return errors + _key_errors(limit.key, f"concurrency.key of {where}", store_keys, identifiers)


def _key_errors(key: str | None, label: str, store_keys: set[str], identifiers: set[str] | None) -> list[str]:
    if key is None:
        return []
    if not key.strip():
        return [f"{label} must not be empty (leave it out to limit in all)"]
    try:
        refs = find_refs(key)
    except PlaceholderError as exc:
        return [f"{label}: {exc}"]
    errors: list[str] = []
    for ref in refs:
        if isinstance(ref, StoreRef) and ref.key not in store_keys:
            errors.append(
                f"{label} references store key {ref.key}, which is neither a required key nor has a "
                "default value"
            )
        elif isinstance(ref, OutputRef) and identifiers is None:
            errors.append(f"{label} references {ref.identifier}: a graph's key may reference only store keys")
        elif isinstance(ref, OutputRef) and ref.collect:
            errors.append(f"{label} collects {ref}: a key takes one value, not [*]")
        elif isinstance(ref, OutputRef) and identifiers is not None and ref.identifier not in identifiers:
            errors.append(f"{label} references {ref.identifier}, which does not exist in the graph")
    return errors


def limit_keys(node: NodeTemplate) -> list[tuple[str, str]]:
    """(label, template) of each key of a node's flow-control settings."""
    keys = []
    if node.concurrency is not None and node.concurrency.key:
        keys.append(("concurrency.key", node.concurrency.key))
    if node.rate_limit is not None and node.rate_limit.key:
        keys.append(("rate_limit.key", node.rate_limit.key))
    return keys


def _next_nodes_errors(node: NodeTemplate, identifiers: set[str]) -> list[str]:
    errors: list[str] = []
    next_nodes = node.next_nodes or []
    for target in next_nodes:
        if target == node.identifier:
            errors.append(f"Node {node.identifier} lists itself as a next node")
        elif target not in identifiers:
            errors.append(f"Node {node.identifier} lists next node {target} that does not exist in the graph")
    for target, count in Counter(next_nodes).items():
        if count > 1:
            errors.append(f"Node {node.identifier} lists next node {target} more than once")
    return errors


def _unites_errors(node: NodeTemplate, identifiers: set[str]) -> list[str]:
    if node.unites is None:
        return []
    target = node.unites.identifier
    if target == node.identifier:
        return [f"Node {node.identifier} cannot unite on itself"]
    if target not in identifiers:
        return [f"Node {node.identifier} unites on {target}, which does not exist in the graph"]
    return []


def _input_errors(node: NodeTemplate, identifiers: set[str], store_keys: set[str]) -> list[str]:
    errors: list[str] = []
    for key, value in node.inputs.items():
        if problem := field_name_problem(key):
            errors.append(f"Input name {key!r} of node {node.identifier} {problem}")
            continue
        if not isinstance(value, str):
            errors.append(f"Input '{key}' of node {node.identifier} must be a string")
            continue
        try:
            refs = find_refs(value)
        except PlaceholderError as exc:
            errors.append(f"Input '{key}' of node {node.identifier}: {exc}")
            continue
        errors += [msg for ref in refs if (msg := _ref_error(node, key, ref, identifiers, store_keys))]
    return errors


def _ref_error(node: NodeTemplate, key: str, ref: Ref, identifiers: set[str], store_keys: set[str]) -> str:
    prefix = f"Input '{key}' of node {node.identifier} references"
    if isinstance(ref, StoreRef) and ref.key not in store_keys:
        return f"{prefix} store key {ref.key}, which is neither a required key nor has a default value"
    if isinstance(ref, OutputRef) and ref.identifier not in identifiers:
        return f"{prefix} {ref.identifier}, which does not exist in the graph"
    return ""


def _output_refs(node: NodeTemplate) -> Iterator[tuple[str, OutputRef]]:
    """(input key, reference) for each well-formed ``X.outputs.f`` placeholder of ``node``."""
    for key, value in node.inputs.items():
        if not isinstance(value, str):
            continue
        try:
            refs = find_refs(value)
        except PlaceholderError:
            continue
        yield from ((key, ref) for ref in refs if isinstance(ref, OutputRef))


# ---------------------------------------------------------------- layer 1: topology


def _analyse_topology(nodes: list[NodeTemplate]) -> tuple[list[str], GraphShape | None]:
    """Topology problems, and the shape when there are none. Identifiers must be unique here."""
    by_id = {node.identifier: node for node in nodes}
    predecessors = _next_predecessors(nodes, by_id)
    successors = _successors(nodes, by_id)
    references = Counter(target for node in nodes for target in node.next_nodes or [])
    roots = [node.identifier for node in nodes if not references[node.identifier] and node.unites is None]
    errors: list[str] = []
    if len(roots) != 1:
        errors.append(f"Graph must have exactly one root node, found {len(roots)}: [{', '.join(roots)}]")
    errors += _diamond_errors(nodes, predecessors)
    errors += _cycle_errors(nodes, successors)
    if len(roots) == 1:
        errors += _reachability_errors(nodes, successors, roots[0])
    # A join on an unknown node (or on itself) is reported by the node checks; no shape without it.
    if errors or any(_unites_errors(node, set(by_id)) for node in nodes):
        return errors, None
    return [], _build_shape(nodes, by_id, predecessors, successors, roots[0])


def _next_predecessors(nodes: list[NodeTemplate], by_id: dict[str, NodeTemplate]) -> dict[str, list[str]]:
    """Distinct nodes listing each node in ``next_nodes`` (self-loops left out), in template order."""
    predecessors: dict[str, list[str]] = {identifier: [] for identifier in by_id}
    for node in nodes:
        for target in dict.fromkeys(node.next_nodes or []):
            if target in by_id and target != node.identifier:
                predecessors[target].append(node.identifier)
    return predecessors


def _successors(nodes: list[NodeTemplate], by_id: dict[str, NodeTemplate]) -> dict[str, list[str]]:
    """Every edge: ``next_nodes`` edges plus ``U -> J`` for each join ``J`` uniting on ``U``."""
    successors: dict[str, list[str]] = {identifier: [] for identifier in by_id}
    for node in nodes:
        for target in dict.fromkeys(node.next_nodes or []):
            if target in by_id and target != node.identifier:
                successors[node.identifier].append(target)
    for node in nodes:
        united = node.unites.identifier if node.unites is not None else None
        if united in by_id and united != node.identifier and node.identifier not in successors[united]:
            successors[united].append(node.identifier)
    return successors


def _diamond_errors(nodes: list[NodeTemplate], predecessors: dict[str, list[str]]) -> list[str]:
    return [
        f"Node {node.identifier} has more than one parent ({', '.join(predecessors[node.identifier])}); "
        "use unites to join branches"
        for node in nodes
        if node.unites is None and len(predecessors[node.identifier]) > 1
    ]


def _cycle_errors(nodes: list[NodeTemplate], successors: dict[str, list[str]]) -> list[str]:
    return [
        f"Node {cycle[0]} is part of a cycle: {' -> '.join(cycle)}"
        for cycle in _find_cycles(nodes, successors)
    ]


def _find_cycles(nodes: list[NodeTemplate], successors: dict[str, list[str]]) -> list[list[str]]:
    """One cycle per back edge of an iterative depth-first search, as a closed path."""
    finished: set[str] = set()
    cycles: list[list[str]] = []
    for start in (node.identifier for node in nodes):
        if start in finished:
            continue
        path = [start]
        stack = [iter(successors[start])]
        while stack:
            child = next(stack[-1], None)
            if child is None:
                finished.add(path.pop())
                stack.pop()
            elif child in path:
                cycles.append([*path[path.index(child) :], child])
            elif child not in finished:
                path.append(child)
                stack.append(iter(successors[child]))
    return cycles


def _reachability_errors(nodes: list[NodeTemplate], successors: dict[str, list[str]], root: str) -> list[str]:
    reached = {root}
    queue = deque([root])
    while queue:
        for child in successors[queue.popleft()]:
            if child not in reached:
                reached.add(child)
                queue.append(child)
    return [
        f"Node {node.identifier} is not connected to the root node {root}"
        for node in nodes
        if node.identifier not in reached
    ]


def _build_shape(
    nodes: list[NodeTemplate],
    by_id: dict[str, NodeTemplate],
    predecessors: dict[str, list[str]],
    successors: dict[str, list[str]],
    root: str,
) -> GraphShape:
    parents: dict[str, str | None] = {}
    ancestors: dict[str, list[str]] = {}
    for identifier in _topological_order(nodes, successors):
        node = by_id[identifier]
        if node.unites is not None:
            parent: str | None = node.unites.identifier
        else:
            parent = predecessors[identifier][0] if predecessors[identifier] else None
        parents[identifier] = parent
        ancestors[identifier] = [] if parent is None else [*ancestors[parent], parent]
    joins_on: dict[str, list[str]] = {}
    for node in nodes:
        if node.unites is not None:
            joins_on.setdefault(node.unites.identifier, []).append(node.identifier)
    return GraphShape(root=root, ancestors=ancestors, parents=parents, joins_on=joins_on, by_id=by_id)


def _topological_order(nodes: list[NodeTemplate], successors: dict[str, list[str]]) -> list[str]:
    in_degree = {node.identifier: 0 for node in nodes}
    for targets in successors.values():
        for target in targets:
            in_degree[target] += 1
    ready = deque(identifier for identifier, degree in in_degree.items() if degree == 0)
    order: list[str] = []
    while ready:
        identifier = ready.popleft()
        order.append(identifier)
        for target in successors[identifier]:
            in_degree[target] -= 1
            if in_degree[target] == 0:
                ready.append(target)
    return order


def _ancestor_errors(nodes: list[NodeTemplate], shape: GraphShape) -> list[str]:
    errors: list[str] = []
    for node in nodes:
        allowed = set(shape.ancestors[node.identifier])
        errors += _limit_ancestor_errors(node, allowed, shape)
        for key, ref in _output_refs(node):
            if ref.identifier not in shape.by_id:
                continue
            if ref.collect:
                errors += _collect_errors(node, key, ref, shape)
                continue
            if ref.identifier in allowed:
                continue
            if node.identifier == shape.root:
                errors.append(
                    f"Input '{key}' of node {node.identifier} references {ref.identifier}, "
                    "but the root node may reference only store keys"
                )
            else:
                errors.append(
                    f"Input '{key}' of node {node.identifier} references {ref.identifier}, "
                    f"which is not an ancestor of {node.identifier}"
                )
    return errors


def _limit_ancestor_errors(node: NodeTemplate, allowed: set[str], shape: GraphShape) -> list[str]:
    """A flow-control key, like an input, may name only the outputs of the node's ancestors."""
    errors: list[str] = []
    for label, key in limit_keys(node):
        try:
            refs = find_refs(key)
        except PlaceholderError:
            continue  # reported by `_limit_errors`
        for ref in refs:
            if isinstance(ref, OutputRef) and ref.identifier in shape.by_id and ref.identifier not in allowed:
                errors.append(
                    f"{label} of node {node.identifier} references {ref.identifier}, which is not an "
                    f"ancestor of {node.identifier}"
                )
    return errors


def _collect_errors(node: NodeTemplate, key: str, ref: OutputRef, shape: GraphShape) -> list[str]:
    """A `[*]` reference collects from the branches of a join: only a join may hold one, and
    what it names must be below the join's anchor (in its scope), not the join or after it."""
    where = f"Input '{key}' of node {node.identifier} collects {ref}"
    if node.unites is None:
        return [f"{where}, but only a join (a node with unites) can collect results with [*]"]
    anchor = node.unites.identifier
    target = ref.identifier
    in_scope = anchor in shape.ancestors[target] and node.identifier not in shape.ancestors[target]
    if target == node.identifier or not in_scope:
        return [f"{where}, but {target} is not in the join's scope (a node below {anchor})"]
    return []


# ---------------------------------------------------------------- layer 2: registered nodes


def check_registered(
    nodes: list[NodeTemplate],
    shape: GraphShape,
    registered: dict[tuple[str, str], RegisteredNodeInfo],
    secret_names: set[str],
) -> list[str]:
    """Check the template against the registered nodes; an empty list means the graph is valid."""
    errors: list[str] = []
    for node in nodes:
        info = registered.get((node.node_name, node.namespace))
        if info is None:
            errors.append(f"Node {node.node_name} in namespace {node.namespace} does not exist.")
            continue
        errors += [
            f"Secret {secret} is required by node {node.node_name} but not present in the graph template"
            for secret in info.secrets
            if secret not in secret_names
        ]
        errors += _registered_input_errors(node, info)
        errors += _output_field_errors(node, shape, registered)
    return list(dict.fromkeys(errors))


def _registered_input_errors(node: NodeTemplate, info: RegisteredNodeInfo) -> list[str]:
    errors: list[str] = []
    for field, schema in _properties(info.inputs_schema).items():
        where = f"Input {field} of node {node.identifier} ({node.node_name})"
        if not (isinstance(schema, dict) and schema.get("type") == "string"):
            errors.append(f"{where} is not a string")
        if field not in node.inputs:
            errors.append(f"{where} is not present in the graph template")
    return errors


def _output_field_errors(
    node: NodeTemplate, shape: GraphShape, registered: dict[tuple[str, str], RegisteredNodeInfo]
) -> list[str]:
    errors: list[str] = []
    for key, ref in _output_refs(node):
        source = shape.by_id.get(ref.identifier)
        info = registered.get((source.node_name, source.namespace)) if source is not None else None
        if source is None or info is None or ref.field in _properties(info.outputs_schema):
            continue
        errors.append(
            f"Input '{key}' of node {node.identifier} references field {ref.field}, "
            f"which node {source.identifier} ({source.node_name}) does not output"
        )
    return errors


def _properties(schema: dict[str, Any]) -> dict[str, Any]:
    properties = schema.get("properties")
    return properties if isinstance(properties, dict) else {}
