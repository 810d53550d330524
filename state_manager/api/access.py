"""The action of every route of the API (domain/access.py), in one table, and the check each
`/v0` request passes after its key was resolved (api/guard.py).

Deny by default: a route missing from the table is refused to every key but root, and a test
walks every route of `/openapi.json` against this table and the one in docs/access.md.
"""

from __future__ import annotations

from typing import Any

from fastapi import Request

from state_manager.domain.access import ROOT, Action, Principal, refusal
from state_manager.errors import Forbidden

R, OP, W, S, M, K, A = (
    Action.READ,
    Action.OPERATE,
    Action.WORK,
    Action.SECRETS,
    Action.MANAGE,
    Action.KEYS,
    Action.AUDIT,
)

# "<module>.<endpoint function>" -> its action.
ACTIONS: dict[str, Action] = {
    "nodes.register_nodes": W,
    "nodes.list_nodes": R,
    "nodes.list_namespaces": R,
    "graphs.upsert_graph": M,
    "graphs.delete_graph": M,
    "graphs.get_graph": R,
    "graphs.list_graphs": R,
    "states.trigger_graph": OP,
    "states.create_states": OP,
    "states.enqueue_states": W,
    "states.executed_state": W,
    "states.errored_state": W,
    "states.prune_state": W,
    "states.re_enqueue_after": W,
    "states.heartbeat": W,
    "states.get_secrets": S,
    "states.manual_retry": OP,
    "runs.list_states": R,
    "runs.run_states": R,
    "runs.run_graph": R,
    "runs.list_runs": R,
    "runs.node_details": R,
    "runs.search_runs": R,
    "runs.get_run": R,
    "runs.list_run_states": R,
    "runs.run_template_graph": R,
    "runs.get_state": R,
    "runs.cancel_run": OP,
    "runs.retry_failed": OP,
    "forks.fork_run": OP,
    "forks.fork_failed": OP,
    "diffs.diff_runs": R,
    "why.state_why": R,
    "why.run_why": R,
    "queues.queue_health": R,
    "debug.db_commands": M,
    "debug.reset_db_commands": M,
    "keys.create_key": K,
    "keys.list_keys": K,
    "keys.revoke_key": K,
    "audit.read_audit": A,
}


# The calls the audit log records (state-changing, but not a runtime's work): endpoint -> the
# action's name in the log.
AUDITED: dict[str, str] = {
    "graphs.upsert_graph": "graph.upsert",
    "graphs.delete_graph": "graph.delete",
    "states.trigger_graph": "run.trigger",
    "states.create_states": "states.create",
    "states.manual_retry": "state.retry",
    "runs.cancel_run": "run.cancel",
    "runs.retry_failed": "run.retry_failed",
    "forks.fork_run": "run.fork",
    "forks.fork_failed": "runs.fork_failed",
    "keys.create_key": "key.create",
    "keys.revoke_key": "key.revoke",
}
_TARGETS = {"graph_name": "graph", "run_id": "run", "state_id": "state", "key_id": "key"}


def endpoint_name(endpoint: Any) -> str:
    return f"{endpoint.__module__.rsplit('.', 1)[-1]}.{endpoint.__name__}"


def principal(request: Request) -> Principal:
    """Who is calling, as the guard resolved it (root for a request that did not pass it: the
    in-process callers of the tests' ASGI transport pass it too)."""
    found: Principal = getattr(request.state, "principal", ROOT)
    return found


def check(request: Request) -> None:
    """Refuse (403) a request whose key's role or namespaces do not allow the route's action."""
    route = request.scope.get("route")
    if route is None:
        return
    name = endpoint_name(route.endpoint)
    action = ACTIONS.get(name)
    caller = principal(request)
    if name in AUDITED:  # recorded once answered (api/audit_trail.py), a refusal too
        params = request.path_params
        request.state.audit = {
            "principal": caller,
            "action": AUDITED[name],
            "namespace": params.get("namespace_name"),
            "target": {_TARGETS[p]: str(v) for p, v in params.items() if p in _TARGETS},
        }
    summary = str(getattr(route, "summary", None) or route.name)
    operation = summary[:1].lower() + summary[1:]
    if action is None:
        if caller.is_root:
            return
        raise Forbidden(f"{operation} has no access rule: only the root key may call it")
    reason = refusal(caller, action, request.path_params.get("namespace_name"), operation)
    if reason is not None:
        raise Forbidden(reason)
