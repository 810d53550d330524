"""Whether the store the server depends on is known to be gone: `StoreStatus`.

The embedded engine is a child process of the server: when it exits under a live server (it
crashed, or was killed), its watcher thread (`run_engine(..., on_exit=...)`) reports it here with
`lost(problem)`. From then on nothing the server could do would succeed, and the database client
would only notice after its 30 s server-selection timeout, request by request. So the app answers
every request 503 naming the problem (including those already waiting on the database), `/health`
says 503 too, and `python -m state_manager` stops the server (exit code 3): it is the supervisor's
restart (docker's restart policy, systemd) that brings the store back, on the same data.
"""

from __future__ import annotations

import threading
from collections.abc import Callable


class StoreStatus:
    """Set once, from any thread, when the store is lost; read and waited on by the server."""

    def __init__(self) -> None:
        self.problem: str | None = None
        self._callbacks: list[Callable[[], None]] = []
        self._lock = threading.Lock()

    def lost(self, problem: str) -> None:
        """The store is gone, because of `problem` (one sentence, for logs and answers)."""
        with self._lock:
            if self.problem is not None:
                return
            self.problem = problem
            callbacks, self._callbacks = self._callbacks, []
        for callback in callbacks:
            callback()

    def when_lost(self, callback: Callable[[], None]) -> None:
        """Call `callback` when the store is lost, from the thread that reports it (at once if it
        already is): it must be quick and thread-safe, e.g. `loop.call_soon_threadsafe(...)`."""
        with self._lock:
            if self.problem is None:
                self._callbacks.append(callback)
                return
        callback()
