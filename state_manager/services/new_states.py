"""Building the states that follow others: next states, joins, fan-out copies' ids.

Shared by the spawn stage (`progress.py`) and the joins stage (`joins.py`). The only I/O is
reading the outputs of a branch's ancestors.
"""

from __future__ import annotations

import hashlib
from typing import Any
from uuid import uuid4

from bson import ObjectId

from state_manager.clock import now_ms
from state_manager.db import queries
from state_manager.db.documents import GraphTemplate, State
from state_manager.domain.gates import node_gates
from state_manager.domain.graph import limit_keys
from state_manager.domain.models import NodeTemplate
from state_manager.errors import TooLarge
from state_manager.services.context import AppContext


def state_oid(state: State) -> ObjectId:
    assert state.id is not None
    return ObjectId(str(state.id))


def fanout_copy_id(state: State, index: int) -> ObjectId:
    """The id of the `index`-th fan-out copy of `state` (1-based): the same on every settle.

    It keeps the state's creation second (ids stay roughly in creation order) and takes the
    rest from a hash of the state's id and the index.
    """
    digest = hashlib.sha256(f"{state.id}:fanout:{index}".encode()).digest()
    return ObjectId(state_oid(state).binary[:4] + digest[:8])


def check_size(ctx: AppContext, state: State) -> None:
    """Raise TooLarge when `state` would be over the store's document limit.

    Only a state whose text is big enough to come near the limit is encoded to measure it.
    """
    limit = ctx.settings.max_document_bytes
    text = sum(len(k) + len(str(v)) for k, v in state.inputs.items()) + sum(
        len(k) + len(v) for k, v in state.parents.items()
    )
    if 4 * text + 64 * 1024 < limit:  # UTF-8 takes at most 4 bytes a character
        return
    size = queries.encoded_size(state.model_dump(exclude={"id", "revision_id"}))
    if size > limit:
        raise TooLarge(
            f"The inputs of node {state.identifier} would make a state of {size} bytes, over the "
            f"store's limit of {limit} bytes"
        )


def new_state(
    origin: State,
    graph: GraphTemplate,
    template: NodeTemplate,
    inputs: dict[str, str],
    parents: dict[str, str],
    key: str,
) -> State:
    return State(
        node_name=template.node_name,
        namespace_name=template.namespace,
        identifier=template.identifier,
        graph_name=origin.graph_name,
        graph_namespace=origin.graph_namespace,
        graph_version=graph.version,
        fanout_path=[*origin.fanout_path, origin.output_index],
        run_id=origin.run_id,
        # A forked run's overrides of a node's inputs win over what its template makes of them.
        inputs={**inputs, **origin.input_overrides.get(template.identifier, {})},
        input_overrides=origin.input_overrides,
        pinned_version=origin.pinned_version,
        priority_ms=origin.priority_ms,
        parents=parents,
        spawn_key=key,
        enqueue_after=now_ms(),
        timeout_ms=template.timeout_seconds * 1000 if template.timeout_seconds else None,
        fanout_id=str(uuid4()),
        join_tally=True,
    )


async def branch_outputs(current: State, needed: set[str]) -> dict[str, dict[str, Any]]:
    """Outputs by identifier of `current` and of the ancestors in `needed` on its branch."""
    outputs: dict[str, dict[str, Any]] = {current.identifier: current.outputs}
    ids = [ObjectId(current.parents[name]) for name in needed if name in current.parents]
    if ids:
        for ancestor in await queries.find_states({"_id": {"$in": ids}}):
            outputs[ancestor.identifier] = ancestor.outputs
    return outputs


def template_texts(template: NodeTemplate) -> dict[str, Any]:
    """What of a node is resolved when a state of it is made: its inputs and its flow-control
    keys (what the planning of it reads: ancestors' outputs, the store)."""
    return {**template.inputs, **dict(limit_keys(template))}


def give_gates(
    state: State,
    template: NodeTemplate,
    outputs: dict[str, dict[str, Any]],
    store: dict[str, str],
    defaults: dict[str, str],
) -> None:
    """Give a new state the gates of its node's flow control (issue 18), their keys resolved
    like its inputs.

    Raises:
        PlanningError: A key cannot be resolved.
    """
    state.gates = node_gates(state.graph_namespace, state.graph_name, template, outputs, store, defaults)
