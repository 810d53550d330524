"""`Runtime`: registers nodes, claims states from the state manager, runs them, reports back.

```
run()
 ├─ register the nodes                                   PUT /nodes/
 ├─ start the heartbeat thread and the loop watchdog
 ├─ until shutdown() is requested:
 │    wait for a free worker slot
 │    claim min(batch_size, free slots) states           POST /states/enqueue (long-poll)
 │    one task per state (see _worker.py):
 │      inputs ─► secrets ─► execute ─► report           heartbeats (another thread) meanwhile
 └─ drain: running nodes get the grace period, then are cancelled; stop the threads, close the client
```

Threads, besides the event loop's:

- node threads (`_threads.py`): at most `workers`, running the nodes declared `def execute`;
- the heartbeat thread (`_heartbeats.py`): keeps the leases of every running state with its own
  synchronous client, so a node that blocks the event loop does not lose its lease; a 409 is
  handed back to the loop (`call_soon_threadsafe`), which stops the node;
- the watchdog (`_watchdog.py`): warns once per episode when the event loop is blocked longer
  than `blocked_loop_warning`, naming the node.

Under `start()`, the first SIGINT (Ctrl-C) or SIGTERM starts the drain and logs one line; a
second one cuts it short: running nodes are cancelled at once and reported errored.

Logging goes to the `exospherehost.*` loggers (`logging.getLogger(__name__)` in each module): one
line when the runtime is connected and serving, one per finished state. When it starts serving
and nothing is configured (neither the root logger nor `exospherehost` has a handler), the
runtime attaches one stderr handler to the `exospherehost` logger, at INFO or
`EXOSPHERE_LOG_LEVEL` (see `_logging.py`); it never touches the root logger.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import os
import signal
import time
from collections.abc import AsyncIterator, Awaitable, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any

from ._execution import Errored, Executed, Outcome, Pruned, Requeued
from ._heartbeats import HeartbeatThread
from ._http import ApiClient, AsyncTransport
from ._logging import ensure_default_logging
from ._sync_http import SyncHeartbeatClient
from ._threads import NodeThreads
from ._watchdog import LoopWatchdog
from ._worker import CANCEL_REPORT_TIMEOUT, StateWorker
from .errors import ExosphereError
from .node import BaseNode, registration_entry, validate_nodes

__all__ = ["BatchResult", "Runtime"]

logger = logging.getLogger(__name__)

URI_ENV = "EXOSPHERE_STATE_MANAGER_URI"
KEY_ENV = "EXOSPHERE_API_KEY"
MAX_LONG_POLL_MS = 30_000

_POLL_BACKOFF_MIN = 0.05
_POLL_BACKOFF_CAP = 30.0
_CLAIM_DRAIN_SECONDS = 0.5


class _Phase(enum.Enum):
    IDLE = "idle"
    RUNNING = "running"
    STOPPED = "stopped"


@dataclass(frozen=True)
class BatchResult:
    """What `Runtime.run_once()` did with one batch.

    Attributes:
        claimed: States claimed from the server.
        executed: States whose node returned (reported as executed).
        errored: States reported as errored (node exception, bad inputs or secrets, unknown node).
        pruned: States whose node raised `PruneSignal`.
        requeued: States whose node raised `ReQueueAfterSignal`.
        unreported: Outcomes that could not be reported (logged; the server's lease recovers them),
            and states the server ended while they ran (run cancelled, node timed out).
    """

    claimed: int = 0
    executed: int = 0
    errored: int = 0
    pruned: int = 0
    requeued: int = 0
    unreported: int = 0


class Runtime:
    """Serves a set of nodes: claims their states from the state manager and runs them.

    Args:
        namespace: The namespace the nodes are registered in.
        name: The runtime's name, shown by the server.
        nodes: The `BaseNode` subclasses to serve; a node's name is its class name.
        state_manager_uri: The server's base URL; defaults to env `EXOSPHERE_STATE_MANAGER_URI`.
        key: The API key; defaults to env `EXOSPHERE_API_KEY`.
        batch_size: The most states claimed in one request.
        workers: The most nodes running at once. The runtime never claims more states than it
            has free workers, so nothing claimed waits in a local queue.
        state_manage_version: The API version prefix (upstream's spelling is kept).
        poll_interval: Seconds between polls that found no work (also the base of the error
            back-off).
        long_poll_ms: How long the server may hold a poll open waiting for work (0 to 30000);
            0 disables long-polling.
        heartbeat_interval: Seconds between heartbeats that keep the lease of a running state
            (fewer when the lease is short: at least three per lease); None disables heartbeats.
            Only states the server leased are heartbeated. They are sent from a thread of their
            own, so a node blocking the event loop does not stop them.
        report_retries: How many times a report is retried after a network error or a 5xx
            (back-off from 0.2 s doubling to 10 s: the default rides out one to one and a half minutes
            of server downtime, e.g. a restart; after that the server's lease re-delivers the work).
        shutdown_grace_period: Default seconds `shutdown()` (or a first Ctrl-C / SIGTERM under
            `start()`) lets running nodes finish before cancelling them.
        blocked_loop_warning: Seconds the event loop may be blocked (by a node's code that does
            not await, e.g. `time.sleep` or CPU work inside `async def execute`) before the
            runtime logs a warning naming the node (one per blocking episode); None disables
            the check.
        transport: An httpx transport (e.g. `httpx.MockTransport`) for tests.

    Raises:
        ValueError: If an argument is invalid, the URI or key is missing, or a node class
            breaks the node rules (the message lists every problem).

    Example:
        ```python
        Runtime(namespace="demo", name="worker-1", nodes=[Greet]).start()
        ```
    """

    def __init__(
        self,
        namespace: str,
        name: str,
        nodes: Sequence[type[BaseNode]],
        state_manager_uri: str | None = None,
        key: str | None = None,
        batch_size: int = 16,
        workers: int = 4,
        state_manage_version: str = "v0",
        poll_interval: float = 1,
        *,
        long_poll_ms: int = 20_000,
        heartbeat_interval: float | None = 30.0,
        report_retries: int = 15,
        shutdown_grace_period: float = 30.0,
        blocked_loop_warning: float | None = 1.0,
        transport: AsyncTransport | None = None,
    ) -> None:
        uri = state_manager_uri if state_manager_uri is not None else os.environ.get(URI_ENV)
        api_key = key if key is not None else os.environ.get(KEY_ENV)
        _check_arguments(batch_size, workers, uri, api_key)
        _check_keywords(
            poll_interval, long_poll_ms, heartbeat_interval, report_retries, shutdown_grace_period
        )
        if blocked_loop_warning is not None and blocked_loop_warning <= 0:
            raise ValueError("blocked_loop_warning should be positive (or None to disable the warning)")
        errors = validate_nodes(nodes)
        if errors:
            raise ValueError("Following errors while validating nodes: " + "\n".join(errors))
        assert uri is not None and api_key is not None  # checked above; narrows the types

        self._namespace = namespace
        self._name = name
        self._nodes: dict[str, type[BaseNode]] = {node.__name__: node for node in nodes}
        self._batch_size = batch_size
        self._workers = workers
        self._poll_interval = float(poll_interval)
        self._long_poll_ms = long_poll_ms
        self._grace_period = shutdown_grace_period
        self._uri = uri
        self._api = ApiClient(
            base_url=uri,
            api_key=api_key,
            namespace=namespace,
            version=state_manage_version,
            transport=transport,
        )
        self._heartbeat_interval = heartbeat_interval
        self._heartbeat_client = SyncHeartbeatClient(
            base_url=uri,
            api_key=api_key,
            namespace=namespace,
            version=state_manage_version,
            transport=transport,
        )
        self._blocked_loop_warning = blocked_loop_warning
        self._threads = NodeThreads(workers, name=f"exosphere-node-{name}")
        self._worker = StateWorker(
            self._api,
            self._nodes,
            runtime_name=name,
            threads=self._threads,
            report_retries=report_retries,
        )
        self._phase = _Phase.IDLE
        self._registered = False
        self._in_flight: set[asyncio.Task[Any]] = set()
        # A runtime runs at most once, so these events only ever serve one event loop.
        self._stop = asyncio.Event()
        self._slot_freed = asyncio.Event()
        self._stop_now = asyncio.Event()
        self._finished = asyncio.Event()
        self._background: asyncio.Task[None] | None = None

    # ------------------------------------------------------------------ lifecycle

    async def run(self) -> None:
        """Register the nodes, then claim and run states until `shutdown()` is called.

        Raises:
            ExosphereError: If registration fails (e.g. `AuthenticationError` for a wrong key,
                `ServerUnreachableError` for a server that is down); the runtime stays idle, its
                connection closed, and `run()` may be called again. After registration,
                errors are logged and retried: only `shutdown()` or cancellation ends the loop.
            RuntimeError: If the runtime is already running or was shut down.
        """
        self._check_phase("run()")
        ensure_default_logging()
        await self._ensure_registered()
        if self._enter_running():
            await self._serve()

    async def _serve(self) -> None:
        try:
            async with self._helper_threads():
                logger.info(
                    "connected to the state manager at %s: runtime %s serving namespace %s, nodes %s, "
                    "%d workers",
                    self._uri,
                    self._name,
                    self._namespace,
                    ", ".join(sorted(self._nodes)),
                    self._workers,
                )
                try:
                    await self._poll_loop()
                finally:
                    await self._drain()
        finally:
            await self._api.aclose()
            self._threads.close()
            self._phase = _Phase.STOPPED
            self._finished.set()
            logger.info("runtime %s/%s stopped", self._namespace, self._name)

    @contextlib.asynccontextmanager
    async def _helper_threads(self) -> AsyncIterator[None]:
        """The heartbeat thread and the loop watchdog, for as long as states are processed."""
        loop = asyncio.get_running_loop()
        heartbeats = None
        if self._heartbeat_interval is not None:
            heartbeats = HeartbeatThread(self._heartbeat_client, self._heartbeat_interval)
            heartbeats.start(loop, self._name)
        watchdog = None
        if self._blocked_loop_warning is not None:
            watchdog = LoopWatchdog(self._blocked_loop_warning, self._describe_loop_blocker)
            watchdog.start(loop, self._name)
        self._worker.heartbeats = heartbeats
        try:
            yield
        finally:
            self._worker.heartbeats = None
            if watchdog is not None:
                watchdog.stop()
            if heartbeats is not None:
                await heartbeats.close()

    def _describe_loop_blocker(self, task: asyncio.Task[Any] | None) -> str:
        """Who is blocking the event loop (called from the watchdog thread while it is blocked)."""
        running = self._worker.running_on_loop.copy()
        blocker = running.get(task) if task is not None else None
        if blocker is not None:
            return f"node {blocker.node_name} (state {blocker.state_id})"
        nodes = ", ".join(f"{node.node_name} (state {node.state_id})" for node in running.values())
        where = f"task {task.get_name()!r}" if task is not None else "code outside any task"
        return f"{where} (async nodes running: {nodes or 'none'})"

    def start(self) -> asyncio.Task[None] | None:
        """Run until stopped: the blocking entry point for a worker process.

        Outside an event loop this blocks in `asyncio.run()`. The first SIGINT (Ctrl-C) or
        SIGTERM stops claiming and lets running nodes finish within the shutdown grace period
        (one warning says so); a second one cancels them at once and reports them errored, so
        their retry policy runs them again. Either way `start()` then returns normally, without
        a traceback (a process that ends there exits with status 0). A runtime that cannot start
        (registration fails: the server is unreachable, refuses the key, the URL is not http(s))
        logs one line, `runtime <namespace>/<name> could not start: <reason>`, and raises
        `SystemExit(1)`: the process exits with status 1, without a traceback.

        Inside a running loop it schedules `run()` and returns the task instead (keep a reference
        to it; a failed registration is that task's exception); signals are then the
        application's business.
        """
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            loop = None
        if loop is not None:
            return loop.create_task(self.run())
        try:
            # A KeyboardInterrupt can only come from a Ctrl-C before our handlers are installed:
            # asyncio's own handler then cancelled `run()`, which drained like a shutdown.
            with contextlib.suppress(KeyboardInterrupt):
                asyncio.run(self._run_with_signal_handlers())
        except ExosphereError as exc:  # only registration raises: after it, errors are retried
            logger.error("runtime %s/%s could not start: %s", self._namespace, self._name, exc)
            raise SystemExit(1) from None
        return None

    async def shutdown(self, grace_period: float | None = None) -> None:
        """Stop claiming work, let running nodes finish, then close the connection.

        Idempotent. Nodes still running after the grace period are cancelled and reported as
        errored.

        Args:
            grace_period: Seconds to wait for running nodes; defaults to the runtime's
                `shutdown_grace_period`.
        """
        self._request_stop(grace_period)
        if self._phase is _Phase.RUNNING:
            if asyncio.current_task() not in self._in_flight:  # a node may call shutdown() itself
                await self._finished.wait()
            return
        self._phase = _Phase.STOPPED
        self._threads.close()
        await self._api.aclose()

    async def __aenter__(self) -> Runtime:
        """Register the nodes, then run in a background task until the block exits."""
        self._check_phase("async with")
        ensure_default_logging()
        await self._ensure_registered()
        if self._enter_running():
            self._background = asyncio.create_task(self._serve(), name=f"exosphere-runtime-{self._name}")
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.shutdown()
        if self._background is not None:
            await self._background

    async def run_once(self) -> BatchResult:
        """Claim one batch without long-polling, run it to the end, and report every outcome.

        Meant for tests and scripts (arq's burst mode): registers first if needed. Like the
        loop of `run()`, it claims at most `min(batch_size, workers)` states, so all of them
        run at once.

        Returns:
            The counts of what happened to the batch.

        Raises:
            ExosphereError: If registration or the claim fails.
            RuntimeError: If `run()` is active or the runtime was shut down.
        """
        self._check_phase("run_once()")
        await self._ensure_registered()
        states, received_at = await self._claim(min(self._batch_size, self._workers), 0)
        if not states:
            return BatchResult()
        async with self._helper_threads():
            results = await asyncio.gather(*(self._worker.process(state, received_at) for state in states))
        return _summarise(len(states), results)

    # ------------------------------------------------------------------ lifecycle helpers

    def _check_phase(self, what: str) -> None:
        if self._phase is not _Phase.IDLE:
            raise RuntimeError(f"{what} needs an idle runtime; this one is {self._phase.value}")

    def _enter_running(self) -> bool:
        """Switch to RUNNING; False if `shutdown()` was called while registering."""
        if self._phase is _Phase.STOPPED:
            return False
        self._check_phase("run()")
        self._phase = _Phase.RUNNING
        return True

    def _request_stop(self, grace_period: float | None) -> None:
        if grace_period is not None:
            self._grace_period = grace_period
        self._stop.set()

    async def _run_with_signal_handlers(self) -> None:
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError):  # Windows, or not the main thread
                loop.add_signal_handler(signum, self._on_stop_signal)
        await self.run()

    def _on_stop_signal(self) -> None:
        """SIGINT / SIGTERM under `start()`: the first drains, the second stops now, more are ignored."""
        running = _count_nodes(len(self._in_flight))
        if not self._stop.is_set():
            self._request_stop(None)
            if self._in_flight:
                logger.warning(
                    "Stopping: draining %s (up to %g s); press Ctrl-C again to stop now",
                    running,
                    self._grace_period,
                )
            else:
                logger.warning("Stopping: no running nodes")
        elif not self._stop_now.is_set():
            self._stop_now.set()
            if self._in_flight:
                logger.warning("Stopping now: cancelling %s (each is reported errored)", running)

    async def _ensure_registered(self) -> None:
        if self._registered:
            return
        entries = [registration_entry(node, self._namespace) for node in self._nodes.values()]
        try:
            await self._api.register_nodes(self._name, self._namespace, entries)
        except BaseException:
            await self._api.aclose()  # a runtime that did not start holds no connection
            raise
        self._registered = True

    async def _drain(self) -> None:
        """Give running nodes the grace period (cut short by `_stop_now`), then cancel the rest;
        each cancelled node reports its state errored."""
        if self._in_flight and not self._stop_now.is_set():
            logger.info("waiting up to %ss for %d running node(s)", self._grace_period, len(self._in_flight))
            finished = asyncio.wait(set(self._in_flight), timeout=self._grace_period)
            await _first_of(finished, self._stop_now.wait())
        pending = {task for task in self._in_flight if not task.done()}
        for task in pending:
            task.cancel()
        if pending:
            await asyncio.wait(pending, timeout=CANCEL_REPORT_TIMEOUT + 1)

    # ------------------------------------------------------------------ polling

    async def _poll_loop(self) -> None:
        failures = 0
        while not self._stop.is_set():
            free = await self._wait_for_free_slots()
            if free == 0:
                break
            started = asyncio.get_running_loop().time()
            try:
                states, received_at = await self._claim_unless_stopped(free)
            except Exception as exc:
                failures += 1
                base = max(self._poll_interval, _POLL_BACKOFF_MIN)
                delay = min(_POLL_BACKOFF_CAP, base * 2 ** (failures - 1))
                _log_poll_failure(exc, delay)
                await self._sleep_unless_stopped(delay)
                continue
            failures = 0
            for state in states:
                self._start_state(state, received_at)
            if not states:
                # A long-poll that came back empty at once means the server does not hold polls.
                elapsed = asyncio.get_running_loop().time() - started
                await self._sleep_unless_stopped(self._poll_interval - elapsed)

    async def _wait_for_free_slots(self) -> int:
        while len(self._in_flight) >= self._workers and not self._stop.is_set():
            self._slot_freed.clear()
            await _first_of(self._slot_freed.wait(), self._stop.wait())
        if self._stop.is_set():
            return 0
        return min(self._batch_size, self._workers - len(self._in_flight))

    async def _claim(self, count: int, wait_ms: int) -> tuple[list[dict[str, Any]], float]:
        """Claim up to `count` states; also returns when the answer arrived (`time.monotonic()`),
        from which the workers measure the states' leases."""
        states = await self._api.enqueue(list(self._nodes), count, wait_ms)
        return states, time.monotonic()

    async def _claim_unless_stopped(self, count: int) -> tuple[list[dict[str, Any]], float]:
        claim = asyncio.create_task(self._claim(count, self._long_poll_ms))
        stop = asyncio.create_task(self._stop.wait())
        try:
            await asyncio.wait({claim, stop}, return_when=asyncio.FIRST_COMPLETED)
            if not claim.done():
                # Stopping mid-request. A server that answers at once gets a moment to deliver
                # what it claimed, so that work runs here; a held long-poll is abandoned (the
                # server claims only when it answers, and leases recover a lost answer).
                await asyncio.wait({claim}, timeout=_CLAIM_DRAIN_SECONDS)
            return claim.result() if claim.done() else ([], time.monotonic())
        finally:
            for task in (claim, stop):
                task.cancel()
            await asyncio.wait({claim, stop})

    async def _sleep_unless_stopped(self, seconds: float) -> None:
        if seconds <= 0:
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stop.wait(), seconds)

    def _start_state(self, state: dict[str, Any], received_at: float) -> None:
        name = f"exosphere-state-{state.get('state_id')}"
        task = asyncio.create_task(self._worker.process(state, received_at), name=name)
        self._in_flight.add(task)
        task.add_done_callback(self._on_state_done)

    def _on_state_done(self, task: asyncio.Task[Any]) -> None:
        self._in_flight.discard(task)
        self._slot_freed.set()


async def _first_of(*awaitables: Awaitable[Any]) -> None:
    """Wait until any of the awaitables completes; cancel the others."""
    tasks = [asyncio.ensure_future(aw) for aw in awaitables]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.wait(tasks)


def _count_nodes(count: int) -> str:
    return f"{count} running node" + ("" if count == 1 else "s")


def _check_arguments(batch_size: int, workers: int, uri: str | None, key: str | None) -> None:
    if batch_size < 1:
        raise ValueError("Batch size should be at least 1")
    if workers < 1:
        raise ValueError("Workers should be at least 1")
    if not uri:
        raise ValueError(f"State manager URI is not set (pass state_manager_uri or set {URI_ENV})")
    if not key:
        raise ValueError(f"API key is not set (pass key or set {KEY_ENV})")


def _check_keywords(
    poll_interval: float,
    long_poll_ms: int,
    heartbeat_interval: float | None,
    report_retries: int,
    grace_period: float,
) -> None:
    if poll_interval < 0:
        raise ValueError("Poll interval should not be negative")
    if not 0 <= long_poll_ms <= MAX_LONG_POLL_MS:
        raise ValueError(f"long_poll_ms should be between 0 and {MAX_LONG_POLL_MS}")
    if heartbeat_interval is not None and heartbeat_interval <= 0:
        raise ValueError("Heartbeat interval should be positive (or None to disable heartbeats)")
    if report_retries < 0:
        raise ValueError("Report retries should not be negative")
    if grace_period < 0:
        raise ValueError("Shutdown grace period should not be negative")


def _log_poll_failure(exc: Exception, delay: float) -> None:
    if isinstance(exc, ExosphereError):
        logger.warning("claiming states failed, retrying in %.2fs: %s", delay, exc)
    else:
        logger.exception("claiming states failed unexpectedly, retrying in %.2fs", delay)


def _summarise(claimed: int, results: Sequence[tuple[Outcome | None, bool]]) -> BatchResult:
    counts = dict.fromkeys(("executed", "errored", "pruned", "requeued"), 0)
    names = {Executed: "executed", Errored: "errored", Pruned: "pruned", Requeued: "requeued"}
    unreported = 0
    for outcome, reported in results:
        if outcome is not None:
            counts[names[type(outcome)]] += 1
        unreported += not reported
    return BatchResult(claimed=claimed, unreported=unreported, **counts)
