"""Queue health: per node, what waits for it and when a runtime last asked for its work."""

from __future__ import annotations

from pydantic import BaseModel, Field


class QueueRow(BaseModel):
    node_name: str
    registered: bool = Field(description="a runtime registered this node in the namespace")
    due: int = Field(description="CREATED states whose time has come: waiting for a runtime")
    held_back: dict[str, int] = Field(
        default_factory=dict,
        description="CREATED states due but held back by flow control, by reason (concurrency, "
        "rate_limit, run_concurrency): not counted in `due`",
    )
    oldest_due_ms: int | None = Field(description="since when the oldest due state has been due")
    oldest_due_age_seconds: float | None
    delayed: int = Field(description="CREATED states due later (start delay, retry delay)")
    claimed: int = Field(description="QUEUED states: claimed by a runtime, running")
    last_poll_ms: int | None = Field(description="when a runtime last asked for this node's work")
    last_poll_age_seconds: float | None
    stalled: bool = Field(description="states are due and no runtime asked for them recently")
    polled: bool = Field(
        default=False, description="a runtime asked for this node's work within QUEUE_STALL_SECONDS"
    )


class QueuesView(BaseModel):
    namespace: str
    stall_after_seconds: float
    now_ms: int
    nodes: list[QueueRow]
