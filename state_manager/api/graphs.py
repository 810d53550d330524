"""Graph templates: upsert, get, list."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Body

from state_manager.api import examples
from state_manager.api.deps import Context
from state_manager.api.openapi_docs import GraphNamePath, NamespacePath, errors
from state_manager.clock import iso
from state_manager.db.documents import GraphTemplate
from state_manager.schemas.graphs import GraphList, GraphListItem, GraphResponse, UpsertGraphRequest
from state_manager.services import graphs

router = APIRouter(tags=["graphs"])


def _fields(graph: GraphTemplate) -> dict[str, object]:
    return {
        "name": graph.name,
        "namespace": graph.namespace,
        "nodes": graph.nodes,
        "secrets": dict.fromkeys(graph.secrets, True),
        "retry_policy": graph.retry_policy,
        "store_config": graph.store_config,
        "triggers": graph.triggers,
        "created_at": iso(graph.created_at),
        "updated_at": iso(graph.updated_at),
        "validation_status": graph.validation_status,
        "validation_errors": graph.validation_errors,
    }


def _view(graph: GraphTemplate) -> GraphResponse:
    return GraphResponse.model_validate(_fields(graph))


@router.put(
    "/graph/{graph_name}",
    status_code=201,
    summary="Create or replace a graph template",
    responses=errors(
        400, 422, e400="The graph's structure is wrong (no single root, a cycle, an unknown next node...)"
    ),
)
async def upsert_graph(
    context: Context,
    namespace_name: NamespacePath,
    graph_name: GraphNamePath,
    body: Annotated[UpsertGraphRequest, Body(openapi_examples=examples.UPSERT_GRAPH)],
) -> GraphResponse:
    """Store the template under this name (a new version each time) and validate it at once.

    A structural mistake (two roots, a cycle, an unknown next node, an input that references a
    node that is not an ancestor) is a 400 that names the node, and nothing is stored. A template
    whose nodes are not registered yet, or whose inputs or secrets do not match their schemas, is
    stored with `validation_status` INVALID and the reasons in `validation_errors`; it is
    validated again when a runtime registers those nodes. Only a VALID graph can be triggered.
    The answer shows the secrets' names only."""
    return _view(await graphs.upsert_graph(context, namespace_name, graph_name, body))


@router.get(
    "/graph/{graph_name}",
    summary="Get a graph template",
    responses=errors(404, e404="No graph of this name in the namespace"),
)
async def get_graph(namespace_name: NamespacePath, graph_name: GraphNamePath) -> GraphResponse:
    """The template as stored, with its validation status and errors; secrets by name only."""
    return _view(await graphs.get_graph(namespace_name, graph_name))


@router.get("/graphs/", summary="List graph templates")
async def list_graphs(namespace_name: NamespacePath) -> GraphList:
    """Every template of the namespace, as get answers it, plus its database `_id`. Secrets by
    name only, never their values."""
    found = await graphs.list_graphs(namespace_name)
    templates = [GraphListItem.model_validate({"_id": str(graph.id), **_fields(graph)}) for graph in found]
    return GraphList(namespace=namespace_name, count=len(templates), templates=templates)
