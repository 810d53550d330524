"""`StateWhy` and `RunWhy`: why a state, or a run's states, wait to be claimed, as
`StateManager.state_why` and `StateManager.run_why` return them (the server's
`GET /state/{id}/why` and `GET /run/{id}/why`; our server only).

The reasons: `delayed` (not due yet), `no_runtime` (due, but no runtime asked for its node
lately), `queued` (due; its place in its node's queue), `concurrency` (its node's slots are all
held), `run_concurrency` (its graph's run slots are all held), `rate_limit` (its node's rate
allows the next claim later) and `join` (it ran, and its join waits for the branches below it).
Fields the server may add later are ignored, and a reason this SDK does not know yet is kept as
the server sends it, so an older SDK keeps reading a newer answer.
"""

from __future__ import annotations

from datetime import UTC, datetime

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["RunWhy", "StateWhy", "WaitingGroup"]


class _Answer(BaseModel):
    model_config = ConfigDict(extra="ignore")


class StateWhy(_Answer):
    """Whether a state waits to be claimed, why, and when it should start.

    Attributes:
        state_id: The state's id.
        status: Its status, e.g. `CREATED` or `QUEUED`.
        waiting: Whether it waits to be claimed (False: it runs, or ran, or ended).
        reason: Why it waits (see the module docstring); None when it does not wait.
        detail: One plain sentence, e.g. `"It is number 6 in the queue of node Fetch."`; for a
            state that does not wait, what it is doing.
        predicted_start_ms: When it should be claimed (epoch milliseconds), from what the server
            observes; None when it cannot say.
        blockers: What holds it: the states holding its node's slots (`concurrency`), the runs
            holding its graph's run slots (`run_concurrency`), the open states below it (`join`).
    """

    state_id: str
    status: str
    waiting: bool
    reason: str | None = None
    detail: str
    predicted_start_ms: int | None = None
    blockers: list[str] = Field(default_factory=list)

    @property
    def predicted_start(self) -> datetime | None:
        """`predicted_start_ms` as a timezone-aware datetime (UTC), or None."""
        return _as_datetime(self.predicted_start_ms)


class WaitingGroup(_Answer):
    """A run's states of one node that wait for one reason.

    Attributes:
        node: The node's name (the class a runtime serves).
        namespace: The node's namespace.
        reason: Why they wait (see the module docstring).
        count: How many states of the run wait here.
        detail: The first one's reason, as a sentence.
        predicted_start_ms: The earliest predicted start (epoch milliseconds), or None when the
            server cannot say.
        blockers: What holds the first one (as `StateWhy.blockers`).
    """

    node: str
    namespace: str
    reason: str | None = None
    count: int
    detail: str
    predicted_start_ms: int | None = None
    blockers: list[str] = Field(default_factory=list)

    @property
    def predicted_start(self) -> datetime | None:
        """`predicted_start_ms` as a timezone-aware datetime (UTC), or None."""
        return _as_datetime(self.predicted_start_ms)


class RunWhy(_Answer):
    """Why a run's states wait, by node and reason.

    Attributes:
        run_id: The run's id.
        waiting: How many of its states wait to be claimed.
        groups: One entry per node and reason; empty when nothing waits.
    """

    run_id: str
    waiting: int
    groups: list[WaitingGroup] = Field(default_factory=list)


def _as_datetime(ms: int | None) -> datetime | None:
    return None if ms is None else datetime.fromtimestamp(ms / 1000, tz=UTC)
