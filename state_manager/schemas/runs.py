"""The graph structure of a run, with the fields of both eras."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

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


# --- Runs, states and queues as the dashboard and the CLI read them --------------------------

RunStatusName = Literal["PENDING", "RUNNING", "SUCCESS", "FAILED", "CANCELLED"]
NodeStatusName = Literal["NOT_STARTED", "PENDING", "RUNNING", "SUCCESS", "FAILED", "CANCELLED"]


class RunSummary(BaseModel):
    """A run with its stored status, counts and times (epoch ms)."""

    run_id: str
    namespace: str
    graph_name: str
    graph_version: int
    status: RunStatusName = Field(description="PENDING until a state is claimed, then RUNNING, then final")
    triggered_by: str = Field(description='"api", "cron" or "fork"')
    created_at: str
    created_ms: int
    started_ms: int | None = Field(description="when a state of the run was first claimed")
    finished_ms: int | None = Field(description="when the run ended (succeeded, failed or was cancelled)")
    duration_ms: int = Field(description="from creation to the end, or to now for a run still going")
    counts: dict[str, int] = Field(
        description="number of states in each state status (non-zero only). In a listing, the states "
        "of a run still going are counted together as OPEN; a single run's page counts them by status"
    )
    open_count: int = Field(description="states still going: created, claimed, or with effects still owed")
    total_count: int
    success_count: int
    pending_count: int
    errored_count: int
    retried_count: int
    cancelled_count: int
    priority: int = Field(
        default=0, description="seconds: its states are claimed as if due this much earlier"
    )
    forked_from: dict[str, Any] | None = Field(
        default=None,
        description='a fork: {"run_id": the run it was forked from, "from": [the nodes run again]}',
    )


class RunDetail(RunSummary):
    store: dict[str, str]
    cancelled_at: int | None
    forks: list[str] = Field(default_factory=list, description="the runs forked from this one, oldest first")


class RunPage(BaseModel):
    namespace: str
    runs: list[RunSummary]
    next_cursor: str | None = Field(description="pass as `cursor` for the next page; null on the last")


class StateItem(BaseModel):
    """A state in SEED's listings and HEAD's node details."""

    id: str
    node_name: str
    namespace_name: str
    identifier: str
    graph_name: str
    graph_version: int
    run_id: str
    status: str
    inputs: dict[str, Any]
    outputs: dict[str, Any]
    data: dict[str, Any]
    error: str | None
    parents: dict[str, str]
    retry_count: int
    fanout_id: str
    enqueue_after: int = Field(description="when it is (or was) due, epoch ms")
    claimed_ms: int | None
    ended_ms: int | None
    does_unites: bool
    reused_from: str | None = Field(
        default=None,
        description="in a forked run: the original run's state this one was copied from (not run)",
    )
    created_at: str
    updated_at: str


class StateView(StateItem):
    """One state with every time the dashboard shows (epoch ms) and its retry count."""

    error_details: dict[str, Any] | None = Field(
        default=None, description="The failed attempt's exception type, traceback and log lines, when sent"
    )
    manual_retry_fanout_id: str
    fanout_path: list[int]
    output_index: int
    lease_expires_at: int | None
    deadline_ms: int | None
    created_ms: int
    updated_ms: int


class StatePage(BaseModel):
    run_id: str
    states: list[StateView]
    next_cursor: str | None


class GraphNodeView(BaseModel):
    identifier: str
    node_name: str
    namespace: str
    status: NodeStatusName
    counts: dict[str, int]
    total: int
    next_nodes: list[str]
    unites: str | None


class GraphEdge(BaseModel):
    source: str
    target: str


class RunGraphView(BaseModel):
    """The template's DAG of a run, each node with the counts of its states by status."""

    run_id: str
    graph_name: str
    graph_version: int
    status: RunStatusName
    nodes: list[GraphNodeView]
    edges: list[GraphEdge]


class RetryFailedResult(BaseModel):
    run_id: str
    retried: int = Field(description="failed states retried by this call")
    state_ids: list[str] = Field(description="the new states")
    status: RunStatusName


# --- The upstream read calls' answers (their JSON is what the official SDKs know) -------------


class NamespaceStates(BaseModel):
    namespace: str
    count: int
    states: list[StateItem]
    run_ids: list[str]


class RunStates(BaseModel):
    namespace: str
    run_id: str
    count: int
    states: list[StateItem]


class RunGraphNode(BaseModel):
    id: str
    node_name: str
    identifier: str
    status: str
    inputs: dict[str, Any]
    outputs: dict[str, Any]
    error: str | None
    created_at: str
    updated_at: str
    position: None


class RunGraphLink(BaseModel):
    id: str
    source: str
    target: str
    source_output: str
    target_input: str


class RunStateGraph(BaseModel):
    """SEED's run graph: one node per state, an edge from each state's direct parent."""

    namespace: str
    run_id: str
    graph_name: str
    root_states: list[RunGraphNode]
    nodes: list[RunGraphNode]
    edges: list[RunGraphLink]
    node_count: int
    edge_count: int
    execution_summary: dict[str, int] = Field(description="states per status, every status listed")


class RunListItem(BaseModel):
    run_id: str
    graph_name: str
    success_count: int
    pending_count: int
    errored_count: int
    retried_count: int
    total_count: int
    status: str = Field(description="PENDING (also while running), SUCCESS, FAILED or CANCELLED")
    created_at: str


class RunList(BaseModel):
    namespace: str
    total: int
    page: int
    size: int
    runs: list[RunListItem]


class CancelRunResponse(BaseModel):
    run_id: str
    status: Literal["CANCELLED"]
    cancelled_count: int = Field(description="states this run's cancel cancelled")
