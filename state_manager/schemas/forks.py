"""Bodies and answers of forking a run (decision 0023)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from state_manager.schemas.safety import RequestBody


class ForkRunRequest(RequestBody):
    """Fork a run that has ended: the nodes in `from` and everything below them run again."""

    model_config = ConfigDict(extra="ignore", populate_by_name=True)

    starts: list[str] = Field(
        alias="from",
        min_length=1,
        description="the nodes (identifiers) to run again, with everything below them; the rest is reused",
    )
    inputs: dict[str, dict[str, str]] = Field(
        default_factory=dict,
        description="new inputs for nodes in `from`: identifier -> field -> value",
    )
    store: dict[str, str] = Field(
        default_factory=dict, description="store values that replace the original's"
    )
    graph_version: Literal["original", "current"] = Field(
        default="original",
        description="run the fork on the graph version the original ran (`original`) or on the current one",
    )


class ForkedFrom(BaseModel):
    """The run a fork was made from, and the nodes it runs again."""

    model_config = ConfigDict(populate_by_name=True)

    run_id: str
    starts: list[str] = Field(alias="from")


class ForkRunResponse(BaseModel):
    run_id: str = Field(description="the new run")
    forked_from: ForkedFrom
    reused: int = Field(description="states copied from the original run, not run again")
    status: str = Field(description="the new run's stored status")


class ForkFailedRequest(RequestBody):
    """Fork the failed runs of a graph, each from the nodes where it failed."""

    graph: str = Field(min_length=1, description="the graph whose FAILED runs to fork")
    since: str | None = Field(default=None, description="runs created at or after: epoch ms or ISO 8601")
    until: str | None = Field(default=None, description="runs created at or before: epoch ms or ISO 8601")
    graph_version: Literal["original", "current"] = Field(
        default="current", description="the graph version the forks run on (after a fix: `current`)"
    )
    limit: int = Field(default=100, ge=1, le=1000, description="at most this many runs, oldest first")


class SkippedFork(BaseModel):
    run_id: str
    reason: str


class ForkFailedResponse(BaseModel):
    forks: list[ForkRunResponse] = Field(description="one fork per failed run, oldest original first")
    skipped: list[SkippedFork] = Field(description="failed runs that could not be forked, and why")
