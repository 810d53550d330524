"""Answers of "why is it waiting" (issue 18)."""

from __future__ import annotations

from pydantic import BaseModel, Field


class StateWhy(BaseModel):
    state_id: str
    status: str
    waiting: bool = Field(description="whether it waits to be claimed")
    reason: str | None = Field(
        description="delayed, no_runtime, queued, concurrency, run_concurrency, rate_limit or join; "
        "null when it does not wait"
    )
    detail: str = Field(description="one plain sentence")
    predicted_start_ms: int | None = Field(
        description="when it should be claimed (epoch ms), from what the server observes; "
        "null when it cannot say"
    )
    blockers: list[str] = Field(
        default_factory=list,
        description="what holds it: the states holding its node's slots (concurrency), the runs "
        "holding its graph's run slots (run_concurrency), the open states below it (join)",
    )


class WaitingGroup(BaseModel):
    node: str
    namespace: str
    reason: str | None
    count: int
    detail: str = Field(description="the first waiting state's reason, as a sentence")
    predicted_start_ms: int | None
    blockers: list[str] = Field(default_factory=list, description="what holds the first one")


class RunWhy(BaseModel):
    run_id: str
    waiting: int = Field(description="states of the run waiting to be claimed")
    groups: list[WaitingGroup] = Field(description="by node and reason")
