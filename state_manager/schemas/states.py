"""Wire models of states: triggers, claims, reports and signals (both eras)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from state_manager.clock import iso as _iso
from state_manager.clock import now_ms
from state_manager.schemas.safety import RequestBody, check_field_names

# The longest delay a trigger or a re-enqueue may ask for: ten years, in milliseconds.
MAX_DELAY_MS = 10 * 365 * 24 * 3600 * 1000
MAX_PRIORITY_S = 365 * 24 * 3600  # a year either way


class TriggerStateIn(BaseModel):
    model_config = ConfigDict(extra="ignore")

    identifier: str = Field(description="A node of the graph template to start")
    inputs: dict[str, str] = Field(default_factory=dict, description="That node's inputs")

    @field_validator("inputs")
    @classmethod
    def _input_names(cls, value: dict[str, str]) -> dict[str, str]:
        check_field_names(value, "Input")
        return value


class TriggerRequest(RequestBody):
    """SEED form `{"states": [...]}` or HEAD form `{"inputs", "store", "start_delay"}`.

    A body with `states` seeds those identifiers (SEED); otherwise the root node starts with
    the template inputs overridden by `inputs` (HEAD). An empty body is a HEAD trigger.
    """

    states: list[TriggerStateIn] | None = Field(
        default=None,
        min_length=1,
        description="SEED form: the template nodes to start, each with its inputs. Leave it out "
        "for the HEAD form.",
    )
    inputs: dict[str, str] = Field(
        default_factory=dict,
        description="HEAD form: inputs of the root node, over the ones its template gives",
    )
    store: dict[str, str] = Field(
        default_factory=dict,
        description="The run's store, read by `${{ store.key }}` inputs; must hold the graph's required keys",
    )
    start_delay: int = Field(
        default=0, ge=0, le=MAX_DELAY_MS, description="Milliseconds before the first state is due"
    )
    priority: int = Field(
        default=0,
        ge=-MAX_PRIORITY_S,
        le=MAX_PRIORITY_S,
        description="Seconds: every state of the run is claimed as if it had been due this much "
        "earlier (negative: later), so a higher priority goes before states already waiting",
    )

    @field_validator("inputs", "store")
    @classmethod
    def _names(cls, value: dict[str, str]) -> dict[str, str]:
        check_field_names(value, "Input or store")
        return value


class CreateStatesRequest(RequestBody):
    run_id: str = Field(min_length=1, description="The run to add them to; created on first use")
    states: list[TriggerStateIn] = Field(min_length=1)


class EnqueueRequest(RequestBody):
    nodes: list[str] = Field(min_length=1, description="Names of the nodes this runtime runs")
    batch_size: int = Field(ge=1, le=1000, description="At most this many states are claimed")
    wait_ms: int | None = Field(
        default=None,
        ge=0,
        le=30000,
        description="How long to wait for work when none is due (a long-poll). Without it the "
        "server waits IMPLICIT_WAIT_MS (default 1000); 0 answers at once.",
    )


class ExecutedRequest(RequestBody):
    outputs: list[dict[str, Any]] = Field(
        description="The node's outputs. More than one fans out: each next node runs once per output."
    )

    @field_validator("outputs")
    @classmethod
    def _output_names(cls, value: list[dict[str, Any]]) -> list[dict[str, Any]]:
        for output in value:
            check_field_names(output, "Output")
        return value


MAX_TRACEBACK_CHARS = 32 * 1024
MAX_LOG_LINES = 200
MAX_LOG_LINE_CHARS = 4096
MAX_LOG_CHARS = 64 * 1024


class ErrorDetails(RequestBody):
    """The whole error of a failed attempt, as a runtime of this SDK sends it (older SDKs send
    only the message). Kept on the state, shown by its view, its page and `exosphere state get`."""

    type: str = Field(
        default="", max_length=300, description="The exception's type, e.g. `builtins.ValueError`"
    )
    traceback: str = Field(
        default="", max_length=MAX_TRACEBACK_CHARS, description="The node's traceback (its last part if long)"
    )
    logs: list[Annotated[str, Field(max_length=MAX_LOG_LINE_CHARS)]] = Field(
        default_factory=list,
        max_length=MAX_LOG_LINES,
        description="The last log lines the node wrote during this attempt (secret values redacted)",
    )

    @field_validator("logs")
    @classmethod
    def _bounded(cls, value: list[str]) -> list[str]:
        if sum(len(line) for line in value) > MAX_LOG_CHARS:
            raise ValueError(f"logs: at most {MAX_LOG_CHARS} characters in all")
        return value


class ErroredRequest(RequestBody):
    error: str = Field(description="What went wrong; kept on the state")
    details: ErrorDetails | None = Field(
        default=None, description="The exception's type, traceback and the attempt's log lines"
    )


class PruneRequest(RequestBody):
    data: dict[str, Any] = Field(description="Why the branch ends here; kept on the state")


class ReEnqueueAfterRequest(RequestBody):
    enqueue_after: int = Field(gt=0, le=MAX_DELAY_MS, description="delay in milliseconds")


class ManualRetryRequest(RequestBody):
    fanout_id: str = Field(
        description="Names this retry: the same value again is refused (409) instead of retrying twice"
    )

    @field_validator("fanout_id")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("fanout_id cannot be empty")
        return value.strip()


# ---------------------------------------------------------------- answers


class CreatedState(BaseModel):
    """A state a trigger or `states/create` created."""

    state_id: str
    node_name: str
    identifier: str = Field(description="The template node it runs")
    graph_name: str
    run_id: str
    inputs: dict[str, Any]
    created_at: str = Field(description="ISO 8601")


class TriggerResponse(BaseModel):
    """A started run (trigger) or a run given more states (SEED `states/create`)."""

    status: Literal["CREATED"] = "CREATED"
    run_id: str
    states: list[CreatedState] = Field(description="The states it created: the root, or the seeds")


class ClaimedState(BaseModel):
    """A state claimed for a worker: upstream's fields plus the run, the lease (its expiry on the
    server's clock, and what remains of it, for a worker's own clock) and the claim token that
    fences every later call about this claim."""

    state_id: str
    node_name: str
    identifier: str
    inputs: dict[str, Any]
    created_at: str = Field(description="ISO 8601")
    graph_name: str
    run_id: str
    retry_count: int = Field(description="0 for the first attempt")
    lease_expires_at: int | None = Field(description="epoch ms, the server's clock")
    lease_ms: int = Field(description="What was left of the lease when this answer was sent")
    claim_token: str | None = Field(description="Send it as `x-exosphere-claim-token` about this state")
    timeout_ms: int | None = Field(description="What is left of the node's timeout; null without one")


class EnqueueResponse(BaseModel):
    count: int
    namespace: str
    status: Literal["QUEUED"] = "QUEUED"
    states: list[ClaimedState]


class ExecutedResponse(BaseModel):
    status: Literal["EXECUTED"] = "EXECUTED"


class ErroredResponse(BaseModel):
    status: Literal["ERRORED", "RETRY_CREATED"] = Field(
        description="RETRY_CREATED when the retry policy allows another attempt, else ERRORED"
    )
    retry_created: bool


class PruneResponse(BaseModel):
    enqueue_after: int = Field(description="epoch ms")
    status: Literal["PRUNED"] = "PRUNED"


class ReEnqueueAfterResponse(BaseModel):
    enqueue_after: int = Field(description="epoch ms: when the state is due again")
    status: Literal["CREATED"] = "CREATED"


class ManualRetryResponse(BaseModel):
    id: str = Field(
        description="The new state, a copy of the failed one. For a join: its next generation, made "
        "with inputs collected afresh, or (RETRY_CREATED) the retried join itself while branches "
        "below it are still going: the next generation is made when they settle"
    )
    status: Literal["CREATED", "RETRY_CREATED"] = "CREATED"


class HeartbeatResponse(BaseModel):
    status: Literal["QUEUED"] = "QUEUED"
    lease_expires_at: int = Field(description="The new expiry, epoch ms on the server's clock")
    lease_ms: int = Field(description="The length of the new lease")


class SecretsResponse(BaseModel):
    secrets: dict[str, str] = Field(description="The graph's secrets, by name, in plain text")


def trigger_item(state: Any) -> CreatedState:
    """A created state, as trigger and states/create answer it."""
    return CreatedState(
        state_id=str(state.id),
        node_name=state.node_name,
        identifier=state.identifier,
        graph_name=state.graph_name,
        run_id=state.run_id,
        inputs=state.inputs,
        created_at=_iso(state.created_at),
    )


def claimed_item(state: Any) -> ClaimedState:
    """A claimed state, as enqueue answers it."""
    return ClaimedState(
        state_id=str(state.id),
        node_name=state.node_name,
        identifier=state.identifier,
        inputs=state.inputs,
        created_at=_iso(state.created_at),
        graph_name=state.graph_name,
        run_id=state.run_id,
        retry_count=state.retry_count,
        lease_expires_at=state.lease_expires_at,
        lease_ms=max(0, (state.lease_expires_at or 0) - now_ms()),
        claim_token=state.claim_token,
        timeout_ms=None if state.deadline_ms is None else max(0, state.deadline_ms - now_ms()),
    )


def state_item(state: Any) -> dict[str, Any]:
    """A state in listings (SEED `GET /states/`) and node details (HEAD)."""
    return {
        "id": str(state.id),
        "node_name": state.node_name,
        "namespace_name": state.namespace_name,
        "identifier": state.identifier,
        "graph_name": state.graph_name,
        "graph_version": state.graph_version,
        "run_id": state.run_id,
        "status": state.status.value,
        "inputs": state.inputs,
        "outputs": state.outputs,
        "data": state.data,
        "error": state.error,
        "parents": state.parents,
        "retry_count": state.retry_count,
        "fanout_id": state.fanout_id,
        "enqueue_after": state.enqueue_after,
        "claimed_ms": state.claimed_ms,
        "ended_ms": state.ended_ms,
        "does_unites": state.does_unites,
        "reused_from": state.reused_from,
        "created_at": _iso(state.created_at),
        "updated_at": _iso(state.updated_at),
    }
