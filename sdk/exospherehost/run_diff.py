"""`RunDiff` and its parts: two runs of one graph compared node by node, as
`StateManager.diff_runs` returns them (the server's `GET /run/{a}/diff/{b}`).

Fields the server may add later are ignored, so an older SDK keeps reading a newer answer.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["DiffChange", "DiffSide", "DiffSummary", "FieldDiff", "NodeDiff", "RunDiff"]

DiffChange = Literal["same", "changed", "only_a", "only_b"]
"""How a node differs: the same in both runs, changed, or run in only one of them."""


class _Answer(BaseModel):
    model_config = ConfigDict(extra="ignore")


class DiffSide(_Answer):
    """One run's state at a place: its latest attempt (retries and joins made again count once).

    Attributes:
        state_id: The state's id (for `get_state`).
        status: Its status, e.g. `SUCCESS` or `ERRORED`.
        inputs: Its inputs.
        outputs: Its outputs (empty until it succeeded).
    """

    state_id: str
    status: str
    inputs: dict[str, Any]
    outputs: dict[str, Any]


class FieldDiff(_Answer):
    """A compared field whose values differ.

    Attributes:
        path: `status`, `inputs.<field>` or `outputs.<field>`.
        a: Run A's value; None when its state has no such field.
        b: Run B's value; None when its state has no such field.
    """

    path: str
    a: Any = None
    b: Any = None


class NodeDiff(_Answer):
    """One node identifier at one fan-out position, in both runs.

    Attributes:
        identifier: The graph node's identifier.
        position: The output index of each fan-out above it on its branch, then its own
            (`[0]` outside any fan-out; `[0, 2, 0]` for the child of a fan-out's third copy).
        change: `same`, `changed`, `only_a` or `only_b`.
        a: Run A's state here, or None when run A has none (`only_b`).
        b: Run B's state here, or None when run B has none (`only_a`).
        fields: For `changed`, the fields that differ; empty otherwise.
    """

    identifier: str
    position: list[int]
    change: DiffChange
    a: DiffSide | None = None
    b: DiffSide | None = None
    fields: list[FieldDiff] = Field(default_factory=list)


class DiffSummary(_Answer):
    """How many nodes of each change."""

    same: int = 0
    changed: int = 0
    only_a: int = 0
    only_b: int = 0


class RunDiff(_Answer):
    """Run `a` against run `b`, node by node in the graph's order.

    Attributes:
        a: Run A's id.
        b: Run B's id.
        graph: The graph both are runs of.
        summary: How many nodes of each change.
        nodes: One entry per node identifier and fan-out position.
    """

    a: str
    b: str
    graph: str
    summary: DiffSummary
    nodes: list[NodeDiff]

    @property
    def same(self) -> bool:
        """Whether the two runs are the same everywhere: nothing changed, nothing in one only."""
        return not (self.summary.changed or self.summary.only_a or self.summary.only_b)

    def differences(self) -> list[NodeDiff]:
        """The entries that are not `same`, in order."""
        return [node for node in self.nodes if node.change != "same"]
