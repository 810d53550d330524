"""The heartbeat thread: keeps the leases of a runtime's running states, whatever its event loop does.

One thread per `Runtime` (not per state) beats every state the runtime holds, through its own
synchronous HTTP client (`_sync_http.py`), so that a node blocking the event loop does not cost
its state the lease. The pacing is the one the runtime always had (`next_heartbeat_in`): at most
`heartbeat_interval` apart, at least three beats per remaining lease, measured on the monotonic
clock from the `lease_ms` the server sent.

The event loop registers a state with `add()` when its node starts and withdraws it with
`remove()` before reporting it; `remove()` waits for a beat of that state already on the wire,
so that no heartbeat ever follows the report. What the server answers is handled here, except
a 409, which is handed back to the event loop with `loop.call_soon_threadsafe`: the state's
`on_conflict(code)` then runs on the loop (stop the node on `STATE_CANCELLED` /
`STATE_TIMED_OUT`, note a lost lease on `code=None`). Either way that state is no longer beaten.
A network error or a 5xx is retried with back-off; another 4xx stops that state's beats.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any, TypeGuard

from ._sync_http import HEARTBEAT_TIMEOUT, SyncHeartbeatClient
from .errors import ConflictError, ExosphereError, StateManagerError

__all__ = ["Beat", "HeartbeatThread", "lease_deadline", "next_heartbeat_in"]

logger = logging.getLogger(__name__)

_MIN_HEARTBEAT_DELAY = 0.05
_RETRY_BACKOFF_BASE = 0.2
_RETRY_BACKOFF_CAP = 10.0


class Beat:
    """One state whose lease the thread keeps. Created by `HeartbeatThread.add()`."""

    def __init__(
        self,
        state_id: str,
        token: str | None,
        deadline: float,
        due: float,
        on_conflict: Callable[[str | None], None],
    ) -> None:
        self.state_id = state_id
        self.token = token
        self.deadline = deadline
        """When the lease ends (monotonic clock); only the thread updates it after `add()`."""
        self.due = due
        """When the next beat is sent (monotonic clock); only the thread updates it after `add()`."""
        self.on_conflict = on_conflict
        self.failures = 0
        self.in_flight = False
        self.removed: asyncio.Future[None] | None = None
        """Set by `remove()` while a beat is on the wire; resolved when it is back."""


class HeartbeatThread:
    """Beats the leases of the runtime's running states from a daemon thread.

    `start()`, `add()`, `remove()` and `close()` are called from the event loop's thread.
    """

    def __init__(self, client: SyncHeartbeatClient, interval: float) -> None:
        self._client = client
        self._interval = interval
        self._beats: set[Beat] = set()
        self._wake = threading.Condition()
        self._closing = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._exited: asyncio.Future[None] | None = None

    def start(self, loop: asyncio.AbstractEventLoop, name: str) -> None:
        """Start the thread; 409s are handed back to `loop`."""
        self._loop = loop
        self._exited = loop.create_future()
        self._thread = threading.Thread(target=self._run, name=f"exosphere-heartbeats-{name}", daemon=True)
        self._thread.start()

    def add(
        self, state_id: str, token: str | None, deadline: float, on_conflict: Callable[[str | None], None]
    ) -> Beat:
        """Keep the lease of a state that ends at `deadline` (monotonic clock)."""
        now = time.monotonic()
        beat = Beat(
            state_id, token, deadline, now + next_heartbeat_in(self._interval, deadline, now), on_conflict
        )
        with self._wake:
            self._beats.add(beat)
            self._wake.notify()
        return beat

    async def remove(self, beat: Beat) -> None:
        """Stop beating a state; returns once no beat of it is on the wire any more."""
        with self._wake:
            self._beats.discard(beat)
            if beat.in_flight:
                beat.removed = asyncio.get_running_loop().create_future()
            waiter = beat.removed
        if waiter is not None:
            # Bounded by the request timeout; shielded: a cancelled caller leaves the waiter to the thread.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(waiter), HEARTBEAT_TIMEOUT + 1)

    async def close(self) -> None:
        """Stop the thread (it closes its HTTP client) and wait for it to end."""
        with self._wake:
            self._closing = True
            self._wake.notify()
        if self._exited is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(self._exited), HEARTBEAT_TIMEOUT + 1)
        if self._thread is not None and self._exited is not None and self._exited.done():
            self._thread.join()  # it has said goodbye: only its last instructions are left

    # ------------------------------------------------------------------ the thread

    def _run(self) -> None:
        try:
            while True:
                due = self._wait_for_due_beats()
                if due is None:
                    return
                for beat in due:
                    with self._wake:
                        withdrawn = beat not in self._beats  # removed while earlier ones were sent
                    if not withdrawn:
                        self._send(beat)
                    with self._wake:
                        beat.in_flight = False
                        if beat.removed is not None:
                            self._to_loop(_resolve, beat.removed)
        except Exception:  # a bug here must not go unnoticed; the leases then lapse
            logger.exception("the heartbeat thread failed; leases are no longer kept")
        finally:
            self._client.close()
            if self._exited is not None:
                self._to_loop(_resolve, self._exited)

    def _wait_for_due_beats(self) -> list[Beat] | None:
        """Block until some beats are due (marked in flight), or return None when closing."""
        with self._wake:
            while not self._closing:
                now = time.monotonic()
                due = [beat for beat in self._beats if beat.due <= now]
                if due:
                    for beat in due:
                        beat.in_flight = True
                    return due
                next_due = min((beat.due for beat in self._beats), default=None)
                self._wake.wait(None if next_due is None else next_due - now)
            return None

    def _send(self, beat: Beat) -> None:
        try:
            answer = self._client.heartbeat(beat.state_id, claim_token=beat.token)
        except ConflictError as exc:
            self._drop(beat)
            self._to_loop(beat.on_conflict, exc.code)
        except StateManagerError as exc:
            if exc.status_code < 500:
                self._drop(beat)
                logger.warning("state %s: heartbeat refused, heartbeats stopped: %s", beat.state_id, exc)
            else:
                self._retry_later(beat, exc)
        except ExosphereError as exc:
            self._retry_later(beat, exc)
        else:
            now = time.monotonic()
            renewed = lease_deadline(answer, now, time.time())
            if renewed is not None:
                beat.deadline = renewed
            beat.failures = 0
            beat.due = now + next_heartbeat_in(self._interval, beat.deadline, now)

    def _retry_later(self, beat: Beat, exc: Exception) -> None:
        backoff = min(_RETRY_BACKOFF_CAP, _RETRY_BACKOFF_BASE * 2**beat.failures) * random.uniform(0.5, 1.0)
        delay = max(_MIN_HEARTBEAT_DELAY, min(self._interval, backoff))
        beat.failures += 1
        beat.due = time.monotonic() + delay
        logger.warning(
            "state %s: heartbeat failed (attempt %d), next one in %.2fs: %s",
            beat.state_id,
            beat.failures,
            delay,
            exc,
        )

    def _drop(self, beat: Beat) -> None:
        with self._wake:
            self._beats.discard(beat)

    def _to_loop(self, callback: Callable[..., Any], *args: Any) -> None:
        loop = self._loop
        if loop is None:
            return
        with contextlib.suppress(RuntimeError):  # the loop is closed: nobody is left to tell
            loop.call_soon_threadsafe(callback, *args)


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


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
