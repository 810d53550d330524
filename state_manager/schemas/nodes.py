"""Wire models of node registration."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from state_manager.schemas.safety import RequestBody


class NodeRegistration(BaseModel):
    model_config = ConfigDict(extra="ignore")

    name: str = Field(min_length=1)
    inputs_schema: dict[str, Any]
    outputs_schema: dict[str, Any]
    secrets: list[str]


class RegisterNodesRequest(RequestBody):
    runtime_name: str = Field(min_length=1)
    nodes: list[NodeRegistration]


class RegisterNodesResponse(BaseModel):
    runtime_name: str
    registered_nodes: list[NodeRegistration]
