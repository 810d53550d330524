"""Node registration and namespaces."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Body, Request

from state_manager.api import access, examples
from state_manager.api.openapi_docs import WORKER_TAG, NamespacePath, errors
from state_manager.clock import iso
from state_manager.db.documents import RegisteredNode
from state_manager.schemas.nodes import (
    NamespaceList,
    NodeList,
    RegisteredNodeView,
    RegisterNodesRequest,
    RegisterNodesResponse,
)
from state_manager.services import nodes

router = APIRouter()
global_router = APIRouter(tags=["nodes"])


@router.put("/nodes/", tags=[WORKER_TAG], summary="Register a runtime's nodes", responses=errors(422))
async def register_nodes(
    namespace_name: NamespacePath,
    body: Annotated[RegisterNodesRequest, Body(openapi_examples=examples.REGISTER_NODES)],
) -> RegisterNodesResponse:
    """What a runtime sends when it starts: each node's name, the JSON schemas of its inputs and
    outputs, and the names of the secrets it needs. A node registered again is replaced, and the
    graph templates that use these nodes are validated again against them."""
    await nodes.register_nodes(namespace_name, body)
    return RegisterNodesResponse(runtime_name=body.runtime_name, registered_nodes=body.nodes)


def _node_view(node: RegisteredNode) -> RegisteredNodeView:
    return RegisteredNodeView(
        id=str(node.id),
        name=node.name,
        namespace=node.namespace,
        runtime_name=node.runtime_name,
        runtime_namespace=node.runtime_namespace,
        inputs_schema=node.inputs_schema,
        outputs_schema=node.outputs_schema,
        secrets=node.secrets,
        created_at=iso(node.created_at),
        updated_at=iso(node.updated_at),
    )


@router.get("/nodes/", tags=["nodes"], summary="List registered nodes")
async def list_nodes(namespace_name: NamespacePath) -> NodeList:
    """The nodes registered in the namespace, with their schemas, secret names and the runtime
    that registered them last."""
    items = [_node_view(node) for node in await nodes.list_nodes(namespace_name)]
    return NodeList(namespace=namespace_name, count=len(items), nodes=items)


@global_router.get("/namespaces", summary="List namespaces")
async def list_namespaces(request: Request) -> NamespaceList:
    """The namespaces where a runtime has registered nodes (those the caller's key may see)."""
    caller = access.principal(request)
    names = [name for name in await nodes.list_namespaces() if caller.sees(name)]
    return NamespaceList(namespaces=names, count=len(names))
