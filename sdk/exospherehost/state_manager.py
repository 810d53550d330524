"""`StateManager`: define graphs, trigger runs, read them back, fork and compare them, and ask why
their states wait."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from types import TracebackType
from typing import Any, TypeVar, overload

from pydantic import BaseModel, ValidationError

from ._admin import AccessCalls, AdminCalls, TimeBound, time_param
from ._http import ApiClient, AsyncTransport
from .errors import GraphValidationError, TransportError
from .forks import ForkedRun, ForkFailedResult, ForkGraphVersion
from .models import ConcurrencyModel, CronTrigger, GraphNodeModel, RetryPolicyModel, StoreConfigModel
from .run_diff import RunDiff
from .why import RunWhy, StateWhy

__all__ = ["IDEMPOTENCY_KEY_HEADER", "StateManager", "TriggerState"]

IDEMPOTENCY_KEY_HEADER = "Idempotency-Key"
"""The header that carries `trigger(..., idempotency_key=...)`."""

_URI_ENV = "EXOSPHERE_STATE_MANAGER_URI"
_KEY_ENV = "EXOSPHERE_API_KEY"

M = TypeVar("M", bound=BaseModel)


class TriggerState(BaseModel):
    """A state to seed when triggering a graph the SEED (0.0.2b1) way.

    Attributes:
        identifier: The graph node identifier to start at.
        inputs: The inputs of that state.
    """

    identifier: str
    inputs: dict[str, str]


class StateManager(AdminCalls, AccessCalls):
    """Client for the graph and run endpoints of one namespace.

    Operator calls (runs with filters, a run's progress, retries, states, queues, nodes) come
    from `AdminCalls` (`_admin.py`).

    One connection pool is reused across calls; close it with `aclose()` or use
    `async with StateManager(...) as sm:`.

    Args:
        namespace: The namespace to work in.
        state_manager_uri: The server's base URL; defaults to env `EXOSPHERE_STATE_MANAGER_URI`.
        key: The API key; defaults to env `EXOSPHERE_API_KEY`.
        state_manager_version: The API version prefix.
        transport: An httpx transport (e.g. `httpx.MockTransport`) for tests.

    Raises:
        ValueError: If the URI or the key is neither given nor set in the environment.

    Example:
        ```python
        async with StateManager("demo") as sm:
            await sm.upsert_graph("greet", [GraphNodeModel(...)], secrets={})
            run = await sm.trigger("greet", inputs={"name": "Ada"})
        ```
    """

    def __init__(
        self,
        namespace: str,
        state_manager_uri: str | None = None,
        key: str | None = None,
        state_manager_version: str = "v0",
        *,
        transport: AsyncTransport | None = None,
    ) -> None:
        uri = state_manager_uri if state_manager_uri is not None else os.environ.get(_URI_ENV)
        api_key = key if key is not None else os.environ.get(_KEY_ENV)
        if not uri:
            raise ValueError(f"State manager URI is not set (pass state_manager_uri or set {_URI_ENV})")
        if not api_key:
            raise ValueError(f"API key is not set (pass key or set {_KEY_ENV})")
        self._namespace = namespace
        self._api = ApiClient(
            base_url=uri,
            api_key=api_key,
            namespace=namespace,
            version=state_manager_version,
            transport=transport,
        )

    async def aclose(self) -> None:
        """Close the connection pool (a later call opens a new one)."""
        await self._api.aclose()

    async def __aenter__(self) -> StateManager:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    # ------------------------------------------------------------------ runs

    @overload
    async def trigger(
        self,
        graph_name: str,
        inputs: Mapping[str, str] | None = None,
        store: Mapping[str, str] | None = None,
        start_delay: int = 0,
        *,
        idempotency_key: str | None = None,
        priority: int = 0,
    ) -> dict[str, Any]: ...

    @overload
    async def trigger(
        self,
        graph_name: str,
        state: TriggerState | None = None,
        states: Sequence[TriggerState] | None = None,
        *,
        idempotency_key: str | None = None,
        priority: int = 0,
    ) -> dict[str, Any]: ...

    async def trigger(
        self,
        graph_name: str,
        *args: Any,
        state: TriggerState | None = None,
        states: Sequence[TriggerState] | None = None,
        inputs: Mapping[str, str] | None = None,
        store: Mapping[str, str] | None = None,
        start_delay: int = 0,
        idempotency_key: str | None = None,
        priority: int = 0,
    ) -> dict[str, Any]:
        """Start a run of a graph.

        Two forms, matching the two upstream SDKs:

        - HEAD (0.0.3): `trigger(g, inputs=..., store=..., start_delay=...)` starts the root node
          with `inputs` overriding its template inputs, `store` as the run store, after
          `start_delay` milliseconds. All three are optional.
        - SEED (0.0.2b1): `trigger(g, state=TriggerState(...))` or `trigger(g, states=[...])`
          seeds exactly those states.

        Positional arguments follow whichever upstream order they match, so code written for
        either SDK runs unchanged: `trigger(g, inputs, store, start_delay)` (dicts first) or
        `trigger(g, state, states)`. Type checkers see the two forms as two overloads.

        With an `idempotency_key` (keyword only), repeating the same trigger with the same key
        (e.g. a retry after a timeout) starts no second run: our server answers the first
        answer again, with the same `run_id`. The same key with other arguments is refused
        (`BadRequestError`, 422). Keys are the caller's choice, e.g. a UUID or an order number.

        Args:
            graph_name: The graph to run.
            state: One state to seed (SEED form).
            states: Several states to seed (SEED form).
            inputs: Root node inputs (HEAD form).
            store: Initial run store (HEAD form).
            start_delay: Milliseconds before the run starts (HEAD form).
            idempotency_key: Sent as the `Idempotency-Key` header; see above.
            priority: Seconds (keyword only; our server): every state of the run is claimed as if
                it had been due this much earlier, so a run triggered later with a higher priority
                goes before states already waiting (negative: later). See docs/flow-control.md.

        Returns:
            The server's answer, e.g. `{"status": "CREATED", "run_id": ...}`.

        Raises:
            ValueError: If both or neither of `state`/`states` are used in the SEED form,
                `states` is empty, SEED and HEAD arguments are mixed, or `idempotency_key` is
                empty.
            StateManagerError: If the server refuses (e.g. `NotFoundError`, `BadRequestError`).
            TransportError: If the server cannot be reached.
        """
        named: dict[str, Any] = {
            "state": state,
            "states": states,
            "inputs": inputs,
            "store": store,
            "start_delay": start_delay,
        }
        named.update(_positional("trigger", args, _trigger_order(args)))
        state, states, inputs, store = named["state"], named["states"], named["inputs"], named["store"]
        start_delay = named["start_delay"]
        if state is None and states is None:
            body: dict[str, Any] = {
                "inputs": dict(inputs or {}),
                "store": dict(store or {}),
                "start_delay": start_delay,
            }
        else:
            if inputs is not None or store is not None or start_delay != 0:
                raise ValueError("Use either state/states (SEED form) or inputs/store/start_delay, not both")
            body = {"states": [s.model_dump() for s in _seed_states(state, states)]}
        if idempotency_key is not None and not idempotency_key:
            raise ValueError("idempotency_key should not be empty")
        if priority:
            body["priority"] = int(priority)
        headers = None if idempotency_key is None else {IDEMPOTENCY_KEY_HEADER: idempotency_key}
        path = self._api.path("graph", graph_name, "trigger")
        return await self._api.request_object("POST", path, body=body, headers=headers)

    async def cancel_run(self, run_id: str) -> dict[str, Any]:
        """Cancel a run: its states not yet running are `CANCELLED` and none is created any more.

        A state already running is not interrupted by the server; the runtime running it
        stops its node at its next call about the state (a heartbeat, the secrets read or the
        report), which the server refuses with a 409 whose `code` is `"STATE_CANCELLED"`.
        Cancelling a cancelled run again answers the same way.

        Args:
            run_id: The run to cancel.

        Returns:
            The server's answer: `{"run_id", "status": "CANCELLED", "cancelled_count"}`.

        Raises:
            NotFoundError: If the run does not exist in this namespace.
            ConflictError: If the run already ended (the detail names its status).
            TransportError: If the server cannot be reached.
        """
        return await self._api.request_object("POST", self._api.path("run", run_id, "cancel"))

    async def state_why(self, state_id: str) -> StateWhy:
        """Why a state waits to be claimed, and when it should start (`GET /state/{id}/why`).

        Our server only. The answer says whether it waits, the reason (`delayed`, `no_runtime`,
        `queued`, `concurrency`, `run_concurrency`, `rate_limit`, `join`) in one sentence, the
        predicted start (None when the server cannot say) and what holds it (`blockers`: the
        states holding its node's slots, the runs holding its graph's, the open states below a
        join). A state that does not wait says what it is doing.

        Args:
            state_id: The state's id.

        Returns:
            The state's `StateWhy`.

        Raises:
            NotFoundError: If the state does not exist in this namespace.
            BadRequestError: If `state_id` is not a state id.
            TransportError: If the server cannot be reached.

        Example:
            ```python
            why = await sm.state_why(state_id)
            if why.waiting:
                print(why.reason, why.detail, why.predicted_start, why.blockers)
            ```
        """
        path = self._api.path("state", state_id, "why")
        return _answer(StateWhy, await self._api.request_object("GET", path), f"GET {path}", "a state's why")

    async def run_why(self, run_id: str) -> RunWhy:
        """Why a run's states wait, by node and reason (`GET /run/{id}/why`; our server only).

        Args:
            run_id: The run's id.

        Returns:
            `waiting` (how many of its states wait to be claimed) and `groups`: per node and
            reason, how many, the first one's reason in a sentence, the earliest predicted start
            and what holds the first one. No groups when nothing waits.

        Raises:
            NotFoundError: If the run does not exist in this namespace.
            TransportError: If the server cannot be reached.
        """
        path = self._api.path("run", run_id, "why")
        return _answer(RunWhy, await self._api.request_object("GET", path), f"GET {path}", "a run's why")

    async def diff_runs(self, a: str, b: str) -> RunDiff:
        """Compare two runs of one graph node by node (`GET /run/{a}/diff/{b}`).

        There is one entry per node identifier and fan-out position, in the graph's order. Each
        has its `change` (`same`, `changed`, `only_a`, `only_b`), each run's state there (its
        latest attempt: a retried node or a join made again counts once) and, for `changed`,
        the fields that differ (`status`, `inputs.<field>`, `outputs.<field>`) with both values.

        Args:
            a: Run A's id.
            b: Run B's id.

        Returns:
            The diff; `diff.same` tells whether the runs are the same everywhere and
            `diff.differences()` lists the entries that are not.

        Raises:
            NotFoundError: If either run does not exist in this namespace.
            BadRequestError: If the runs are runs of two different graphs (422).
            TransportError: If the server cannot be reached.

        Example:
            ```python
            diff = await sm.diff_runs(original, fork)
            for node in diff.differences():
                print(node.identifier, node.position, node.change, [f.path for f in node.fields])
            ```
        """
        path = self._api.path("run", a, "diff", b)
        return _answer(RunDiff, await self._api.request_object("GET", path), f"GET {path}", "a run diff")

    async def fork_run(
        self,
        run_id: str,
        from_: str | Sequence[str],
        inputs: Mapping[str, Mapping[str, str]] | None = None,
        store: Mapping[str, str] | None = None,
        graph_version: ForkGraphVersion = "original",
    ) -> ForkedRun:
        """Fork a run that has ended from some of its nodes (`POST /run/{id}/fork`).

        The new run reuses what the original computed above the nodes in `from_`: their states
        are copied as they ended (with `reused_from`, the original state's id) and are not run
        again. The `from_` nodes and everything below them run again, from the reused parents'
        outputs, with `inputs` applied to them. `diff_runs(run_id, fork.run_id)` then shows
        what changed.

        Args:
            run_id: The run to fork; it must have ended (SUCCESS, FAILED or CANCELLED).
            from_: The node identifier(s) to run again, with everything below them.
            inputs: New inputs for nodes in `from_`: identifier -> input field -> value.
            store: Run store values that replace the original's, key by key.
            graph_version: `"original"` (the default) runs the fork on the graph version the
                original ran, even after an upsert; `"current"` on the graph's live version.

        Returns:
            The new run: its `run_id`, `forked_from` (`run_id` and `from_`), how many states
            were `reused` and its `status` (`PENDING`).

        Raises:
            ValueError: If `from_` names no node or `graph_version` is neither `"original"`
                nor `"current"` (nothing is sent).
            NotFoundError: If the run does not exist in this namespace (404).
            ConflictError: If the run has not ended, or the graph version it ran is no longer
                kept (409; the message says to fork onto `"current"`).
            BadRequestError: If a node or input is unknown, an input is for a node not in
                `from_`, or a node that would be reused did not succeed (422; the message
                names it).
            TransportError: If the server cannot be reached.

        Example:
            ```python
            fork = await sm.fork_run(run_id, from_=["draft"], inputs={"draft": {"prompt": "Shorter"}})
            print(fork.run_id, fork.reused)
            ```
        """
        starts = [from_] if isinstance(from_, str) else list(from_)
        if not starts:
            raise ValueError("from_ should name at least one node to fork from")
        _check_graph_version(graph_version)
        body = {
            "from": starts,
            "inputs": {node: dict(fields) for node, fields in (inputs or {}).items()},
            "store": dict(store or {}),
            "graph_version": graph_version,
        }
        path = self._api.path("run", run_id, "fork")
        answer = await self._api.request_object("POST", path, body=body)
        return _answer(ForkedRun, answer, f"POST {path}", "a fork")

    async def fork_failed(
        self,
        graph: str,
        since: TimeBound | None = None,
        until: TimeBound | None = None,
        graph_version: ForkGraphVersion = "current",
        limit: int = 100,
        *,
        idempotency_key: str | None = None,
    ) -> ForkFailedResult:
        """Fork each FAILED run of a graph from the nodes where it failed (`POST /runs/fork-failed`).

        The runs created in the window (`since` to `until`, oldest first, at most `limit`) are
        each forked as `fork_run` would from its failed nodes (its states that failed and were
        not retried), by default on the graph's current version: run last night's failures
        again after a fix. A failed run that cannot be forked (e.g. the current graph no longer
        has its failed node) is listed in `skipped` with the reason.

        With an `idempotency_key`, repeating the same call (e.g. a retry after a timeout)
        forks nothing twice: the server answers the same forks. The same key with another
        window is another request, so repeat it with the same `since` and `until`.

        Args:
            graph: The graph whose FAILED runs to fork.
            since: Only runs created at or after this time: a timezone-aware `datetime` or an
                ISO 8601 string (sent as ISO 8601), or epoch milliseconds.
            until: Only runs created at or before this time, the same way.
            graph_version: `"current"` (the default) or `"original"`, as for `fork_run`.
            limit: At most this many runs (1 to 1000).
            idempotency_key: Sent as the `Idempotency-Key` header; see above.

        Returns:
            `forks` (a `ForkedRun` per failed run forked) and `skipped` (`SkippedFork`s: each
            run's id and the reason).

        Raises:
            ValueError: If a `datetime` has no timezone, `graph_version` is neither
                `"original"` nor `"current"`, or `idempotency_key` is empty (nothing is sent).
            BadRequestError: If a time is malformed (400) or `limit` is out of range (422).
            TransportError: If the server cannot be reached.

        Example:
            ```python
            since = datetime.now(UTC) - timedelta(hours=12)
            result = await sm.fork_failed("research", since=since, idempotency_key="nightly-0107")
            for fork in result.forks:
                print(fork.forked_from.run_id, "->", fork.run_id)
            ```
        """
        _check_graph_version(graph_version)
        if idempotency_key is not None and not idempotency_key:
            raise ValueError("idempotency_key should not be empty")
        body = {
            "graph": graph,
            "since": time_param(since),
            "until": time_param(until),
            "graph_version": graph_version,
            "limit": limit,
        }
        headers = None if idempotency_key is None else {IDEMPOTENCY_KEY_HEADER: idempotency_key}
        path = self._api.path("runs", "fork-failed")
        answer = await self._api.request_object("POST", path, body=body, headers=headers)
        return _answer(ForkFailedResult, answer, f"POST {path}", "a fork-failed answer")

    async def list_runs(self, page: int = 1, size: int = 20) -> dict[str, Any]:
        """One page of the namespace's runs, newest first, with per-status counts.

        Args:
            page: 1-based page number.
            size: Runs per page.

        Returns:
            `{"namespace", "total", "page", "size", "runs": [...]}`.
        """
        if page < 1 or size < 1:
            raise ValueError("page and size should be at least 1")
        return await self._api.list_runs(page, size)

    async def get_run_graph(self, run_id: str) -> dict[str, Any]:
        """The states of one run as a graph: `{"nodes", "edges", "execution_summary", ...}`."""
        return await self._api.get_run_graph(run_id)

    async def list_states(self, run_id: str | None = None) -> dict[str, Any]:
        """The states of the namespace, or of one run when `run_id` is given."""
        return await self._api.list_states(run_id)

    # ------------------------------------------------------------------ graphs

    async def get_graph(self, graph_name: str) -> dict[str, Any]:
        """The stored graph template, with its `validation_status` and `validation_errors`.

        Raises:
            NotFoundError: If the graph does not exist in this namespace.
        """
        return await self._api.get_graph(graph_name)

    @overload
    async def upsert_graph(
        self,
        graph_name: str,
        graph_nodes: Sequence[GraphNodeModel | Mapping[str, Any]],
        secrets: Mapping[str, str],
        retry_policy: RetryPolicyModel | Mapping[str, Any] | None = None,
        store_config: StoreConfigModel | Mapping[str, Any] | None = None,
        triggers: Sequence[CronTrigger | Mapping[str, Any]] | None = None,
        validation_timeout: float = 60,
        polling_interval: float = 1,
        *,
        concurrency: ConcurrencyModel | Mapping[str, Any] | None = None,
    ) -> dict[str, Any]: ...

    @overload
    async def upsert_graph(
        self,
        graph_name: str,
        graph_nodes: Sequence[GraphNodeModel | Mapping[str, Any]],
        secrets: Mapping[str, str],
        validation_timeout: float,
        polling_interval: float = 1,
        *,
        concurrency: ConcurrencyModel | Mapping[str, Any] | None = None,
    ) -> dict[str, Any]: ...

    async def upsert_graph(
        self,
        graph_name: str,
        graph_nodes: Sequence[GraphNodeModel | Mapping[str, Any]],
        secrets: Mapping[str, str],
        *args: Any,
        retry_policy: RetryPolicyModel | Mapping[str, Any] | None = None,
        store_config: StoreConfigModel | Mapping[str, Any] | None = None,
        triggers: Sequence[CronTrigger | Mapping[str, Any]] | None = None,
        validation_timeout: float = 60,
        polling_interval: float = 1,
        concurrency: ConcurrencyModel | Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Create or replace a graph template and wait until the server has validated it.

        After `secrets`, positional arguments follow either upstream order: 0.0.3's
        `(retry_policy, store_config, triggers, validation_timeout, polling_interval)` or
        0.0.2b1's `(validation_timeout, polling_interval)` (a number first). Type checkers see
        the two orders as two overloads.

        Args:
            graph_name: The graph's name.
            graph_nodes: The nodes, as `GraphNodeModel`s or plain dicts of the same shape
                (dicts are validated with `GraphNodeModel` first).
            secrets: Secret values available to the graph's nodes.
            retry_policy: Automatic retry policy, a `RetryPolicyModel` or a dict of its fields;
                the server default when None.
            store_config: Run store configuration, a `StoreConfigModel` or a dict of its
                fields; the server default when None.
            triggers: Cron triggers that start runs on a schedule (`CronTrigger`s or dicts
                like `{"expression": "0 9 * * *"}`).
            validation_timeout: Seconds to wait while the status is `PENDING`.
            polling_interval: Seconds between status checks.
            concurrency: Run concurrency (keyword only; our server): at most `limit` runs of
                this graph RUNNING at once, per value of its `key` (a template of store keys,
                e.g. `"${{ store.tenant }}"`) or in all; the other runs wait PENDING and start
                in order as slots free. A `ConcurrencyModel` or a dict of its fields; sent only
                when set. Nodes take their own limits (`GraphNodeModel.concurrency`,
                `.rate_limit`).

        Returns:
            The graph as last returned by the server, with `validation_status == "VALID"`.

        Raises:
            GraphValidationError: If the graph is not valid, or still PENDING at the timeout.
            BadRequestError: If the server rejects the graph outright (e.g. a cycle, or a
                limit's key naming a store key the graph does not declare; the message names
                the field).
            pydantic.ValidationError: If a dict in `graph_nodes` is not a valid node.
            ValueError: If `retry_policy`, `store_config`, `triggers` or `concurrency` is a dict
                that does not fit its model (the message names the argument and the fields).
        """
        named: dict[str, Any] = {
            "retry_policy": retry_policy,
            "store_config": store_config,
            "triggers": triggers,
            "validation_timeout": validation_timeout,
            "polling_interval": polling_interval,
        }
        seed_order = bool(args) and isinstance(args[0], int | float) and not isinstance(args[0], bool)
        order = ("validation_timeout", "polling_interval") if seed_order else tuple(named)
        named.update(_positional("upsert_graph", args, order))
        retry_policy, store_config, triggers = named["retry_policy"], named["store_config"], named["triggers"]
        validation_timeout, polling_interval = named["validation_timeout"], named["polling_interval"]
        body = _graph_body(graph_nodes, secrets, retry_policy, store_config, triggers, concurrency)
        graph = await self._api.upsert_graph(graph_name, body)
        graph = await self._wait_while_pending(graph_name, graph, validation_timeout, polling_interval)
        status = graph.get("validation_status")
        if status != "VALID":
            errors = graph.get("validation_errors") or []
            kept = " (the graph's previous valid version stays live)" if graph.get("live") is False else ""
            raise GraphValidationError(
                f"Graph validation failed: {status} and errors: {errors}{kept}",
                validation_status=str(status),
                validation_errors=list(errors),
            )
        return graph


def _answer(model: type[M], answer: Any, call: str, what: str) -> M:
    """The server's answer read into `model`; an answer that does not fit is a `TransportError`
    naming the call and the first field at fault."""
    try:
        return model.model_validate(answer)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "(answer)"
        raise TransportError(f"{call}: not {what}: {where}: {first['msg']}") from None


def _check_graph_version(graph_version: str) -> None:
    if graph_version not in ("original", "current"):
        raise ValueError(f'graph_version should be "original" or "current", not {graph_version!r}')


def _trigger_order(args: tuple[Any, ...]) -> tuple[str, ...]:
    """HEAD's order when a dict comes first (or second, after a None); else SEED's."""
    if any(isinstance(arg, Mapping) for arg in args[:2]):
        return ("inputs", "store", "start_delay")
    return ("state", "states")


def _positional(method: str, args: tuple[Any, ...], order: tuple[str, ...]) -> dict[str, Any]:
    """Map positional arguments onto the parameter names of `order`."""
    if len(args) > len(order):
        raise TypeError(f"{method}() takes at most {len(order)} positional arguments here, got {len(args)}")
    return dict(zip(order, args, strict=False))


def _seed_states(state: TriggerState | None, states: Sequence[TriggerState] | None) -> list[TriggerState]:
    if state is not None and states is not None:
        raise ValueError("Only one of state or states must be provided")
    if states is not None and len(states) == 0:
        raise ValueError("States must be a non-empty list")
    return [state] if state is not None else list(states or [])


def _graph_body(
    graph_nodes: Sequence[GraphNodeModel | Mapping[str, Any]],
    secrets: Mapping[str, str],
    retry_policy: RetryPolicyModel | Mapping[str, Any] | None,
    store_config: StoreConfigModel | Mapping[str, Any] | None,
    triggers: Sequence[CronTrigger | Mapping[str, Any]] | None,
    concurrency: ConcurrencyModel | Mapping[str, Any] | None,
) -> dict[str, Any]:
    nodes = [GraphNodeModel.model_validate(node) for node in graph_nodes]
    body: dict[str, Any] = {"secrets": dict(secrets), "nodes": [_node_body(node) for node in nodes]}
    if retry_policy is not None:
        body["retry_policy"] = _as_model(RetryPolicyModel, retry_policy, "retry_policy").model_dump(
            mode="json"
        )
    if store_config is not None:
        body["store_config"] = _as_model(StoreConfigModel, store_config, "store_config").model_dump(
            mode="json"
        )
    if triggers is not None:
        crons = [_as_model(CronTrigger, t, f"triggers[{i}]") for i, t in enumerate(triggers)]
        body["triggers"] = [{"type": "CRON", "value": {"expression": t.expression}} for t in crons]
    if concurrency is not None:  # ours: an upstream server never sees the key
        body["concurrency"] = _as_model(ConcurrencyModel, concurrency, "concurrency").model_dump(mode="json")
    return body


def _as_model(model: type[M], value: M | Mapping[str, Any], argument: str) -> M:
    """`value` itself if it is already a `model`, else a dict validated into one.

    Raises:
        ValueError: Naming `argument` and every field that does not fit or is unknown, e.g.
            `Invalid retry_policy: max_retries: Input should be greater than or equal to 0`.
    """
    if isinstance(value, model):
        return value
    if not isinstance(value, Mapping):
        raise ValueError(
            f"Invalid {argument}: expected a {model.__name__} or a dict of its fields, "
            f"got {type(value).__name__}"
        )
    unknown = sorted(str(key) for key in value if key not in model.model_fields)
    if unknown:  # a typo would otherwise be dropped silently, and the server default used
        known = ", ".join(model.model_fields)
        raise ValueError(f"Invalid {argument}: unknown field(s) {', '.join(unknown)} (known: {known})")
    try:
        return model.model_validate(dict(value))
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(part) for part in error['loc']) or '(value)'}: {error['msg']}"
            for error in exc.errors()
        )
        raise ValueError(f"Invalid {argument}: {problems}") from None


_SENT_WHEN_SET = ("timeout_seconds", "concurrency", "rate_limit")
"""Node fields only our server knows: left out of the body when unset."""


def _node_body(node: GraphNodeModel) -> dict[str, Any]:
    """The node as sent: our own fields only when set, so an upstream server sees its own shape."""
    unset = {name for name in _SENT_WHEN_SET if getattr(node, name) is None}
    return node.model_dump(mode="json", exclude=unset or None)
