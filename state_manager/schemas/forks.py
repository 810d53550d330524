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
