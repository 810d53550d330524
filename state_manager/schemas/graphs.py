"""Wire models of graph templates (both eras: SEED's fields plus HEAD's richer set)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from state_manager.domain.cron import CronError, validate_expression
from state_manager.domain.models import (
    MAX_TIMEOUT_SECONDS,
    ConcurrencyLimit,
    NodeTemplate,
    RateLimit,
    RetryPolicy,
    StoreConfig,
    UnitesStrategy,
)
from state_manager.domain.names import field_name_problem
from state_manager.schemas.safety import RequestBody, check_field_names


class UnitesIn(BaseModel):
    model_config = ConfigDict(extra="ignore")

    identifier: str
    strategy: UnitesStrategy = UnitesStrategy.ALL_SUCCESS

    @field_validator("identifier")
    @classmethod
    def _identifier(cls, value: str) -> str:
        value = value.strip()
        if not value:
            raise ValueError("Unites identifier cannot be empty")
        return value


class NodeTemplateIn(BaseModel):
    model_config = ConfigDict(extra="ignore")

    node_name: str
    namespace: str
    identifier: str
    inputs: dict[str, Any]
    next_nodes: list[str] | None = Field(default=None, validate_default=True)
    unites: UnitesIn | None = None
    timeout_seconds: int | None = Field(
        default=None,
        gt=0,
        le=MAX_TIMEOUT_SECONDS,
        description="Bounds the node's running time from claim to report (ours; the official SDKs ignore it)",
    )
    concurrency: ConcurrencyLimit | None = Field(
        default=None,
        description="At most `limit` states of this node claimed at once (in all runtimes and "
        "replicas), per value of `key` (a template resolved like an input, e.g. "
        "`${{ store.tenant }}`) or in all when `key` is unset (docs/flow-control.md)",
    )
    rate_limit: RateLimit | None = Field(
        default=None,
        description="Claims of this node at most `per_second` per second on average, in bursts of up "
        "to `burst`, per value of `key` (a template) or in all (docs/flow-control.md)",
    )

    @field_validator("node_name")
    @classmethod
    def _node_name(cls, value: str) -> str:
        value = value.strip()
        if not value:
            raise ValueError("Node name cannot be empty")
        return value

    @field_validator("namespace")
    @classmethod
    def _namespace(cls, value: str) -> str:
        value = value.strip()
        if not value:
            raise ValueError("Node namespace cannot be empty")
        return value

    @field_validator("identifier")
    @classmethod
    def _identifier(cls, value: str) -> str:
        value = value.strip()
        if not value:
            raise ValueError("Node identifier cannot be empty")
        if value == "store":
            raise ValueError("Node identifier cannot be reserved word 'store'")
        return value

    @field_validator("next_nodes")
    @classmethod
    def _next_nodes(cls, value: list[str] | None) -> list[str]:
        cleaned: list[str] = []
        for entry in value or []:
            entry = entry.strip()
            if not entry:
                raise ValueError("Next node identifier cannot be empty")
            if entry in cleaned:
                raise ValueError(f"Next node identifier {entry} is not unique")
            cleaned.append(entry)
        return cleaned

    def to_domain(self) -> NodeTemplate:
        return NodeTemplate.model_validate(self.model_dump())


class StoreConfigIn(BaseModel):
    model_config = ConfigDict(extra="ignore")

    required_keys: list[str] = Field(default_factory=list)
    default_values: dict[str, str] = Field(default_factory=dict)

    @field_validator("required_keys")
    @classmethod
    def _required(cls, value: list[str]) -> list[str]:
        return _check_keys(value)

    @field_validator("default_values", mode="before")
    @classmethod
    def _defaults(cls, value: Any) -> Any:
        if isinstance(value, dict):
            keys = _check_keys(list(value))
            return {key: str(item) for key, item in zip(keys, value.values(), strict=True)}
        return value


def _check_keys(keys: list[str]) -> list[str]:
    cleaned: list[str] = []
    for key in keys:
        key = key.strip()
        if problem := field_name_problem(key):
            raise ValueError(f"Store key {key!r} {problem}")
        if key in cleaned:
            raise ValueError(f"Store key '{key}' is not unique")
        cleaned.append(key)
    return cleaned


class CronValue(BaseModel):
    expression: str

    @field_validator("expression")
    @classmethod
    def _expression(cls, value: str) -> str:
        try:
            return validate_expression(value)
        except CronError as exc:
            raise ValueError(str(exc)) from exc


class TriggerIn(BaseModel):
    model_config = ConfigDict(extra="ignore")

    type: Literal["CRON"]
    value: CronValue


class UpsertGraphRequest(RequestBody):
    secrets: dict[str, str] = Field(
        description="Name to value, stored encrypted; only a worker holding a state of this graph "
        "reads them back. Each upsert replaces the graph's secrets with the ones it lists."
    )
    nodes: list[NodeTemplateIn] = Field(description="The template nodes; exactly one is the root")
    retry_policy: RetryPolicy = Field(
        default_factory=RetryPolicy, description="How failed states are retried (delays in ms)"
    )
    store_config: StoreConfigIn = Field(
        default_factory=StoreConfigIn,
        description="Keys every trigger must put in the run store, and defaults for others",
    )
    triggers: list[TriggerIn] = Field(
        default_factory=list, description="Cron schedules that trigger the graph (HEAD form, defaults)"
    )
    concurrency: ConcurrencyLimit | None = Field(
        default=None,
        description="At most `limit` runs of this graph RUNNING at once, per value of `key` (a "
        "template of store keys, e.g. `${{ store.tenant }}`) or in all: the others wait PENDING "
        "and start in order as slots free (docs/flow-control.md)",
    )

    @field_validator("secrets")
    @classmethod
    def _secret_names(cls, value: dict[str, str]) -> dict[str, str]:
        check_field_names(value, "Secret")
        return value


class GraphCandidate(BaseModel):
    """An upsert that did not validate while a valid version was live."""

    nodes: list[NodeTemplate]
    validation_errors: list[str]
    updated_at: str


class GraphResponse(BaseModel):
    """Upsert (201; 200 with `validate_only`) and get (200). `secrets` only says which names are
    set, never values."""

    name: str
    namespace: str
    nodes: list[NodeTemplate]
    secrets: dict[str, bool]
    retry_policy: RetryPolicy
    store_config: StoreConfig
    triggers: list[dict[str, Any]]
    concurrency: ConcurrencyLimit | None = None
    created_at: str
    updated_at: str
    validation_status: str
    validation_errors: list[str]
    live: bool = Field(
        default=True,
        description="Whether this is the version triggers use. An upsert that does not validate "
        "while a valid version is live answers false: the valid version stays live, and this one "
        "waits as the graph's `candidate` (it goes live once it validates, e.g. when a runtime "
        "registers its nodes; a later upsert replaces it).",
    )
    stored: bool = Field(default=True, description="False for `validate_only`: nothing was stored")
    candidate: GraphCandidate | None = Field(
        default=None, description="On get: the newest upsert that did not validate, if it waits"
    )


class GraphDeleted(BaseModel):
    """A deleted graph, and how many of its open runs the deletion cancelled."""

    name: str
    namespace: str
    deleted: bool = True
    cancelled_runs: int = Field(description="Open runs cancelled by `force=true` (0 without it)")


class GraphListItem(GraphResponse):
    """A template in the listing: as get answers it, plus its database id."""

    model_config = ConfigDict(populate_by_name=True)

    id: str = Field(alias="_id")


class GraphList(BaseModel):
    namespace: str
    count: int
    templates: list[GraphListItem]
