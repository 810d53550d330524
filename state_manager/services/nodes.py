"""Node registration by runtimes, and the namespaces they define."""

from __future__ import annotations

import structlog

from state_manager.clock import utcnow
from state_manager.db.documents import RegisteredNode
from state_manager.schemas.nodes import RegisterNodesRequest
from state_manager.services.graphs import revalidate_graphs_using

log = structlog.get_logger(__name__)


async def register_nodes(namespace: str, body: RegisterNodesRequest) -> None:
    """Upsert each node by (name, namespace), then re-validate the graphs that use them."""
    collection = RegisteredNode.get_motor_collection()
    for node in body.nodes:
        now = utcnow()
        await collection.update_one(
            {"name": node.name, "namespace": namespace},
            {
                "$set": {
                    "runtime_name": body.runtime_name,
                    "runtime_namespace": namespace,
                    "inputs_schema": node.inputs_schema,
                    "outputs_schema": node.outputs_schema,
                    "secrets": node.secrets,
                    "updated_at": now,
                },
                "$setOnInsert": {"created_at": now},
            },
            upsert=True,
        )
    log.info("nodes_registered", namespace=namespace, runtime=body.runtime_name, count=len(body.nodes))
    await revalidate_graphs_using(namespace, [node.name for node in body.nodes])


async def list_nodes(namespace: str) -> list[RegisteredNode]:
    return await RegisteredNode.find({"namespace": namespace}).sort("name").to_list()


async def list_namespaces() -> list[str]:
    names = await RegisteredNode.get_motor_collection().distinct("namespace")
    return sorted(name for name in names if name)
