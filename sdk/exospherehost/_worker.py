"""Processing one claimed state: execute it (with heartbeats), then report the outcome.

Every call about the state carries its claim token (see `_http.py`). Every report is retried
with exponential back-off after a network error or a 5xx; a 409 (lease lost, claim superseded,
already reported) or another 4xx is logged and dropped. A report the server refuses as too large
(413), or one that cannot even be built or sent (e.g. a `TypeError` while encoding it), is
replaced by one errored report, so the state fails visibly instead of waiting out its lease.
Nothing here raises into the runtime: a failure costs one state, never the process.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeGuard, TypeVar

from ._execution import Errored, Executed, Outcome, Pruned, Requeued, execute_state
from ._http import ApiClient
from .errors import (
    ConflictError,
    ExosphereError,
    PayloadTooLargeError,
    ServerError,
    StateManagerError,
    TransportError,
    format_detail,
)
from .node import BaseNode

__all__ = ["CANCEL_REPORT_TIMEOUT", "StateWorker", "lease_deadline", "next_heartbeat_in"]

logger = logging.getLogger(__name__)

T = TypeVar("T")

CANCEL_REPORT_TIMEOUT = 5.0
"""Seconds allowed for the one errored report of a node cancelled at shutdown."""

_REPORT_BACKOFF_BASE = 0.2
_REPORT_BACKOFF_CAP = 10.0
_MIN_HEARTBEAT_DELAY = 0.05


@dataclass(frozen=True)
class _Claim:
    """What the worker keeps about one claimed state."""

    state_id: str
    node_name: Any
    token: str | None
    lease_deadline: float | None
    """When the lease ends, on the `time.monotonic()` clock; None when the state has no lease."""


class StateWorker:
    """Runs claimed states through their nodes and reports the outcomes."""

    def __init__(
        self,
        api: ApiClient,
        nodes: dict[str, type[BaseNode]],
        *,
        runtime_name: str,
        heartbeat_interval: float | None,
        report_retries: int,
    ) -> None:
        self._api = api
        self._nodes = nodes
        self._runtime_name = runtime_name
        self._heartbeat_interval = heartbeat_interval
        self._report_retries = report_retries

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
        )
        try:
            outcome = await self._execute_with_heartbeats(claim, state.get("inputs"))
            _log_outcome(claim, outcome)
            return await self._report(claim, outcome)
        except Exception:  # a bug here must not kill the runtime
            logger.exception("state %s: unexpected failure in the runtime", state_id)
            return None, False

    async def _execute_with_heartbeats(self, claim: _Claim, inputs: Any) -> Outcome:
        node = self._nodes.get(str(claim.node_name))
        if node is None:
            return Errored(f"Runtime {self._runtime_name} has no node named {claim.node_name!r}")

        async def load_secrets() -> dict[str, Any]:
            token = claim.token
            return await self._retrying(lambda: self._api.get_secrets(claim.state_id, claim_token=token))

        heartbeat = self._start_heartbeats(claim)
        try:
            return await execute_state(node, inputs, load_secrets)
        except asyncio.CancelledError:
            await self._report_cancelled(claim)
            raise
        finally:
            if heartbeat is not None:
                heartbeat.cancel()
                await asyncio.wait({heartbeat})

    # ------------------------------------------------------------------ reports

    async def _report(self, claim: _Claim, outcome: Outcome) -> tuple[Outcome, bool]:
        try:
            await self._retrying(self._report_call(claim, outcome))
        except Exception as exc:
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
        return lambda: self._api.errored(state_id, outcome.error, claim_token=token)

    async def _report_cancelled(self, claim: _Claim) -> None:
        """Best effort, one attempt: the node was cancelled at shutdown."""
        message = f"Cancelled: runtime {self._runtime_name} shut down before the node finished"
        try:
            await asyncio.wait_for(
                self._api.errored(claim.state_id, message, claim_token=claim.token), CANCEL_REPORT_TIMEOUT
            )
        except (ExosphereError, TimeoutError) as exc:
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

    def _start_heartbeats(self, claim: _Claim) -> asyncio.Task[None] | None:
        # Only a leased state needs heartbeats; a server without leases (upstream) sends none.
        interval, deadline = self._heartbeat_interval, claim.lease_deadline
        if interval is None or deadline is None:
            return None
        return asyncio.create_task(self._heartbeat_loop(claim, interval, deadline))

    async def _heartbeat_loop(self, claim: _Claim, interval: float, deadline: float) -> None:
        while True:
            await asyncio.sleep(next_heartbeat_in(interval, deadline, time.monotonic()))
            try:
                answer = await self._retrying(
                    lambda: self._api.heartbeat(claim.state_id, claim_token=claim.token)
                )
            except ConflictError:
                logger.warning(
                    "state %s: lease lost, heartbeats stopped (the work may run elsewhere)", claim.state_id
                )
                return
            except StateManagerError as exc:
                logger.warning("state %s: heartbeat refused, heartbeats stopped: %s", claim.state_id, exc)
                return
            except ExosphereError as exc:
                logger.warning("state %s: heartbeat failed: %s", claim.state_id, exc)
            else:
                renewed = lease_deadline(answer, time.monotonic(), time.time())
                if renewed is not None:
                    deadline = renewed


def lease_deadline(answer: Mapping[str, Any], received_at: float, wall_now: float) -> float | None:
    """When the lease granted in a server answer ends, on the clock `received_at` was read from.

    Args:
        answer: A claimed state from the enqueue answer, or a heartbeat answer.
        received_at: `time.monotonic()` when the answer arrived.
        wall_now: The worker's `time.time()` then; used only for an older server (see below).

    Returns:
        `received_at + lease_ms` (in seconds): the lease left when the server answered, measured
        on the worker's monotonic clock, so that a difference between the server's and the
        worker's wall clocks plays no part. An older server sends only `lease_expires_at` (its
        wall clock, epoch ms), which is then compared with `wall_now`. None when the answer has
        neither (an upstream server: the state has no lease).
    """
    lease_ms = answer.get("lease_ms")
    if _is_number(lease_ms):
        return received_at + lease_ms / 1000
    expires_ms = answer.get("lease_expires_at")
    if _is_number(expires_ms):
        return received_at + (expires_ms / 1000 - wall_now)
    return None


def next_heartbeat_in(interval: float, deadline: float, now: float) -> float:
    """Seconds until the next heartbeat: the configured interval, but at least three beats per
    remaining lease (so a server with a short lease is still kept informed), and never less than
    50 ms. `deadline` and `now` are read from the same (monotonic) clock."""
    return max(_MIN_HEARTBEAT_DELAY, min(interval, (deadline - now) / 3))


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


def _log_outcome(claim: _Claim, outcome: Outcome) -> None:
    if isinstance(outcome, Errored):
        logger.log(
            outcome.log_level,
            "state %s: node %s errored: %s",
            claim.state_id,
            claim.node_name,
            outcome.error,
            exc_info=outcome.exception,
        )
    else:
        logger.debug("state %s: node %s finished: %s", claim.state_id, claim.node_name, _kind(outcome))
