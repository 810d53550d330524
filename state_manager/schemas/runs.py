"""The graph structure of a run, with the fields of both eras."""

from __future__ import annotations

from typing import Any

from state_manager.clock import iso
from state_manager.db.documents import State
from state_manager.domain.status import StateStatus


def _node(state: State) -> dict[str, Any]:
    return {
        "id": str(state.id),
        "node_name": state.node_name,
        "identifier": state.identifier,
        "status": state.status.value,
        "inputs": state.inputs,
        "outputs": state.outputs,
        "error": state.error,
        "created_at": iso(state.created_at),
        "updated_at": iso(state.updated_at),
        "position": None,
    }


def run_graph_view(namespace: str, run_id: str, states: list[State]) -> dict[str, Any]:
    """Nodes are states; each non-root state has one edge from its direct parent."""
    present = {str(s.id) for s in states}
    edges: list[dict[str, Any]] = []
    for state in states:
        if not state.parents:
            continue
        parent_identifier, parent_id = list(state.parents.items())[-1]
        if parent_id in present:
            edges.append(
                {
                    "id": f"edge_{len(edges) + 1}",
                    "source": parent_id,
                    "target": str(state.id),
                    "source_output": parent_identifier,
                    "target_input": parent_identifier,
                }
            )
    summary = dict.fromkeys((s.value for s in StateStatus), 0)
    for state in states:
        summary[state.status.value] += 1
    nodes = [_node(s) for s in states]
    return {
        "namespace": namespace,
        "run_id": run_id,
        "graph_name": states[0].graph_name if states else "",
        "root_states": [node for node, s in zip(nodes, states, strict=True) if not s.parents],
        "nodes": nodes,
        "edges": edges,
        "node_count": len(nodes),
        "edge_count": len(edges),
        "execution_summary": summary,
    }
