"""`ForkedRun` and `ForkFailedResult`: what `StateManager.fork_run` and `StateManager.fork_failed`
return (the server's `POST /run/{id}/fork` and `POST /runs/fork-failed`).

Fields the server may add later are ignored, so an older SDK keeps reading a newer answer. The
models are read from the wire's names (`from`); `model_dump(by_alias=True)` gives them back.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["ForkFailedResult", "ForkGraphVersion", "ForkedFrom", "ForkedRun", "SkippedFork"]

ForkGraphVersion = Literal["original", "current"]
"""The graph version a fork runs on: the one the original run used, or the graph's live one."""


class _Answer(BaseModel):
    model_config = ConfigDict(extra="ignore")


class ForkedFrom(_Answer):
    """The run a fork was made from, and the nodes it runs again.

    Attributes:
        run_id: The original run's id.
        from_: The nodes (identifiers) the fork runs again, with everything below them; the
            wire's `from`.
    """

    model_config = ConfigDict(extra="ignore", populate_by_name=True)

    run_id: str
    from_: list[str] = Field(alias="from")


class ForkedRun(_Answer):
    """A new run forked from a run that ended.

    Attributes:
        run_id: The new run's id (for `get_run`, `diff_runs`, ...).
        forked_from: The original run and the nodes forked from.
        reused: How many states were copied from the original run (as they ended, not run again).
        status: The new run's status when it was made, e.g. `PENDING`.
    """

    run_id: str
    forked_from: ForkedFrom
    reused: int
    status: str


class SkippedFork(_Answer):
    """A failed run `fork_failed` could not fork.

    Attributes:
        run_id: The failed run's id.
        reason: Why, as the server says it (e.g. the current graph no longer has its failed node).
    """

    run_id: str
    reason: str


class ForkFailedResult(_Answer):
    """The failed runs of a graph, forked from where each failed.

    Attributes:
        forks: One fork per failed run, oldest original first.
        skipped: The failed runs that could not be forked, with the reason.
    """

    forks: list[ForkedRun]
    skipped: list[SkippedFork] = Field(default_factory=list)
