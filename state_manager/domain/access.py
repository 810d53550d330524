"""Who may do what (issue 19): roles, the actions of the API, and the decision, as data (no I/O).

The server key (`STATE_MANAGER_SECRET`) is the root key: everything, everywhere. Scoped keys have
a role and the namespaces they may touch (`*`: all):

- `viewer`: every read (runs, states, graphs, nodes, queues, why, diff); never a secret;
- `operator`: a viewer's reads, and starting and steering runs (trigger, cancel, retries, fork,
  `states/create`);
- `worker`: what a runtime needs and nothing more: register nodes, claim, report, heartbeat,
  and the secrets of the states it holds;
- `admin`: everything in its namespaces (graphs, secrets, deletes); with `*`, also the keys and
  the audit log.

Every route of the API names one action (api/access.py); a request is allowed when its key's
role grants that action and the request's namespace is one of the key's.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

ALL_NAMESPACES = "*"


class Role(StrEnum):
    VIEWER = "viewer"
    OPERATOR = "operator"
    WORKER = "worker"
    ADMIN = "admin"


class Action(StrEnum):
    READ = "read"  # any read of runs, states, graphs, nodes, queues
    OPERATE = "operate"  # start and steer runs
    WORK = "work"  # a runtime's calls: register, claim, report, heartbeat
    SECRETS = "secrets"  # the secrets of a state its caller holds
    MANAGE = "manage"  # graphs, their secrets, deletes
    KEYS = "keys"  # make, list and revoke keys (all namespaces)
    AUDIT = "audit"  # read the audit log (all namespaces)
    PUBLIC = "public"  # health, docs: no key needed


GRANTS: dict[Role, frozenset[Action]] = {
    Role.VIEWER: frozenset({Action.READ}),
    Role.OPERATOR: frozenset({Action.READ, Action.OPERATE}),
    Role.WORKER: frozenset({Action.WORK, Action.SECRETS}),
    Role.ADMIN: frozenset({Action.READ, Action.OPERATE, Action.WORK, Action.SECRETS, Action.MANAGE}),
}
# What only a key for every namespace may do: the admin of all, and root.
GLOBAL_ACTIONS = frozenset({Action.KEYS, Action.AUDIT})


@dataclass(frozen=True)
class Principal:
    """Who is calling: a scoped key (its id, name, role, namespaces) or the root key."""

    key_id: str | None  # None: the root key
    name: str
    role: Role
    namespaces: frozenset[str]  # {"*"}: all

    @property
    def is_root(self) -> bool:
        return self.key_id is None

    @property
    def everywhere(self) -> bool:
        return ALL_NAMESPACES in self.namespaces

    def sees(self, namespace: str) -> bool:
        return self.everywhere or namespace in self.namespaces


ROOT = Principal(None, "root", Role.ADMIN, frozenset({ALL_NAMESPACES}))


def may(principal: Principal, action: Action) -> bool:
    """Whether the principal's role grants `action` (in some namespace)."""
    if action == Action.PUBLIC or principal.is_root:
        return True
    if action in GLOBAL_ACTIONS:
        return principal.role == Role.ADMIN and principal.everywhere
    return action in GRANTS[principal.role]


def refusal(principal: Principal, action: Action, namespace: str | None, operation: str) -> str | None:
    """Why `principal` may not do `operation` (an `action`) in `namespace`, or None if it may."""
    name, role = principal.name, principal.role.value
    if not may(principal, action):
        if action in GLOBAL_ACTIONS and principal.role == Role.ADMIN:
            return (
                f"Key {name!r} (admin of {_listed(principal)}) may not {operation}: only an admin of "
                "all namespaces (*) may"
            )
        where = "" if namespace is None else f" in namespace {namespace}"
        return f"Key {name!r} has role {role}, which may not {operation}{where}"
    if namespace is not None and not principal.sees(namespace):
        return (
            f"Key {name!r} ({role}) may not {operation} in namespace {namespace}: it is limited to "
            f"{_listed(principal)}"
        )
    return None


def _listed(principal: Principal) -> str:
    return ", ".join(sorted(principal.namespaces))
