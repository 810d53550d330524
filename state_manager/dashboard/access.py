"""Who is logged in, and what each dashboard page needs (issue 19, docs/access.md).

The guard (guard.py) finds the key of the session (`kid`) on every `/ui` request and puts who it
is (a `Principal`) in the request's state; a revoked or expired key ends the session there. Then
every route of `/ui` passes `check` (a dependency of the `/ui` router): the route's action, from
one table keyed by endpoint as the API's (api/access.py), in the page's namespace. Deny by
default: a route missing from the table is refused to every key but root.

A refusal is an HTML page (403, common.refused_page) that names the key, its role and the
namespace; a key that may read nothing here (a worker's) gets a page that says so. The
dashboard's state-changing routes are marked in the request's state for the audit log, refusals
too, and written once answered (api/audit_trail.py), as the API's are.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from fastapi import Request

from state_manager.clock import now_ms
from state_manager.dashboard.session import ROOT_KID
from state_manager.domain.access import ROOT, Action, Principal, Role, may, refusal
from state_manager.services import dashboard_reads, keys
from state_manager.services.context import AppContext

# Who a failed login is recorded as: nobody known (a stranger has the least role and no namespace).
UNKNOWN = Principal("unknown", "unknown", Role.VIEWER, frozenset())


@dataclass(frozen=True)
class Rule:
    action: Action
    operation: str  # what a refusal says the key may not do
    audited: str | None = None  # the action's name in the audit log (the API's names)


R, OP = Action.READ, Action.OPERATE
PUBLIC = Rule(Action.PUBLIC, "log in or out")

# "<module>.<endpoint function>" -> what it needs.
RULES: dict[str, Rule] = {
    "auth.login_form": PUBLIC,
    "auth.login": PUBLIC,  # audited itself: dashboard.login, dashboard.login_failed
    "auth.logout": PUBLIC,
    "auth.home": Rule(R, "read the dashboard"),
    "runs.runs_page": Rule(R, "read runs"),
    "runs.run_page": Rule(R, "read runs"),
    "compare.compare_page": Rule(R, "read runs"),
    "states.state_page": Rule(R, "read states"),
    "catalog.graphs_page": Rule(R, "read graphs"),
    "catalog.graph_page": Rule(R, "read graphs"),
    "catalog.nodes_page": Rule(R, "read nodes and queues"),
    "runs.confirm_page": Rule(OP, "cancel a run or retry its failed states"),
    "runs.cancel": Rule(OP, "cancel a run", "run.cancel"),
    "runs.retry_failed": Rule(OP, "retry the failed states of a run", "run.retry_failed"),
    "states.retry": Rule(OP, "retry a state", "state.retry"),
    "forks.fork_form": Rule(OP, "fork a run"),
    "forks.fork": Rule(OP, "fork a run", "run.fork"),
    "admin.keys_page": Rule(Action.KEYS, "manage API keys"),
    "admin.create_key": Rule(Action.KEYS, "make an API key", "key.create"),
    "admin.revoke_page": Rule(Action.KEYS, "revoke an API key"),
    "admin.revoke_key": Rule(Action.KEYS, "revoke an API key", "key.revoke"),
    "admin.audit_page": Rule(Action.AUDIT, "read the audit log"),
}
_TARGETS = {"run_id": "run", "state_id": "state", "key_id": "key"}


class Refused(Exception):
    """A route the logged-in key may not use: answered by `refused_page`."""

    def __init__(self, principal: Principal | None, reason: str, namespace: str | None) -> None:
        super().__init__(reason)
        self.principal = principal
        self.reason = reason
        self.namespace = namespace


async def who(ctx: AppContext, kid: str) -> Principal | str:
    """Who holds a session of key `kid`, or why the session ends: "revoked" (also for a key no
    longer stored) or "expired". Read as the API reads a key (services/keys.py): kept for
    KEY_CACHE_SECONDS, so a revoke ends sessions on this replica at once, on others within that."""
    if kid == ROOT_KID:
        return ROOT
    doc = await keys._read(ctx, kid)
    if doc is None or doc.get("revoked_ms") is not None:
        return "revoked"
    if doc.get("expires_ms") is not None and doc["expires_ms"] <= now_ms():
        return "expired"
    return keys.principal_of(doc)


def kid_of(principal: Principal) -> str:
    return ROOT_KID if principal.key_id is None else principal.key_id


def principal(request: Request) -> Principal | None:
    """Who is logged in, as the guard found it (None on the login page)."""
    found: Principal | None = getattr(request.state, "principal", None)
    return found


def allows(principal: Principal | None, action: str) -> bool:
    """Whether the logged-in key's role grants `action` (for the pages: which buttons to show)."""
    return principal is not None and may(principal, Action(action))


async def visible_namespaces(principal: Principal | None) -> list[str]:
    """The namespaces the switcher lists: those known that the key may see, and the key's own."""
    known = await dashboard_reads.known_namespaces()
    if principal is None or principal.everywhere:
        return known
    return sorted({*(n for n in known if principal.sees(n)), *principal.namespaces})


def endpoint_name(endpoint: Any) -> str:
    return f"{endpoint.__module__.rsplit('.', 1)[-1]}.{endpoint.__name__}"


def audit_mark(request: Request, principal: Principal, action: str, namespace: str | None = None) -> None:
    """Have the audit log record this request once it is answered (api/audit_trail.py)."""
    params = request.path_params
    request.state.audit = {
        "principal": principal,
        "action": action,
        "namespace": namespace,
        "target": {_TARGETS[p]: str(v) for p, v in params.items() if p in _TARGETS},
    }


async def check(request: Request) -> None:
    """Refuse (`Refused`, a 403 page) a route the logged-in key's role or namespaces do not allow."""
    route = request.scope.get("route")
    if route is None:
        return
    rule = RULES.get(endpoint_name(route.endpoint))
    if rule is not None and rule.action == Action.PUBLIC:
        return
    caller = principal(request)
    namespace: str | None = request.path_params.get("ns")
    if caller is None:  # the guard lets no session through: never here
        raise Refused(None, "Log in first.", namespace)
    if rule is not None and rule.audited is not None:
        audit_mark(request, caller, rule.audited, namespace)
    if rule is None:
        if caller.is_root:
            return
        raise Refused(caller, "This page has no access rule: only the root key may open it.", namespace)
    reason = refusal(caller, rule.action, namespace, rule.operation)
    if reason is not None:
        raise Refused(caller, reason, namespace)
