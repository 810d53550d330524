"""Forking a finished run from some of its nodes (decision 0023): which nodes are reused and which
run fresh, and where the fresh ones start. Pure: no I/O.

The graph is a tree (domain/graph.py: every node has one parent, a join's is its `unites`
anchor). The nodes run fresh are the `from` nodes and everything below them, and every join
whose anchor has anything fresh below it (the join collects or waits for it), with everything
below that join. Every other node that ran in the original run is reused: its states are copied
into the fork as they ended, and must have succeeded.

A fresh node whose parent is reused starts the fork: one fresh state for each succeeded state of
its parent (as the parent's report would have made it), or, for the root, one state; a fresh
join is made by the joins stage when its anchor's scope settles, or by the fork itself when
nothing below its anchor runs again (a join forked from on its own).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from state_manager.domain.graph import GraphShape

REUSABLE = frozenset({"SUCCESS", "PRUNED"})
SUPERSEDED = "RETRY_CREATED"  # an attempt that a retry (or a join's next generation) replaced


class ForkRefused(ValueError):
    """The fork cannot be made as asked: the message says why, naming the node or field."""


@dataclass(frozen=True)
class Original:
    """What planning needs of a state of the original run."""

    id: str
    identifier: str
    status: str
    parents: Mapping[str, str]


@dataclass(frozen=True)
class Start:
    """A fresh state the fork writes itself: `identifier` below the original state `parent_id`
    (None: the root)."""

    identifier: str
    parent_id: str | None


@dataclass
class ForkPlan:
    fresh: set[str]
    reused: list[Original] = field(default_factory=list)  # the states copied, in the original's order
    starts: list[Start] = field(default_factory=list)  # the fresh states written by the fork
    joins: list[Start] = field(default_factory=list)  # joins made by the fork (parent: the anchor)


def _children(shape: GraphShape) -> dict[str, list[str]]:
    children: dict[str, list[str]] = {identifier: [] for identifier in shape.by_id}
    for identifier, parent in shape.parents.items():
        if parent is not None:
            children[parent].append(identifier)
    return children


def _subtree(children: Mapping[str, list[str]], top: str) -> set[str]:
    found, pending = set(), [top]
    while pending:
        identifier = pending.pop()
        if identifier not in found:
            found.add(identifier)
            pending += children.get(identifier, [])
    return found


def _scope(shape: GraphShape, children: Mapping[str, list[str]], anchor: str) -> set[str]:
    """The nodes a join on `anchor` waits for: everything below it but the joins on it and
    their subtrees."""
    excluded: set[str] = set()
    for join in shape.joins_on.get(anchor, []):
        excluded |= _subtree(children, join)
    return _subtree(children, anchor) - {anchor} - excluded


def fresh_nodes(shape: GraphShape, starts: Iterable[str]) -> set[str]:
    """The `from` nodes, everything below them, and every join with something fresh in its
    scope (with everything below it)."""
    children = _children(shape)
    fresh: set[str] = set()
    for identifier in starts:
        fresh |= _subtree(children, identifier)
    grown = True
    while grown:
        grown = False
        for anchor, joins in shape.joins_on.items():
            if _scope(shape, children, anchor) & fresh:
                for join in joins:
                    if join not in fresh:
                        fresh |= _subtree(children, join)
                        grown = True
    return fresh


def check_request(
    shape: GraphShape, starts: list[str], overrides: Mapping[str, Mapping[str, str]], graph_name: str
) -> None:
    """Refuse a `from` node the graph does not have, an override of a node not forked from, and
    an override of an input the node does not have."""
    if not starts:
        raise ForkRefused("from: name at least one node to fork from")
    known = ", ".join(shape.by_id)
    for identifier in starts:
        if identifier not in shape.by_id:
            raise ForkRefused(f"from: graph {graph_name} has no node {identifier!r} (it has {known})")
    for identifier, fields in overrides.items():
        if identifier not in starts:
            raise ForkRefused(
                f"inputs.{identifier}: node {identifier!r} is not forked from; "
                "add it to from to change its inputs"
            )
        inputs = shape.by_id[identifier].inputs
        for name in fields:
            if name not in inputs:
                raise ForkRefused(
                    f"inputs.{identifier}.{name}: node {identifier} has no input {name!r} "
                    f"(it has {', '.join(inputs) or 'none'})"
                )


def plan_fork(shape: GraphShape, states: list[Original], starts: list[str], run_id: str) -> ForkPlan:
    """Which states of the original run are copied and where the fresh ones start.

    Raises:
        ForkRefused: A node that would be reused did not succeed in the original run.
    """
    fresh = fresh_nodes(shape, starts)
    plan = ForkPlan(fresh=fresh)
    current = [s for s in states if s.status != SUPERSEDED]
    for state in current:
        if state.identifier in fresh or state.identifier not in shape.by_id:
            continue  # run again; or no longer in the graph the fork runs
        if state.status not in REUSABLE:
            raise ForkRefused(
                f"Node {state.identifier} did not succeed in run {run_id} ({state.status}): "
                "fork from it or from before it"
            )
        plan.reused.append(state)
    succeeded: dict[str, list[Original]] = {}
    for state in plan.reused:
        if state.status == "SUCCESS":
            succeeded.setdefault(state.identifier, []).append(state)
    children = _children(shape)
    for identifier in shape.by_id:  # graph order
        parent = shape.parents.get(identifier)
        if identifier not in fresh or (parent is not None and parent in fresh):
            continue
        template = shape.by_id[identifier]
        if parent is None:
            plan.starts.append(Start(identifier, None))
        elif template.unites is not None:
            if not _scope(shape, children, parent) & fresh:  # nothing below it runs again
                plan.joins += [Start(identifier, anchor.id) for anchor in succeeded.get(parent, [])]
        else:
            plan.starts += [Start(identifier, state.id) for state in succeeded.get(parent, [])]
    return plan
