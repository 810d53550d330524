"""Graph definition models, as sent to `StateManager.upsert_graph`.

They mirror the server's request models (same fields, defaults and validation messages), so a
mistake is reported on the client before anything is sent.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from pydantic import BaseModel, Field, field_validator

__all__ = [
    "ConcurrencyModel",
    "CronTrigger",
    "GraphNodeModel",
    "RateLimitModel",
    "RetryPolicyModel",
    "RetryStrategyEnum",
    "StoreConfigModel",
    "UnitesModel",
    "UnitesStrategyEnum",
]

_RESERVED_IDENTIFIER = "store"


class UnitesStrategyEnum(StrEnum):
    """When a join node (`unites`) may run."""

    ALL_SUCCESS = "ALL_SUCCESS"
    """Once every state descending from the united node has succeeded."""
    ALL_DONE = "ALL_DONE"
    """Once every state descending from the united node has finished, whatever the outcome."""


class UnitesModel(BaseModel):
    """Makes a node a join: it runs once for the whole sub-tree below `identifier`.

    Attributes:
        identifier: The identifier of the node whose descendants are waited for.
        strategy: When the join may run.
    """

    identifier: str = Field(..., description="Identifier of the node whose descendants are waited for")
    strategy: UnitesStrategyEnum = Field(default=UnitesStrategyEnum.ALL_SUCCESS, description="Join strategy")

    @field_validator("identifier")
    @classmethod
    def _check_identifier(cls, value: str) -> str:
        trimmed = value.strip()
        if not trimmed:
            raise ValueError("Unites identifier cannot be empty")
        return trimmed


class ConcurrencyModel(BaseModel):
    """At most `limit` at once, per value of `key` (our server; upstream servers do not know it).

    On a node (`GraphNodeModel.concurrency`): at most `limit` of its states claimed at once, in
    all runtimes together; the others wait in its queue. For a graph
    (`StateManager.upsert_graph(..., concurrency=...)`): at most `limit` of its runs RUNNING at
    once; the others wait PENDING and start in order as runs end.

    Attributes:
        limit: How many at once, at least 1.
        key: A template resolved like an input, e.g. `"${{ store.tenant }}"`: the limit then
            holds for each value apart (a graph's key may name store keys only). None: one
            limit for all.
    """

    limit: int = Field(..., ge=1, description="How many at once")
    key: str | None = Field(default=None, description="Template whose value the limit is kept per")

    @field_validator("key")
    @classmethod
    def _check_key(cls, value: str | None) -> str | None:
        return _check_limit_key(value)


class RateLimitModel(BaseModel):
    """A node's states claimed at most `per_second` per second on average (our server only).

    Attributes:
        per_second: Claims per second on average, above 0 (0.1: one every ten seconds).
        burst: How many may be claimed at once after a quiet spell, at least 1.
        key: A template resolved like an input, e.g. `"${{ store.tenant }}"`: each value gets
            its own rate. None: one rate for all.
    """

    per_second: float = Field(..., gt=0, description="Claims per second on average")
    burst: int = Field(default=1, ge=1, description="Claims allowed at once after a quiet spell")
    key: str | None = Field(default=None, description="Template whose value the rate is kept per")

    @field_validator("key")
    @classmethod
    def _check_key(cls, value: str | None) -> str | None:
        return _check_limit_key(value)


class GraphNodeModel(BaseModel):
    """One node of a graph template.

    Attributes:
        node_name: The registered node's name (its class name).
        namespace: The namespace the node is registered in.
        identifier: This node's unique identifier inside the graph; `store` is reserved.
        inputs: Input values; `${{ identifier.outputs.field }}` and `${{ store.key }}`
            placeholders are resolved by the server.
        next_nodes: Identifiers of the nodes that run after this one.
        unites: Makes this node a join; see `UnitesModel`.
        timeout_seconds: The most seconds one attempt of this node may take, counted from when
            a runtime claimed it; the server then fails the attempt (retried under the retry
            policy, else `TIMEDOUT`) and the runtime stops the node. None: no limit. Sent only
            when set (upstream servers do not know it).
        concurrency: At most this many of this node's states claimed at once (per key, if it
            has one); see `ConcurrencyModel`. Sent only when set.
        rate_limit: This node's states claimed at most this often (per key, if it has one);
            see `RateLimitModel`. Sent only when set.
    """

    node_name: str = Field(..., description="Name of the registered node")
    namespace: str = Field(..., description="Namespace of the registered node")
    identifier: str = Field(..., description="Identifier of the node in the graph")
    inputs: dict[str, Any] = Field(default_factory=dict, description="Inputs of the node")
    next_nodes: list[str] | None = Field(default=None, description="Identifiers of the next nodes")
    unites: UnitesModel | None = Field(default=None, description="Join configuration")
    timeout_seconds: int | None = Field(default=None, gt=0, description="Time limit of one attempt")
    concurrency: ConcurrencyModel | None = Field(
        default=None, description="Claimed at most this many at once"
    )
    rate_limit: RateLimitModel | None = Field(default=None, description="Claimed at most this often")

    @field_validator("node_name")
    @classmethod
    def _check_node_name(cls, value: str) -> str:
        trimmed = value.strip()
        if not trimmed:
            raise ValueError("Node name cannot be empty")
        return trimmed

    @field_validator("identifier")
    @classmethod
    def _check_identifier(cls, value: str) -> str:
        trimmed = value.strip()
        if not trimmed:
            raise ValueError("Node identifier cannot be empty")
        if trimmed == _RESERVED_IDENTIFIER:
            raise ValueError(f"Node identifier cannot be reserved word '{_RESERVED_IDENTIFIER}'")
        return trimmed

    @field_validator("next_nodes")
    @classmethod
    def _check_next_nodes(cls, value: list[str] | None) -> list[str] | None:
        if value is None:
            return None
        errors: list[str] = []
        seen: list[str] = []
        for raw in value:
            identifier = raw.strip()
            if not identifier:
                errors.append("Next node identifier cannot be empty")
            elif identifier in seen:
                errors.append(f"Next node identifier {identifier} is not unique")
            else:
                seen.append(identifier)
        if errors:
            raise ValueError("\n".join(errors))
        return seen


class RetryStrategyEnum(StrEnum):
    """How the delay before an automatic retry grows (b = backoff_factor, e = exponent, n = attempt).

    `EXPONENTIAL` b·e^(n-1), `LINEAR` b·n, `FIXED` b; the `_FULL_JITTER` variants draw
    uniformly from [0, delay], the `_EQUAL_JITTER` variants from [delay/2, delay].
    """

    EXPONENTIAL = "EXPONENTIAL"
    EXPONENTIAL_FULL_JITTER = "EXPONENTIAL_FULL_JITTER"
    EXPONENTIAL_EQUAL_JITTER = "EXPONENTIAL_EQUAL_JITTER"
    LINEAR = "LINEAR"
    LINEAR_FULL_JITTER = "LINEAR_FULL_JITTER"
    LINEAR_EQUAL_JITTER = "LINEAR_EQUAL_JITTER"
    FIXED = "FIXED"
    FIXED_FULL_JITTER = "FIXED_FULL_JITTER"
    FIXED_EQUAL_JITTER = "FIXED_EQUAL_JITTER"


class RetryPolicyModel(BaseModel):
    """The graph-wide policy for retrying errored states automatically.

    Attributes:
        max_retries: Retries after the first attempt; 0 disables automatic retries.
        strategy: How the delay grows.
        backoff_factor: The base delay in milliseconds.
        exponent: The growth factor of the exponential strategies.
        max_delay: An upper bound for the delay in milliseconds, or None for no bound.
    """

    max_retries: int = Field(default=3, ge=0, description="Maximum number of automatic retries")
    strategy: RetryStrategyEnum = Field(default=RetryStrategyEnum.EXPONENTIAL, description="Delay strategy")
    backoff_factor: int = Field(default=2000, gt=0, description="Base delay in milliseconds")
    exponent: int = Field(default=2, gt=0, description="Exponent of the exponential strategies")
    max_delay: int | None = Field(default=None, gt=0, description="Upper bound of the delay in milliseconds")


class StoreConfigModel(BaseModel):
    """The run store: string values shared by all nodes of a run (`${{ store.key }}`).

    Attributes:
        required_keys: Keys every trigger must supply in its `store`.
        default_values: Values used for keys a trigger does not supply.
    """

    required_keys: list[str] = Field(default_factory=list, description="Keys every trigger must supply")
    default_values: dict[str, str] = Field(default_factory=dict, description="Defaults for missing keys")

    @field_validator("required_keys")
    @classmethod
    def _check_required_keys(cls, value: list[str]) -> list[str]:
        keys, errors = _normalise_keys(value)
        if errors:
            raise ValueError("\n".join(errors))
        return keys

    @field_validator("default_values")
    @classmethod
    def _check_default_values(cls, value: dict[str, str]) -> dict[str, str]:
        keys, errors = _normalise_keys(list(value))
        if errors:
            raise ValueError("\n".join(errors))
        # No errors means every raw key produced exactly one trimmed key, in order.
        return {key: value[raw] for key, raw in zip(keys, value, strict=True)}


class CronTrigger(BaseModel):
    """Runs the graph on a schedule.

    Attributes:
        expression: A standard five-field cron expression, e.g. `"0 * * * *"`. The server
            validates it.
    """

    expression: str = Field(..., description="Cron expression")


def _check_limit_key(value: str | None) -> str | None:
    if value is not None and not value.strip():
        raise ValueError("key must not be empty (leave it out to limit in all)")
    return value


def _normalise_keys(raw_keys: list[str]) -> tuple[list[str], list[str]]:
    """Trimmed keys in order, and the messages for empty, dotted or duplicated ones."""
    keys: list[str] = []
    errors: list[str] = []
    for raw in raw_keys:
        key = raw.strip()
        if not key:
            errors.append("Key cannot be empty or contain only whitespace")
        elif "." in key:
            errors.append(f"Key '{key}' cannot contain '.' character")
        elif key in keys:
            errors.append(f"Key '{key}' is duplicated")
        else:
            keys.append(key)
    return keys, errors
