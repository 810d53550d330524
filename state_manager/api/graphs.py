"""Graph templates: upsert, get, list."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from state_manager.api.deps import Context
from state_manager.clock import iso
from state_manager.db.documents import GraphTemplate
from state_manager.schemas.graphs import GraphResponse, UpsertGraphRequest
from state_manager.services import graphs

router = APIRouter(tags=["graphs"])


def _view(graph: GraphTemplate) -> GraphResponse:
    return GraphResponse(
        name=graph.name,
        namespace=graph.namespace,
        nodes=graph.nodes,
        secrets=dict.fromkeys(graph.secrets, True),
        retry_policy=graph.retry_policy,
        store_config=graph.store_config,
        triggers=graph.triggers,
        created_at=iso(graph.created_at),
        updated_at=iso(graph.updated_at),
        validation_status=graph.validation_status,
        validation_errors=graph.validation_errors,
    )


@router.put("/graph/{graph_name}", status_code=201, response_model=GraphResponse)
async def upsert_graph(
    context: Context, namespace_name: str, graph_name: str, body: UpsertGraphRequest
) -> GraphResponse:
    return _view(await graphs.upsert_graph(context, namespace_name, graph_name, body))


@router.get("/graph/{graph_name}", response_model=GraphResponse)
async def get_graph(namespace_name: str, graph_name: str) -> GraphResponse:
    return _view(await graphs.get_graph(namespace_name, graph_name))


@router.get("/graphs/")
async def list_graphs(namespace_name: str) -> dict[str, Any]:
    found = await graphs.list_graphs(namespace_name)
    # Whole templates as upstream lists them, except the secrets: names only, never ciphertexts.
    templates = [{"_id": str(graph.id), **_view(graph).model_dump(mode="json")} for graph in found]
    return {"namespace": namespace_name, "count": len(templates), "templates": templates}
