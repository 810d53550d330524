"""Processing one claimed state: execute it (with heartbeats), then report the outcome.

Every report is retried with exponential back-off after a network error or a 5xx; a 4xx is
logged and dropped. Nothing here raises into the runtime: a failure costs one state, never the
process.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from ._execution import Errored, Executed, Outcome, Pruned, Requeued, execute_state
from ._http import ApiClient
from .errors import ConflictError, ExosphereError, ServerError, StateManagerError, TransportError
from .node import BaseNode

__all__ = ["CANCEL_REPORT_TIMEOUT", "StateWorker"]

logger = logging.getLogger(__name__)

T = TypeVar("T")

CANCEL_REPORT_TIMEOUT = 5.0
"""Seconds allowed for the one errored report of a node cancelled at shutdown."""

_REPORT_BACKOFF_BASE = 0.2
_REPORT_BACKOFF_CAP = 10.0


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

    async def process(self, state: dict[str, Any]) -> tuple[Outcome | None, bool]:
        """Run one claimed state and report it; returns the outcome and whether it was reported."""
        state_id = state.get("state_id")
        if not isinstance(state_id, str):
            logger.error("ignoring a claimed state without a state_id: %r", state)
            return None, False
        try:
            outcome = await self._execute_with_heartbeats(state_id, state)
            _log_outcome(state_id, state.get("node_name"), outcome)
            return outcome, await self._report(state_id, outcome)
        except Exception:  # a bug here must not kill the runtime
            logger.exception("state %s: unexpected failure in the runtime", state_id)
            return None, False

    async def _execute_with_heartbeats(self, state_id: str, state: dict[str, Any]) -> Outcome:
        node = self._nodes.get(str(state.get("node_name")))
        if node is None:
            return Errored(f"Runtime {self._runtime_name} has no node named {state.get('node_name')!r}")
        heartbeat = self._start_heartbeats(state_id, state)
        try:
            return await execute_state(
                node, state.get("inputs"), lambda: self._retrying(lambda: self._api.get_secrets(state_id))
            )
        except asyncio.CancelledError:
            await self._report_cancelled(state_id)
            raise
        finally:
            if heartbeat is not None:
                heartbeat.cancel()
                await asyncio.wait({heartbeat})

    async def _report(self, state_id: str, outcome: Outcome) -> bool:
        call = self._report_call(state_id, outcome)
        try:
            await self._retrying(call)
        except ConflictError as exc:
            logger.warning(
                "state %s: %s report refused (lease lost or already reported): %s",
                state_id,
                _kind(outcome),
                exc,
            )
            return False
        except ExosphereError as exc:
            logger.error("state %s: could not report %s: %s", state_id, _kind(outcome), exc)
            return False
        logger.debug("state %s: reported %s", state_id, _kind(outcome))
        return True

    def _report_call(self, state_id: str, outcome: Outcome) -> Callable[[], Awaitable[Any]]:
        if isinstance(outcome, Executed):
            return lambda: self._api.executed(state_id, outcome.outputs)
        if isinstance(outcome, Pruned):
            return lambda: self._api.prune(state_id, outcome.data)
        if isinstance(outcome, Requeued):
            return lambda: self._api.requeue_after(state_id, outcome.delay_ms)
        return lambda: self._api.errored(state_id, outcome.error)

    async def _report_cancelled(self, state_id: str) -> None:
        """Best effort, one attempt: the node was cancelled at shutdown."""
        message = f"Cancelled: runtime {self._runtime_name} shut down before the node finished"
        try:
            await asyncio.wait_for(self._api.errored(state_id, message), CANCEL_REPORT_TIMEOUT)
        except (ExosphereError, TimeoutError) as exc:
            logger.warning("state %s: could not report the cancellation: %s", state_id, exc)

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

    def _start_heartbeats(self, state_id: str, state: dict[str, Any]) -> asyncio.Task[None] | None:
        # Only a leased state needs heartbeats; a server without leases (upstream) sends none.
        expires = state.get("lease_expires_at")
        if self._heartbeat_interval is None or not isinstance(expires, int | float):
            return None
        return asyncio.create_task(self._heartbeat_loop(state_id, self._heartbeat_interval, expires))

    async def _heartbeat_loop(self, state_id: str, interval: float, expires_ms: float) -> None:
        while True:
            await asyncio.sleep(next_heartbeat_in(interval, expires_ms, time.time()))
            try:
                answer = await self._retrying(lambda: self._api.heartbeat(state_id))
            except ConflictError:
                logger.warning(
                    "state %s: lease lost, heartbeats stopped (the work may run elsewhere)", state_id
                )
                return
            except StateManagerError as exc:
                logger.warning("state %s: heartbeat refused, heartbeats stopped: %s", state_id, exc)
                return
            except ExosphereError as exc:
                logger.warning("state %s: heartbeat failed: %s", state_id, exc)
            else:
                renewed = answer.get("lease_expires_at")
                if isinstance(renewed, int | float):
                    expires_ms = renewed


def next_heartbeat_in(interval: float, expires_ms: float, now: float) -> float:
    """Seconds until the next heartbeat: the configured interval, but at least three beats per
    remaining lease, so a server with a short lease is still kept informed."""
    remaining = expires_ms / 1000 - now
    return max(0.05, min(interval, remaining / 3))


_REPORT_NAMES: dict[type[Any], str] = {
    Executed: "executed",
    Errored: "errored",
    Pruned: "prune",
    Requeued: "re-enqueue-after",
}


def _kind(outcome: Outcome) -> str:
    return _REPORT_NAMES[type(outcome)]


def _log_outcome(state_id: str, node_name: Any, outcome: Outcome) -> None:
    if isinstance(outcome, Errored):
        logger.warning(
            "state %s: node %s errored: %s", state_id, node_name, outcome.error, exc_info=outcome.exception
        )
    else:
        logger.debug("state %s: node %s finished: %s", state_id, node_name, _kind(outcome))
