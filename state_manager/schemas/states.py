"""Wire models of states: triggers, claims, reports and signals (both eras)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from state_manager.clock import iso as _iso
from state_manager.clock import now_ms
from state_manager.schemas.safety import RequestBody, check_field_names

# The longest delay a trigger or a re-enqueue may ask for: ten years, in milliseconds.
MAX_DELAY_MS = 10 * 365 * 24 * 3600 * 1000


class TriggerStateIn(BaseModel):
    model_config = ConfigDict(extra="ignore")

    identifier: str
    inputs: dict[str, str] = Field(default_factory=dict)

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

    states: list[TriggerStateIn] | None = Field(default=None, min_length=1)
    inputs: dict[str, str] = Field(default_factory=dict)
    store: dict[str, str] = Field(default_factory=dict)
    start_delay: int = Field(default=0, ge=0, le=MAX_DELAY_MS, description="delay in milliseconds")

    @field_validator("inputs", "store")
    @classmethod
    def _names(cls, value: dict[str, str]) -> dict[str, str]:
        check_field_names(value, "Input or store")
        return value


class CreateStatesRequest(RequestBody):
    run_id: str = Field(min_length=1)
    states: list[TriggerStateIn] = Field(min_length=1)


class EnqueueRequest(RequestBody):
    nodes: list[str] = Field(min_length=1)
    batch_size: int = Field(ge=1, le=1000)
    wait_ms: int | None = Field(
        default=None,
        ge=0,
        le=30000,
        description="How long to wait for work when none is due (a long-poll). Without it the "
        "server waits IMPLICIT_WAIT_MS (default 1000); 0 answers at once.",
    )


class ExecutedRequest(RequestBody):
    outputs: list[dict[str, Any]]

    @field_validator("outputs")
    @classmethod
    def _output_names(cls, value: list[dict[str, Any]]) -> list[dict[str, Any]]:
        for output in value:
            check_field_names(output, "Output")
        return value


class ErroredRequest(RequestBody):
    error: str


class PruneRequest(RequestBody):
    data: dict[str, Any]


class ReEnqueueAfterRequest(RequestBody):
    enqueue_after: int = Field(gt=0, le=MAX_DELAY_MS, description="delay in milliseconds")


class ManualRetryRequest(RequestBody):
    fanout_id: str

    @field_validator("fanout_id")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("fanout_id cannot be empty")
        return value.strip()


def trigger_item(state: Any) -> dict[str, Any]:
    """A created state, as trigger and states/create answer it."""
    return {
        "state_id": str(state.id),
        "node_name": state.node_name,
        "identifier": state.identifier,
        "graph_name": state.graph_name,
        "run_id": state.run_id,
        "inputs": state.inputs,
        "created_at": _iso(state.created_at),
    }


def claimed_item(state: Any) -> dict[str, Any]:
    """A claimed state, as enqueue answers it: upstream's fields plus the run, the lease (its
    expiry on the server's clock, and what remains of it, for a worker's own clock) and the
    claim token that fences every later call about this claim."""
    return {
        "state_id": str(state.id),
        "node_name": state.node_name,
        "identifier": state.identifier,
        "inputs": state.inputs,
        "created_at": _iso(state.created_at),
        "graph_name": state.graph_name,
        "run_id": state.run_id,
        "retry_count": state.retry_count,
        "lease_expires_at": state.lease_expires_at,
        "lease_ms": max(0, (state.lease_expires_at or 0) - now_ms()),
        "claim_token": state.claim_token,
        "timeout_ms": None if state.deadline_ms is None else max(0, state.deadline_ms - now_ms()),
    }


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
        "created_at": _iso(state.created_at),
        "updated_at": _iso(state.updated_at),
    }
