"""Plain value types shared by the domain functions (no I/O, no persistence)."""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

# The longest a node may be given to run: thirty days.
MAX_TIMEOUT_SECONDS = 30 * 24 * 3600


class UnitesStrategy(StrEnum):
    ALL_SUCCESS = "ALL_SUCCESS"
    ALL_DONE = "ALL_DONE"


class Unites(BaseModel):
    model_config = ConfigDict(extra="ignore")

    identifier: str
    strategy: UnitesStrategy = UnitesStrategy.ALL_SUCCESS


class ConcurrencyLimit(BaseModel):
    """At most `limit` at once (states of a node claimed, or runs of a graph RUNNING), per value of
    `key` (a template resolved like an input) or in all when there is no key. Ranges are checked
    by the graph's validation (a clear 400), not here."""

    model_config = ConfigDict(extra="ignore")

    limit: int
    key: str | None = None


class RateLimit(BaseModel):
    """Claims of a node at most `per_second` per second on average, in bursts of up to `burst`,
    per value of `key` (a template resolved like an input) or in all when there is no key."""

    model_config = ConfigDict(extra="ignore")

    per_second: float
    burst: int = 1
    key: str | None = None


class NodeTemplate(BaseModel):
    """One node of a graph template, as stored."""

    model_config = ConfigDict(extra="ignore")

    node_name: str
    namespace: str
    identifier: str
    inputs: dict[str, Any] = Field(default_factory=dict)
    next_nodes: list[str] | None = None
    unites: Unites | None = None
    # Bounds the node's running time from claim to report, heartbeats or not.
    timeout_seconds: int | None = Field(default=None, gt=0, le=MAX_TIMEOUT_SECONDS)
    # Flow control (issue 18): how many of its states are claimed at once, and how often.
    concurrency: ConcurrencyLimit | None = None
    rate_limit: RateLimit | None = None


# The longest retry delay a policy may name: ten years, in milliseconds.
MAX_RETRY_DELAY_MS = 10 * 365 * 24 * 3600 * 1000


class RetryStrategy(StrEnum):
    EXPONENTIAL = "EXPONENTIAL"
    EXPONENTIAL_FULL_JITTER = "EXPONENTIAL_FULL_JITTER"
    EXPONENTIAL_EQUAL_JITTER = "EXPONENTIAL_EQUAL_JITTER"
    LINEAR = "LINEAR"
    LINEAR_FULL_JITTER = "LINEAR_FULL_JITTER"
    LINEAR_EQUAL_JITTER = "LINEAR_EQUAL_JITTER"
    FIXED = "FIXED"
    FIXED_FULL_JITTER = "FIXED_FULL_JITTER"
    FIXED_EQUAL_JITTER = "FIXED_EQUAL_JITTER"


class RetryPolicy(BaseModel):
    """Graph-wide retry policy; delays are in milliseconds."""

    model_config = ConfigDict(extra="ignore")

    max_retries: int = Field(default=3, ge=0, le=1_000_000)
    strategy: RetryStrategy = RetryStrategy.EXPONENTIAL
    backoff_factor: int = Field(default=2000, gt=0, le=MAX_RETRY_DELAY_MS)
    exponent: int = Field(default=2, gt=0, le=1000)
    max_delay: int | None = Field(default=None, gt=0, le=MAX_RETRY_DELAY_MS)


class StoreConfig(BaseModel):
    model_config = ConfigDict(extra="ignore")

    required_keys: list[str] = Field(default_factory=list)
    default_values: dict[str, str] = Field(default_factory=dict)


class RegisteredNodeInfo(BaseModel):
    """What a runtime told us about one node: its JSON schemas and secret names."""

    model_config = ConfigDict(extra="ignore")

    name: str
    namespace: str
    inputs_schema: dict[str, Any] = Field(default_factory=dict)
    outputs_schema: dict[str, Any] = Field(default_factory=dict)
    secrets: list[str] = Field(default_factory=list)
