"""Graph templates: upsert (or only validate), get, list, delete."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Query, Response

from state_manager.api import examples
from state_manager.api.deps import Context
from state_manager.api.openapi_docs import GraphNamePath, NamespacePath, errors
from state_manager.clock import iso, utcnow
from state_manager.db.documents import GraphTemplate
from state_manager.schemas.graphs import (
    GraphCandidate,
    GraphDeleted,
    GraphList,
    GraphListItem,
    GraphResponse,
    UpsertGraphRequest,
)
from state_manager.services import graph_removal, graphs

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
        "concurrency": graph.concurrency,
        "created_at": iso(graph.created_at),
        "updated_at": iso(graph.updated_at),
        "validation_status": graph.validation_status,
        "validation_errors": graph.validation_errors,
        "candidate": _candidate(graph.candidate),
    }


def _candidate(candidate: dict[str, Any] | None) -> GraphCandidate | None:
    if candidate is None:
        return None
    return GraphCandidate(
        nodes=candidate.get("nodes", []),
        validation_errors=candidate.get("validation_errors", []),
        updated_at=iso(candidate["updated_at"]) if candidate.get("updated_at") else "",
    )


def _view(graph: GraphTemplate) -> GraphResponse:
    return GraphResponse.model_validate(_fields(graph))


def _kept_live_view(graph: GraphTemplate) -> GraphResponse:
    """The answer to an upsert that did not validate while a valid version was live: the upsert
    as it was stored (the candidate), not live."""
    candidate: dict[str, Any] = graph.candidate or {}
    fields: dict[str, Any] = {
        **_fields(graph),
        **{
            key: candidate[key]
            for key in ("nodes", "retry_policy", "store_config", "triggers", "concurrency")
            if key in candidate
        },
        "secrets": dict.fromkeys(candidate.get("secrets", {}), True),
        "updated_at": iso(candidate["updated_at"]) if candidate.get("updated_at") else iso(graph.updated_at),
        "validation_status": candidate.get("validation_status", graphs.INVALID),
        "validation_errors": candidate.get("validation_errors", []),
        "live": False,
    }
    return GraphResponse.model_validate(fields)


def _checked_view(namespace: str, name: str, body: UpsertGraphRequest, errors: list[str]) -> GraphResponse:
    """The answer to `validate_only`: the graph as the upsert would store it, stored nowhere."""
    now = iso(utcnow())
    return GraphResponse(
        name=name,
        namespace=namespace,
        nodes=[node.to_domain() for node in body.nodes],
        secrets=dict.fromkeys(body.secrets, True),
        retry_policy=body.retry_policy,
        store_config=body.store_config.model_dump(),
        triggers=[trigger.model_dump(mode="json") for trigger in body.triggers],
        concurrency=body.concurrency,
        created_at=now,
        updated_at=now,
        validation_status=graphs.INVALID if errors else graphs.VALID,
        validation_errors=errors,
        live=False,
        stored=False,
    )


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
    response: Response,
    validate_only: Annotated[
        bool, Query(description="Only validate: answer 200 with the verdict and store nothing")
    ] = False,
) -> GraphResponse:
    """Store the template under this name (a new version each time) and validate it at once.

    A structural mistake (two roots, a cycle, an unknown next node, an input that references a
    node that is not an ancestor) is a 400 that names the node, and nothing is stored. A template
    whose nodes are not registered yet, or whose inputs or secrets do not match their schemas, is
    INVALID, with the reasons in `validation_errors`. An INVALID upsert never replaces a VALID
    live version: that version stays what triggers use, and the answer says `live: false`; the
    upsert waits as the graph's `candidate` and goes live once it validates (when a runtime
    registers its nodes). A graph with no valid version is replaced (and validated again when a
    runtime registers). Only a VALID graph can be triggered. With `validate_only=true` nothing
    is stored: 200 with the verdict. The answer shows the secrets' names only."""
    if validate_only:
        response.status_code = 200
        return _checked_view(namespace_name, graph_name, body, await graphs.check_graph(body))
    upserted = await graphs.upsert_graph(context, namespace_name, graph_name, body)
    return _view(upserted.graph) if upserted.live else _kept_live_view(upserted.graph)


@router.delete(
    "/graph/{graph_name}",
    summary="Delete a graph template",
    responses=errors(
        404,
        409,
        e404="No graph of this name in the namespace",
        e409="The graph has open runs and force is not set",
    ),
)
async def delete_graph(
    context: Context,
    namespace_name: NamespacePath,
    graph_name: GraphNamePath,
    force: Annotated[bool, Query(description="Cancel the graph's open runs, then delete it")] = False,
) -> GraphDeleted:
    """Delete the template and its cron schedules. Refused (409, naming the runs) while the graph
    has runs that have not ended, unless `force=true`, which cancels them first. Finished runs
    keep their states and pages."""
    cancelled = await graph_removal.delete_graph(context, namespace_name, graph_name, force)
    return GraphDeleted(name=graph_name, namespace=namespace_name, cancelled_runs=cancelled)


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
