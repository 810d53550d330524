"""Node registration and namespaces."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from state_manager.clock import iso
from state_manager.schemas.nodes import RegisterNodesRequest, RegisterNodesResponse
from state_manager.services import nodes

router = APIRouter(tags=["nodes"])
global_router = APIRouter(tags=["namespaces"])


@router.put("/nodes/", response_model=RegisterNodesResponse)
async def register_nodes(namespace_name: str, body: RegisterNodesRequest) -> RegisterNodesResponse:
    await nodes.register_nodes(namespace_name, body)
    return RegisterNodesResponse(runtime_name=body.runtime_name, registered_nodes=body.nodes)


@router.get("/nodes/")
async def list_nodes(namespace_name: str) -> dict[str, Any]:
    found = await nodes.list_nodes(namespace_name)
    items = [
        {
            "_id": str(node.id),
            **node.model_dump(exclude={"id", "revision_id", "created_at", "updated_at"}),
            "created_at": iso(node.created_at),
            "updated_at": iso(node.updated_at),
        }
        for node in found
    ]
    return {"namespace": namespace_name, "count": len(items), "nodes": items}


@global_router.get("/namespaces")
async def list_namespaces() -> dict[str, Any]:
    names = await nodes.list_namespaces()
    return {"namespaces": names, "count": len(names)}
