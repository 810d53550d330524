"""`StateManager`'s calls for operating a namespace: health, graphs, runs, states, queues, nodes.

These wrap the read and steer endpoints that the `exosphere` command line and scripts use
(`GET /runs`, `GET /run/{id}`, `GET /run/{id}/graph`, `POST /run/{id}/retry-failed`, ...). They
live in this mixin so that `state_manager.py` keeps the graph/trigger surface of the two upstream
SDKs; `StateManager` inherits them. Every method answers the server's JSON as plain dicts and
raises the exceptions of `errors.py` (`NotFoundError`, `ConflictError`, `TransportError`, ...).
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncGenerator, Mapping
from datetime import datetime
from typing import Any
from urllib.parse import urlencode

from ._http import ApiClient
from .errors import GraphValidationError, TransportError

__all__ = ["AccessCalls", "AdminCalls"]

RUN_FINAL_STATUSES = frozenset({"SUCCESS", "FAILED", "CANCELLED"})
"""Run statuses after which nothing more happens in the run (until a retry)."""

TimeBound = int | str | datetime
"""A time filter: epoch milliseconds, an ISO 8601 string, or a timezone-aware datetime."""


class AdminCalls:
    """Operator calls of `StateManager` (see the module docstring)."""

    _api: ApiClient
    _namespace: str

    # ------------------------------------------------------------------ server

    async def health(self) -> dict[str, Any]:
        """`GET /health`: answers without the API key, so it proves the server is up, not the key."""
        return await self._api.request_object("GET", "/health")

    async def list_namespaces(self) -> list[str]:
        """The namespaces the server knows (an authenticated call: it proves the key)."""
        root = self._api.path().rsplit("/namespace/", 1)[0]
        data = await self._api.request_object("GET", f"{root}/namespaces")
        return [str(name) for name in _list(data, "namespaces", "GET namespaces")]

    async def list_nodes(self) -> list[dict[str, Any]]:
        """The nodes registered in this namespace, with their input, output and secret schemas."""
        data = await self._api.request_object("GET", self._api.path("nodes") + "/")
        return _list(data, "nodes", "GET nodes")

    async def queue_health(self) -> dict[str, Any]:
        """`GET /queues`: per node, the due backlog, its age, and whether a runtime is polling."""
        return await self._api.request_object("GET", self._api.path("queues"))

    # ------------------------------------------------------------------ graphs

    async def list_graphs(self) -> list[dict[str, Any]]:
        """The graph templates of this namespace (secret names only, never values)."""
        data = await self._api.request_object("GET", self._api.path("graphs") + "/")
        return _list(data, "templates", "GET graphs")

    async def apply_graph(
        self,
        graph_name: str,
        body: Mapping[str, Any],
        *,
        validation_timeout: float = 60,
        polling_interval: float = 0.5,
        validate_only: bool = False,
    ) -> dict[str, Any]:
        """Send a graph body as is (`PUT /graph/{name}`) and wait while it is `PENDING`.

        Unlike `upsert_graph`, the body is not checked by the SDK's models (the server is the
        judge, so fields this SDK does not know yet pass through) and an `INVALID` graph is
        returned, not raised: look at `validation_status` and `validation_errors` (and `live`:
        false when the graph's previous valid version stays live). With `validate_only` the
        server only answers its verdict and stores nothing (`stored` is false).

        Raises:
            GraphValidationError: If the graph is still `PENDING` after `validation_timeout`.
            BadRequestError: If the server refuses the body (e.g. a cycle, an unknown field type).
        """
        path = self._api.path("graph", graph_name)
        if validate_only:
            return await self._api.request_object("PUT", path + "?validate_only=true", body=dict(body))
        graph = await self._api.request_object("PUT", path, body=dict(body))
        return await self._wait_while_pending(graph_name, graph, validation_timeout, polling_interval)

    async def delete_graph(self, graph_name: str, *, force: bool = False) -> dict[str, Any]:
        """Delete a graph template (`DELETE /graph/{name}`) and its cron schedules.

        Raises:
            ConflictError: If the graph has open runs and `force` is false (with `force` they
                are cancelled first).
            NotFoundError: If there is no such graph.
        """
        path = self._api.path("graph", graph_name) + ("?force=true" if force else "")
        return await self._api.request_object("DELETE", path)

    async def _wait_while_pending(
        self, graph_name: str, graph: dict[str, Any], wait_seconds: float, interval: float
    ) -> dict[str, Any]:
        """Re-read the graph every `interval` while its validation is `PENDING`."""
        deadline = time.monotonic() + wait_seconds
        while graph.get("validation_status") == "PENDING":
            if time.monotonic() >= deadline:
                raise GraphValidationError(
                    f"Graph validation check timed out after {wait_seconds} seconds: "
                    f"{graph_name} is still PENDING",
                    validation_status="PENDING",
                    validation_errors=[],
                )
            await asyncio.sleep(interval)
            graph = await self._api.get_graph(graph_name)
        return graph

    # ------------------------------------------------------------------ runs

    async def search_runs(
        self,
        *,
        graph: str | None = None,
        status: str | None = None,
        since: TimeBound | None = None,
        until: TimeBound | None = None,
        limit: int = 50,
        cursor: str | None = None,
    ) -> dict[str, Any]:
        """One page of runs, newest first: `{"namespace", "runs": [...], "next_cursor"}`.

        Args:
            graph: Only runs of this graph.
            status: Only runs in this status (PENDING, RUNNING, SUCCESS, FAILED, CANCELLED).
            since: Only runs created at or after this time.
            until: Only runs created at or before this time.
            limit: Runs per page, 1 to 500.
            cursor: The `next_cursor` of the previous page.
        """
        query = {
            "graph": graph,
            "status": status,
            "since": time_param(since),
            "until": time_param(until),
            "limit": limit,
            "cursor": cursor,
        }
        return await self._api.request_object("GET", _with_query(self._api.path("runs"), query))

    async def iter_runs(
        self,
        *,
        graph: str | None = None,
        status: str | None = None,
        since: TimeBound | None = None,
        until: TimeBound | None = None,
        page_size: int = 100,
    ) -> AsyncGenerator[dict[str, Any], None]:
        """Every matching run, newest first, fetching pages of `page_size` as it goes."""
        cursor: str | None = None
        while True:
            page = await self.search_runs(
                graph=graph, status=status, since=since, until=until, limit=page_size, cursor=cursor
            )
            for run in _list(page, "runs", "GET runs"):
                yield run
            cursor = page.get("next_cursor")
            if not cursor:
                return

    async def get_run(self, run_id: str) -> dict[str, Any]:
        """One run: status, counts per state status, times, its store.

        Raises:
            NotFoundError: If the run does not exist in this namespace.
        """
        return await self._api.request_object("GET", self._api.path("run", run_id))

    async def list_run_states(
        self,
        run_id: str,
        *,
        status: str | None = None,
        identifier: str | None = None,
        limit: int = 100,
        cursor: str | None = None,
    ) -> dict[str, Any]:
        """One page of a run's states, oldest first: `{"run_id", "states": [...], "next_cursor"}`."""
        query = {"status": status, "identifier": identifier, "limit": limit, "cursor": cursor}
        path = _with_query(self._api.path("run", run_id, "states"), query)
        return await self._api.request_object("GET", path)

    async def get_run_progress(self, run_id: str) -> dict[str, Any]:
        """The run's template graph with per-node status and counts (`GET /run/{id}/graph`).

        Returns:
            `{"run_id", "graph_name", "graph_version", "status", "nodes": [...], "edges": [...]}`;
            each node has `identifier`, `node_name`, `status` (NOT_STARTED, PENDING, RUNNING,
            SUCCESS, FAILED, CANCELLED), `counts` per state status and `total`.
        """
        path = _with_query(self._api.path("run", run_id, "graph"), {"view": "template"})
        return await self._api.request_object("GET", path)

    async def retry_failed(self, run_id: str) -> dict[str, Any]:
        """Retry every failed state of a run once: `{"run_id", "retried", "state_ids", "status"}`.

        Raises:
            ConflictError: If the run was cancelled.
        """
        return await self._api.request_object("POST", self._api.path("run", run_id, "retry-failed"))

    # ------------------------------------------------------------------ states

    async def get_state(self, state_id: str) -> dict[str, Any]:
        """One state with its inputs, outputs, error, parents, retry count and times."""
        return await self._api.request_object("GET", self._api.path("state", state_id, "view"))

    async def retry_state(self, state_id: str, fanout_id: str | None = None) -> dict[str, Any]:
        """Manually retry a state: a new state with the same inputs (`{"id", "status"}`).

        Args:
            state_id: The state to retry.
            fanout_id: Names this retry; repeating a call with the same `fanout_id` creates no
                second state (the server answers 409). A fresh one is made up when None.

        Returns:
            The server's answer plus the `fanout_id` used.

        Raises:
            ConflictError: If this state was already retried with this `fanout_id`.
        """
        body = {"fanout_id": fanout_id or uuid.uuid4().hex}
        path = self._api.path("state", state_id, "manual-retry")
        answer = await self._api.request_object("POST", path, body=body)
        return {**answer, "fanout_id": body["fanout_id"]}


class AccessCalls:
    """Keys and the audit log (our server only; an admin of all namespaces, or the root key)."""

    _api: ApiClient

    def _root(self) -> str:
        return self._api.path().rsplit("/namespace/", 1)[0]

    async def create_key(
        self, name: str, role: str, namespaces: list[str], *, expires_at: datetime | None = None
    ) -> dict[str, Any]:
        """`POST /v0/keys`: a new key with a role (viewer, operator, worker, admin) in some
        namespaces (`["*"]`: all). The answer's `key` is the key itself, shown this once."""
        body: dict[str, Any] = {"name": name, "role": role, "namespaces": list(namespaces)}
        if expires_at is not None:
            body["expires_at"] = time_param(expires_at)
        return await self._api.request_object("POST", f"{self._root()}/keys", body=body)

    async def list_keys(self) -> list[dict[str, Any]]:
        """`GET /v0/keys`: every key (revoked and expired ones too), never its secret."""
        data = await self._api.request_object("GET", f"{self._root()}/keys")
        return _list(data, "keys", "GET keys")

    async def revoke_key(self, key_id: str) -> dict[str, Any]:
        """`DELETE /v0/keys/{id}`: refused on every replica within seconds; a repeat is harmless."""
        return await self._api.request_object("DELETE", f"{self._root()}/keys/{key_id}")

    async def read_audit(
        self,
        *,
        namespace: str | None = None,
        action: str | None = None,
        key: str | None = None,
        since: TimeBound | None = None,
        until: TimeBound | None = None,
        limit: int = 100,
        cursor: str | None = None,
    ) -> dict[str, Any]:
        """One page of the audit log, newest first: `{"records": [...], "next_cursor"}`."""
        query = {
            "namespace": namespace,
            "action": action,
            "key": key,
            "since": time_param(since),
            "until": time_param(until),
            "limit": limit,
            "cursor": cursor,
        }
        return await self._api.request_object("GET", _with_query(f"{self._root()}/audit", query))


def time_param(value: TimeBound | None) -> str | None:
    """A time filter as sent: a datetime as ISO 8601 (it must name its zone), the rest as text."""
    if value is None:
        return None
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise ValueError("since/until datetimes should be timezone-aware")
        return value.isoformat()
    return str(value)


def _with_query(path: str, query: Mapping[str, object]) -> str:
    present = {name: str(value) for name, value in query.items() if value is not None}
    return f"{path}?{urlencode(present)}" if present else path


def _list(data: Mapping[str, Any], field: str, what: str) -> list[Any]:
    items = data.get(field)
    if not isinstance(items, list):
        raise TransportError(f"{what}: the answer has no {field!r} list")
    return items
