"""Processing one claimed state: execute it (with heartbeats), then report the outcome.

Every call about the state carries its claim token (see `_http.py`). Every report is retried
with exponential back-off after a network error or a 5xx; a 409 (lease lost, claim superseded,
already reported) or another 4xx is logged and dropped. A report the server refuses as too large
(413), or one that cannot even be built or sent (e.g. a `TypeError` while encoding it), is
replaced by one errored report, so the state fails visibly instead of waiting out its lease.
Nothing here raises into the runtime: a failure costs one state, never the process.

A node with `async def execute` runs in its own task on the event loop; one with a plain
`def execute` runs in one of the runtime's worker threads (`_threads.py`). While it runs, the
runtime's heartbeat thread (`_heartbeats.py`) keeps the state's lease, even if the event loop
is blocked.

The server may end an attempt while its node runs: its run was cancelled, or the node's
`timeout_seconds` passed. It then answers the state's heartbeat, secrets read or report with a
409 whose `code` is `STATE_CANCELLED` / `STATE_TIMED_OUT`; a state claimed with a `timeout_ms`
is also stopped here when that time has passed. Either way the node's task is cancelled, one
line is logged, and nothing more is sent about the state (the server has already decided). A
`def execute` cannot be interrupted: its worker slot stays taken until it returns (its result
is dropped), so that the runtime never runs more node code at once than it has workers.

Every state ends with one log line: node, state id, outcome and duration (INFO for executed,
pruned and requeued; WARNING, or ERROR for a bug in the node, for errored, cancelled and timed out).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Awaitable, Callable, Mapping
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any, TypeGuard, TypeVar

from ._execution import Errored, Executed, Outcome, Pruned, Requeued, execute_state
from ._heartbeats import Beat, HeartbeatThread, lease_deadline, next_heartbeat_in
from ._http import ApiClient
from ._threads import NodeThreads
from .errors import (
    STATE_CANCELLED,
    STATE_TIMED_OUT,
    ConflictError,
    ExosphereError,
    PayloadTooLargeError,
    ServerError,
    TransportError,
    format_detail,
)
from .node import BaseNode, is_sync_node

__all__ = ["CANCEL_REPORT_TIMEOUT", "StateWorker", "lease_deadline", "next_heartbeat_in", "timeout_deadline"]

logger = logging.getLogger(__name__)

T = TypeVar("T")

CANCEL_REPORT_TIMEOUT = 5.0
"""Seconds allowed for the one errored report of a node cancelled at shutdown."""

_REPORT_BACKOFF_BASE = 0.2
_REPORT_BACKOFF_CAP = 10.0


@dataclass(frozen=True)
class _Claim:
    """What the worker keeps about one claimed state."""

    state_id: str
    node_name: Any
    token: str | None
    lease_deadline: float | None
    """When the lease ends, on the `time.monotonic()` clock; None when the state has no lease."""
    timeout_deadline: float | None = None
    """When the node's timeout passes, on the `time.monotonic()` clock; None: no timeout."""


@dataclass(frozen=True)
class RunningNode:
    """A node running on the event loop, as the blocked-loop warning names it."""

    node_name: str
    state_id: str


_ENDINGS: dict[str, tuple[str, str]] = {
    STATE_CANCELLED: ("cancelled", "its run was cancelled"),
    STATE_TIMED_OUT: ("timed out", "the node's timeout passed (the server failed the attempt)"),
}
"""The 409 codes with which the server ends an attempt, and how the log line puts them."""


class _Attempt:
    """The execution of one claimed state, which the server may end before the node returns."""

    def __init__(self, claim: _Claim, started: float, threads: NodeThreads) -> None:
        self.claim = claim
        self.started = started
        self.execution: asyncio.Task[Outcome] | None = None
        self.thread: Future[Any] | None = None
        """The worker thread's future of a `def execute` node, once submitted."""
        self.ended: str | None = None
        """The code that ended the attempt (`STATE_CANCELLED` / `STATE_TIMED_OUT`), if any."""
        self._threads = threads

    async def run_in_thread(self, fn: Callable[[], T]) -> T:
        """Run a `def execute` on a worker thread, remembering it (see `wait_for_thread`)."""
        future = self.thread = self._threads.submit(fn)
        return await asyncio.wrap_future(future)

    def end(self, code: str) -> None:
        """Stop the node (unless called from its own task) and log why; only the first call acts."""
        if self.ended is not None:
            return
        self.ended = code
        _log_ended(self.claim, code, time.monotonic() - self.started, self.thread_running())
        execution = self.execution
        if execution is not None and not execution.done() and execution is not asyncio.current_task():
            execution.cancel()

    def thread_running(self) -> bool:
        return self.thread is not None and not self.thread.done()

    async def wait_for_thread(self) -> None:
        """A `def execute` cannot be interrupted: wait until it returns (its result is dropped)."""
        thread = self.thread
        if thread is not None and not thread.done():
            with contextlib.suppress(Exception):
                await asyncio.wrap_future(thread)
            logger.debug("state %s: the stopped node's thread has returned", self.claim.state_id)

    def on_heartbeat_conflict(self, code: str | None) -> None:
        """A heartbeat got a 409 (called on the event loop by the heartbeat thread)."""
        if code in _ENDINGS:
            self.end(code)
        elif self.ended is None:
            logger.warning(
                "state %s: lease lost, heartbeats stopped (the work may run elsewhere)", self.claim.state_id
            )


class StateWorker:
    """Runs claimed states through their nodes and reports the outcomes."""

    def __init__(
        self,
        api: ApiClient,
        nodes: dict[str, type[BaseNode]],
        *,
        runtime_name: str,
        threads: NodeThreads,
        report_retries: int,
    ) -> None:
        self._api = api
        self._nodes = nodes
        self._runtime_name = runtime_name
        self._threads = threads
        self._report_retries = report_retries
        self.heartbeats: HeartbeatThread | None = None
        """Set by the runtime while it serves (None: no heartbeats)."""
        self.running_on_loop: dict[asyncio.Task[Any], RunningNode] = {}
        """The tasks of the `async def execute` nodes running now (read by the loop watchdog)."""

    async def process(self, state: dict[str, Any], received_at: float) -> tuple[Outcome | None, bool]:
        """Run one claimed state and report it.

        Args:
            state: The state as the enqueue answer gave it.
            received_at: `time.monotonic()` when the enqueue answer arrived.

        Returns:
            The outcome reported (an `Errored` that replaced a refused report, if any) and
            whether the report was accepted.
        """
        state_id = state.get("state_id")
        if not isinstance(state_id, str):
            logger.error("ignoring a claimed state without a state_id: %r", state)
            return None, False
        token = state.get("claim_token")
        claim = _Claim(
            state_id=state_id,
            node_name=state.get("node_name"),
            token=token if isinstance(token, str) else None,
            lease_deadline=lease_deadline(state, received_at, time.time()),
            timeout_deadline=timeout_deadline(state, received_at),
        )
        started = time.monotonic()
        try:
            outcome = await self._execute(claim, state.get("inputs"), started)
            if outcome is None:  # the server ended the attempt; logged, nothing to report
                return None, False
            _log_outcome(claim, outcome, time.monotonic() - started)
            return await self._report(claim, outcome)
        except Exception:  # a bug here must not kill the runtime
            logger.exception("state %s: unexpected failure in the runtime", state_id)
            return None, False

    async def _execute(self, claim: _Claim, inputs: Any, started: float) -> Outcome | None:
        """Run the node in its own task, with heartbeats and its timeout.

        Returns None when the server ended the attempt (already logged). Cancelled itself (at
        shutdown), it cancels the node, reports the state errored and re-raises.
        """
        node = self._nodes.get(str(claim.node_name))
        if node is None:
            return Errored(f"Runtime {self._runtime_name} has no node named {claim.node_name!r}")
        attempt = _Attempt(claim, started, self._threads)

        async def load_secrets() -> dict[str, Any]:
            token = claim.token
            try:
                return await self._retrying(lambda: self._api.get_secrets(claim.state_id, claim_token=token))
            except ConflictError as exc:
                if code := _ending_code(exc):
                    attempt.end(code)
                raise

        execution = attempt.execution = asyncio.create_task(
            execute_state(node, inputs, load_secrets, attempt.run_in_thread)
        )
        if not is_sync_node(node):
            self.running_on_loop[execution] = RunningNode(node.__name__, claim.state_id)
        beat = self._start_heartbeats(attempt)
        timer = None
        if claim.timeout_deadline is not None:
            delay = claim.timeout_deadline - time.monotonic()
            timer = asyncio.get_running_loop().call_later(delay, attempt.end, STATE_TIMED_OUT)
        try:
            await asyncio.wait({execution})
        except asyncio.CancelledError:
            execution.cancel()
            await asyncio.wait({execution})
            if attempt.ended is None:
                await self._report_cancelled(claim, started)
            raise
        finally:
            self.running_on_loop.pop(execution, None)
            if timer is not None:
                timer.cancel()
            if beat is not None and self.heartbeats is not None:
                await self.heartbeats.remove(beat)
        if attempt.ended is not None:
            await attempt.wait_for_thread()
            return None
        if execution.cancelled():  # the node cancelled itself (nobody here asked it to)
            return Errored(f"Node {node.__name__} was cancelled")
        return execution.result()

    # ------------------------------------------------------------------ reports

    async def _report(self, claim: _Claim, outcome: Outcome) -> tuple[Outcome | None, bool]:
        try:
            await self._retrying(self._report_call(claim, outcome))
        except Exception as exc:
            if code := _ending_code(exc):
                _log_ended(claim, code)
                return None, False
            replacement = _replacement_for_refused_report(claim, outcome, exc)
            if replacement is None:
                return outcome, False
            return replacement, await self._report_replacement(claim, replacement)
        logger.debug("state %s: reported %s", claim.state_id, _kind(outcome))
        return outcome, True

    async def _report_replacement(self, claim: _Claim, errored: Errored) -> bool:
        """The one errored report sent instead of a refused one; its own failure is only logged."""
        try:
            await self._retrying(self._report_call(claim, errored))
        except Exception as exc:
            logger.error("state %s: could not report errored either: %s", claim.state_id, exc)
            return False
        logger.debug("state %s: reported errored", claim.state_id)
        return True

    def _report_call(self, claim: _Claim, outcome: Outcome) -> Callable[[], Awaitable[Any]]:
        state_id, token = claim.state_id, claim.token
        if isinstance(outcome, Executed):
            return lambda: self._api.executed(state_id, outcome.outputs, claim_token=token)
        if isinstance(outcome, Pruned):
            return lambda: self._api.prune(state_id, outcome.data, claim_token=token)
        if isinstance(outcome, Requeued):
            return lambda: self._api.requeue_after(state_id, outcome.delay_ms, claim_token=token)
        return lambda: self._api.errored(state_id, outcome.error, claim_token=token, details=outcome.details)

    async def _report_cancelled(self, claim: _Claim, started: float) -> None:
        """Best effort, one attempt: the node was cancelled at shutdown."""
        message = f"Cancelled: runtime {self._runtime_name} shut down before the node finished"
        _log_outcome(claim, Errored(message), time.monotonic() - started)
        try:
            await asyncio.wait_for(
                self._api.errored(claim.state_id, message, claim_token=claim.token), CANCEL_REPORT_TIMEOUT
            )
        except (ExosphereError, TimeoutError) as exc:
            if code := _ending_code(exc):
                _log_ended(claim, code)
            else:
                logger.warning("state %s: could not report the cancellation: %s", claim.state_id, exc)

    async def _retrying(self, call: Callable[[], Awaitable[T]]) -> T:
        """Await `call()`, retrying network errors and 5xx with exponential back-off."""
        attempt = 0
        while True:
            try:
                return await call()
            except (TransportError, ServerError) as exc:
                if attempt >= self._report_retries:
                    raise
                delay = min(_REPORT_BACKOFF_CAP, _REPORT_BACKOFF_BASE * 2**attempt) * random.uniform(0.5, 1.0)
                attempt += 1
                logger.warning(
                    "retrying in %.2fs (attempt %d/%d): %s", delay, attempt, self._report_retries, exc
                )
                await asyncio.sleep(delay)

    # ------------------------------------------------------------------ heartbeats

    def _start_heartbeats(self, attempt: _Attempt) -> Beat | None:
        # Only a leased state needs heartbeats; a server without leases (upstream) sends none.
        deadline = attempt.claim.lease_deadline
        if self.heartbeats is None or deadline is None:
            return None
        claim = attempt.claim
        return self.heartbeats.add(claim.state_id, claim.token, deadline, attempt.on_heartbeat_conflict)


def timeout_deadline(state: Mapping[str, Any], received_at: float) -> float | None:
    """When a claimed state's node must be stopped, on the clock `received_at` was read from.

    `received_at + timeout_ms` (in seconds): `timeout_ms` is the time the server left until the
    node's deadline when it answered. None when the state has no `timeout_ms` (no timeout, or an
    upstream server).
    """
    timeout_ms = state.get("timeout_ms")
    return received_at + timeout_ms / 1000 if _is_number(timeout_ms) else None


def _is_number(value: Any) -> TypeGuard[int | float]:
    return isinstance(value, int | float) and not isinstance(value, bool)


_REPORT_NAMES: dict[type[Any], str] = {
    Executed: "executed",
    Errored: "errored",
    Pruned: "prune",
    Requeued: "re-enqueue-after",
}

_REPORT_PAYLOADS: dict[type[Any], str] = {
    Executed: "Outputs",
    Pruned: "Prune data",
    Requeued: "Re-enqueue request",
}


def _kind(outcome: Outcome) -> str:
    return _REPORT_NAMES[type(outcome)]


def _replacement_for_refused_report(claim: _Claim, outcome: Outcome, exc: Exception) -> Errored | None:
    """Log why a report failed; return the errored report to send instead, or None to drop it.

    Only a report other than errored is replaced (once), and only when a retry of the same
    report cannot succeed but the state is still ours: 413 (too large), or an exception that is
    not the SDK's (the report could not be built or sent).
    """
    state_id, kind = claim.state_id, _kind(outcome)
    if isinstance(exc, ConflictError):
        logger.warning(
            "state %s: %s report refused (lease lost or already reported): %s", state_id, kind, exc
        )
        return None
    if isinstance(outcome, Errored):
        logger.error("state %s: could not report errored: %s", state_id, exc, exc_info=_traceback_of(exc))
        return None
    if isinstance(exc, PayloadTooLargeError):
        what = _REPORT_PAYLOADS[type(outcome)]
        error = f"{what} rejected by the state manager (413): {format_detail(exc.detail)}"
        logger.error("state %s: node %s: %s; reporting it errored", state_id, claim.node_name, error)
        return Errored(error, exc)
    if isinstance(exc, ExosphereError):
        logger.error("state %s: could not report %s: %s", state_id, kind, exc)
        return None
    logger.error(
        "state %s: node %s: could not build or send the %s report; reporting it errored",
        state_id,
        claim.node_name,
        kind,
        exc_info=exc,
    )
    return Errored(f"Could not report {kind} for node {claim.node_name}: {type(exc).__name__}: {exc}", exc)


def _traceback_of(exc: Exception) -> Exception | None:
    """The SDK's own errors are expected: no traceback for them, one for anything else."""
    return None if isinstance(exc, ExosphereError) else exc


def _ending_code(exc: BaseException) -> str | None:
    """The code of a 409 with which the server ended the attempt, or None for any other error."""
    if isinstance(exc, ConflictError) and exc.code in _ENDINGS:
        return exc.code
    return None


def _log_ended(claim: _Claim, code: str, seconds: float | None = None, thread_running: bool = False) -> None:
    """The one line for an attempt the server ended (run cancelled, timed out).

    `seconds` is None when the node had already finished and the server refused its report.
    """
    word, reason = _ENDINGS[code]
    if seconds is None:
        logger.warning(
            "state %s (node %s): %s before its report arrived: %s; nothing more is reported for it",
            claim.state_id,
            claim.node_name,
            word,
            reason,
        )
        return
    logger.warning(
        "state %s (node %s): %s after %.2fs: %s; nothing more is reported for it%s",
        claim.state_id,
        claim.node_name,
        word,
        seconds,
        reason,
        _STILL_RUNNING if thread_running else "",
    )


_STILL_RUNNING = (
    " (its `def execute` cannot be interrupted: it keeps its worker thread until it returns,"
    " and its result is dropped)"
)


def _log_outcome(claim: _Claim, outcome: Outcome, seconds: float) -> None:
    """The one line for a state whose node finished: node, state, outcome, duration."""
    state_id, node_name = claim.state_id, claim.node_name
    if isinstance(outcome, Errored):
        logger.log(
            outcome.log_level,
            "state %s (node %s): errored in %.2fs: %s",
            state_id,
            node_name,
            seconds,
            outcome.error,
            exc_info=outcome.exception,
        )
    elif isinstance(outcome, Requeued):
        logger.info(
            "state %s (node %s): requeued in %.2fs (runs again in %gs)",
            state_id,
            node_name,
            seconds,
            outcome.delay_ms / 1000,
        )
    else:
        what = "executed" if isinstance(outcome, Executed) else "pruned"
        logger.info("state %s (node %s): %s in %.2fs", state_id, node_name, what, seconds)
