"""Notices when something blocks the runtime's event loop, and says which node and what to do.

A daemon thread schedules a no-op on the loop (`loop.call_soon_threadsafe`) and measures how long
the loop takes to run it. Past `threshold` seconds it logs ONE warning for that blocking episode,
naming the node whose code was running on the loop (or, when that cannot be told, the async
nodes that were running) and the remedy: a plain `def execute` for blocking code, or
`await asyncio.to_thread(...)`. The next episode gets its own warning.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import Callable

__all__ = ["LoopWatchdog"]

logger = logging.getLogger(__name__)

_MAX_CHECK_PERIOD = 0.25

ADVICE = (
    "heartbeats, polls and the other nodes wait meanwhile. Put blocking code in a plain "
    "`def execute` (the runtime runs it in a worker thread), or call it with "
    "`await asyncio.to_thread(...)`"
)


class LoopWatchdog:
    """Measures the event loop's responsiveness from a thread; warns once per blocking episode."""

    def __init__(self, threshold: float, describe: Callable[[asyncio.Task[object] | None], str]) -> None:
        self._threshold = threshold
        self._period = min(_MAX_CHECK_PERIOD, threshold / 4)
        self._describe = describe
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._probe_sent: float | None = None
        self._warned = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    def start(self, loop: asyncio.AbstractEventLoop, name: str) -> None:
        self._loop = loop
        self._thread = threading.Thread(target=self._run, args=(loop,), name=f"exosphere-watchdog-{name}")
        self._thread.daemon = True
        self._thread.start()

    def stop(self) -> None:
        """Stop the thread (it only ever waits on an event, so it ends at once)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()

    def _run(self, loop: asyncio.AbstractEventLoop) -> None:
        while not self._stop.wait(self._period):
            now = time.monotonic()
            with self._lock:
                sent = self._probe_sent
                if sent is None:
                    self._probe_sent, self._warned = now, False
                elif self._warned or now - sent < self._threshold:
                    continue
                else:
                    self._warned = True
            if sent is None:
                try:
                    loop.call_soon_threadsafe(self._probe_ran)
                except RuntimeError:  # the loop was closed
                    return
                continue
            self._warn(loop, now - sent)

    def _probe_ran(self) -> None:
        """Runs on the loop: the loop is responsive; a later block is a new episode."""
        with self._lock:
            sent, warned, self._probe_sent = self._probe_sent, self._warned, None
        if warned and sent is not None:
            logger.debug("the event loop ran again after %.2fs", time.monotonic() - sent)

    def _warn(self, loop: asyncio.AbstractEventLoop, blocked: float) -> None:
        running: asyncio.Task[object] | None = None
        with contextlib.suppress(Exception):
            running = asyncio.current_task(loop)
        logger.warning(
            "%s has blocked the event loop for %.1fs so far: %s",
            self._describe(running),
            blocked,
            ADVICE,
        )
