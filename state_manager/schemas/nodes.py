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


class RegisteredNodeView(BaseModel):
    """A registered node: its schemas and secret names, and the runtime that registered it last."""

    model_config = ConfigDict(populate_by_name=True)

    id: str = Field(alias="_id")
    name: str
    namespace: str
    runtime_name: str
    runtime_namespace: str
    inputs_schema: dict[str, Any] = Field(description="JSON schema of the node's inputs")
    outputs_schema: dict[str, Any] = Field(description="JSON schema of the node's outputs")
    secrets: list[str] = Field(description="Names of the secrets the node needs")
    created_at: str = Field(description="ISO 8601")
    updated_at: str = Field(description="ISO 8601")


class NodeList(BaseModel):
    namespace: str
    count: int
    nodes: list[RegisteredNodeView]


class NamespaceList(BaseModel):
    namespaces: list[str] = Field(description="Namespaces where a runtime has registered nodes")
    count: int
