"""The difference between two runs of one graph, node by node: pure, from their states.

Each run's states are grouped by (identifier, fan-out position). A state's position is its
`fanout_path` followed by its own `output_index`: `[]` + `[0]` for a node outside any fan-out,
`[2, 0]` for the child of the third output of a fan-out. Several states at one position are
attempts at the same work (a retry, a join made again after a repair); the one compared is the
latest: not RETRY_CREATED, then the highest join generation, then the highest retry count, then
the last created.

Two latest attempts at the same place are compared on their status and on every top-level
field of their inputs and outputs (values compared with ==). The entries come in the graph's
node order (identifiers the graph no longer names after, in the order first seen), then by
position.

Pure: no I/O.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from state_manager.domain.status import StateStatus

Position = tuple[int, ...]


class Change(StrEnum):
    SAME = "same"
    CHANGED = "changed"
    ONLY_A = "only_a"  # run A has a state at this place, run B none
    ONLY_B = "only_b"


@dataclass(frozen=True)
class StateSnapshot:
    """What the diff reads of one state of a run."""

    state_id: str
    identifier: str
    status: str
    inputs: Mapping[str, Any] = field(default_factory=dict)
    outputs: Mapping[str, Any] = field(default_factory=dict)
    fanout_path: Sequence[int] = ()
    output_index: int = 0
    retry_count: int = 0
    join_generation: int = 0
    order: int = 0  # its creation order in its run

    @property
    def position(self) -> Position:
        return (*self.fanout_path, self.output_index)


@dataclass(frozen=True)
class FieldChange:
    """One compared field that differs: `status`, `inputs.<field>` or `outputs.<field>`, with
    each run's value (None when that run's state has no such field)."""

    path: str
    a: Any
    b: Any


@dataclass(frozen=True)
class NodeDiff:
    """One (identifier, position): each run's latest state there, and what differs."""

    identifier: str
    position: Position
    change: Change
    a: StateSnapshot | None
    b: StateSnapshot | None
    fields: list[FieldChange] = field(default_factory=list)


@dataclass(frozen=True)
class RunDiff:
    nodes: list[NodeDiff]

    @property
    def summary(self) -> dict[str, int]:
        """How many entries of each change, every change named: `{"same": n, "changed": n, ...}`."""
        counts = dict.fromkeys((change.value for change in Change), 0)
        for node in self.nodes:
            counts[node.change.value] += 1
        return counts


def _recency(state: StateSnapshot) -> tuple[bool, int, int, int]:
    return (
        state.status != StateStatus.RETRY_CREATED,
        state.join_generation,
        state.retry_count,
        state.order,
    )


def latest_attempts(states: Iterable[StateSnapshot]) -> dict[tuple[str, Position], StateSnapshot]:
    """The latest attempt at each (identifier, position) of one run, in the order first seen."""
    latest: dict[tuple[str, Position], StateSnapshot] = {}
    for state in states:
        place = (state.identifier, state.position)
        kept = latest.get(place)
        if kept is None or _recency(state) > _recency(kept):
            latest[place] = state
    return latest


_MISSING = object()


def _field_changes(prefix: str, a: Mapping[str, Any], b: Mapping[str, Any]) -> list[FieldChange]:
    """The fields of `a` and `b` that differ (present in one only, or unequal), A's order first."""
    changes: list[FieldChange] = []
    for name in [*a, *(name for name in b if name not in a)]:
        left, right = a.get(name, _MISSING), b.get(name, _MISSING)
        if left is _MISSING or right is _MISSING or left != right:
            changes.append(
                FieldChange(
                    f"{prefix}.{name}",
                    None if left is _MISSING else left,
                    None if right is _MISSING else right,
                )
            )
    return changes


def compare(a: StateSnapshot, b: StateSnapshot) -> list[FieldChange]:
    """What differs between two states at the same place: status, then inputs, then outputs."""
    changes = [FieldChange("status", a.status, b.status)] if a.status != b.status else []
    changes += _field_changes("inputs", a.inputs, b.inputs)
    changes += _field_changes("outputs", a.outputs, b.outputs)
    return changes


def diff_runs(a: Iterable[StateSnapshot], b: Iterable[StateSnapshot], node_order: Sequence[str]) -> RunDiff:
    """The diff of run A against run B, one entry per (identifier, position) of either run.

    `node_order` is the graph's identifiers in the order of its template (empty when the
    template is gone); identifiers it does not name follow, in the order first seen (A's
    states, then B's).
    """
    in_a, in_b = latest_attempts(a), latest_attempts(b)
    rank = {identifier: i for i, identifier in enumerate(node_order)}
    for identifier, _ in [*in_a, *in_b]:
        rank.setdefault(identifier, len(rank))
    places = sorted({*in_a, *in_b}, key=lambda place: (rank[place[0]], place[1]))
    nodes: list[NodeDiff] = []
    for identifier, position in places:
        left, right = in_a.get((identifier, position)), in_b.get((identifier, position))
        if right is None:
            nodes.append(NodeDiff(identifier, position, Change.ONLY_A, left, None))
        elif left is None:
            nodes.append(NodeDiff(identifier, position, Change.ONLY_B, None, right))
        else:
            fields = compare(left, right)
            change = Change.CHANGED if fields else Change.SAME
            nodes.append(NodeDiff(identifier, position, change, left, right, fields))
    return RunDiff(nodes)
