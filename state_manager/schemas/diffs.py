"""The diff of two runs of one graph, as `GET /run/{a}/diff/{b}` answers it."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

ChangeName = Literal["same", "changed", "only_a", "only_b"]


class DiffSide(BaseModel):
    """One run's latest state at a place (its retries and earlier join generations left out)."""

    state_id: str
    status: str
    inputs: dict[str, Any]
    outputs: dict[str, Any]


class FieldDiff(BaseModel):
    path: str = Field(description="`status`, `inputs.<field>` or `outputs.<field>`")
    a: Any = Field(description="run A's value; null when its state has no such field")
    b: Any = Field(description="run B's value; null when its state has no such field")


class NodeDiff(BaseModel):
    identifier: str
    position: list[int] = Field(
        description="where it stands in the fan-outs above it: the output index of each ancestor "
        "on its branch, then its own (`[0]` outside any fan-out)"
    )
    change: ChangeName
    a: DiffSide | None = Field(description="run A's state here; null when run A has none")
    b: DiffSide | None = Field(description="run B's state here; null when run B has none")
    fields: list[FieldDiff] = Field(description="what differs, for `changed`; empty otherwise")


class DiffSummary(BaseModel):
    same: int
    changed: int
    only_a: int
    only_b: int


class RunDiff(BaseModel):
    """Two runs of one graph compared node by node, in the graph's order."""

    a: str = Field(description="run A's id")
    b: str = Field(description="run B's id")
    graph: str = Field(description="the graph both are runs of")
    summary: DiffSummary
    nodes: list[NodeDiff]
