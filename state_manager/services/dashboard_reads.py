"""Read-only look-ups the dashboard needs beyond the run views: the namespaces there are, a
namespace's graph names, and a state's relatives (children, retries, the state it retries).

Relatives are found through what the server writes: a child's `parents` names this state under
its identifier, and a retry's `spawn_key` starts with the id of the state it retries
(`<id>:retry` for an automatic one, `<id>:manual:<fanout id>` for an operator's).
"""

from __future__ import annotations

import re
from typing import Any

from bson import ObjectId

from state_manager.db import queries
from state_manager.db.documents import CronSchedule, GraphTemplate, RegisteredNode, Run, State
from state_manager.domain.names import field_name_problem
from state_manager.services.context import AppContext
from state_manager.services.graphs import template_for

_RETRY_OF = re.compile(r"([0-9a-f]{24}):(retry|manual:.*)")


async def known_namespaces() -> list[str]:
    """Every namespace that has registered nodes, graphs or runs."""
    found: set[str] = set()
    found.update(await RegisteredNode.get_motor_collection().distinct("namespace"))
    found.update(await GraphTemplate.get_motor_collection().distinct("namespace"))
    found.update(await Run.get_motor_collection().distinct("namespace_name"))
    return sorted(name for name in found if isinstance(name, str) and name)


async def newest_namespace() -> str | None:
    """The namespace of the newest run, else the first namespace known; None when there is none."""
    newest = await Run.get_motor_collection().find({}, {"namespace_name": 1}).sort("_id", -1).to_list(1)
    if newest and newest[0].get("namespace_name"):
        return str(newest[0]["namespace_name"])
    known = await known_namespaces()
    return known[0] if known else None


async def graph_names(namespace: str) -> list[str]:
    names = await queries.distinct_values(GraphTemplate, {"namespace": namespace}, "name")
    return sorted(str(name) for name in names)


async def schedules(namespace: str, graph_name: str) -> list[CronSchedule]:
    return (
        await CronSchedule.find({"namespace": namespace, "graph_name": graph_name})
        .sort("expression")
        .to_list()
    )


async def children(
    ctx: AppContext, namespace: str, state: State, limit: int = 50
) -> tuple[list[State], bool]:
    """The states created from this one (its next nodes, fan-out copies included, and joins that
    wait on its node), oldest first; and whether there are more than `limit`."""
    if field_name_problem(state.identifier):  # never a query key from unchecked text
        return [], False
    graph = await template_for(ctx, namespace, state.graph_name, state.graph_version)
    following: set[str] = set()
    for node in graph.nodes if graph else []:
        if node.identifier == state.identifier:
            following.update(node.next_nodes or [])
        if node.unites and node.unites.identifier == state.identifier:
            following.add(node.identifier)
    if not following:
        return [], False
    query: dict[str, Any] = {
        "run_id": state.run_id,
        "graph_namespace": namespace,
        "identifier": {"$in": sorted(following)},
        f"parents.{state.identifier}": str(state.id),
    }
    found = await queries.find_states(query, sort=[("_id", 1)], limit=limit + 1)
    return found[:limit], len(found) > limit


async def retries(namespace: str, state: State) -> list[State]:
    """The attempts that retried this state (automatic or manual), oldest first."""
    query = {"graph_namespace": namespace, "spawn_key": {"$regex": f"^{state.id}:(retry$|manual:)"}}
    return await queries.find_states(query, sort=[("_id", 1)])


def retry_of(state: State) -> str | None:
    """The id of the state this one is a retry of, if it is one."""
    match = _RETRY_OF.fullmatch(state.spawn_key)
    return match.group(1) if match else None


async def find_states_by_ids(namespace: str, ids: list[str]) -> dict[str, State]:
    """States by id (only valid ids of this namespace's graphs; unknown ones are left out)."""
    oids = [ObjectId(i) for i in ids if ObjectId.is_valid(i)]
    if not oids:
        return {}
    found = await queries.find_states({"_id": {"$in": oids}, "graph_namespace": namespace})
    return {str(s.id): s for s in found}


async def first_inputs(namespace: str, run_id: str, identifier: str) -> tuple[dict[str, Any], int] | None:
    """The inputs a node ran with in a run, for a fork's form: those of its latest attempt at its
    first place (a fan-out's first copy); and at how many places it ran (its copies). None when
    the node has no state in the run."""
    docs = await queries.run_states_where(
        run_id,
        {"identifier": identifier, "graph_namespace": namespace},
        fields=("_id", "status", "inputs", "fanout_path", "output_index"),
    )
    # A superseded attempt (a retry replaced it) never counts: the newest attempt at a place does.
    current = [doc for doc in docs if doc.get("status") != "RETRY_CREATED"] or docs
    if not current:
        return None

    def place(doc: dict[str, Any]) -> tuple[int, ...]:
        return (*(doc.get("fanout_path") or ()), doc.get("output_index", 0))

    first = min(current, key=lambda doc: (place(doc), -int(str(doc["_id"]), 16)))
    return dict(first.get("inputs") or {}), len({place(doc) for doc in current})
