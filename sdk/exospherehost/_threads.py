"""The worker threads that run plain `def execute` nodes.

A bounded pool, sized by the runtime's `workers`: since the runtime never runs more nodes than
it has workers, a sync node never waits for a thread. Threads are started on demand and kept
for reuse. They are daemon threads: a node still blocking when the runtime has stopped (after a
second Ctrl-C, or past the shutdown grace period) cannot be interrupted by Python, and must not
keep the process alive either.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import queue
import threading
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any, TypeVar

__all__ = ["NodeThreads"]

T = TypeVar("T")

_Item = tuple["Future[Any]", Callable[[], Any]]


class NodeThreads:
    """Runs callables on at most `size` daemon threads."""

    def __init__(self, size: int, name: str = "exosphere-node") -> None:
        self._size = size
        self._name = name
        self._queue: queue.SimpleQueue[_Item | None] = queue.SimpleQueue()
        self._idle = threading.Semaphore(0)
        self._threads: list[threading.Thread] = []
        self._lock = threading.Lock()
        self._closed = False

    @property
    def size(self) -> int:
        return self._size

    def submit(self, fn: Callable[[], T]) -> Future[T]:
        """Run `fn()` on a worker thread, in a copy of the caller's context variables."""
        future: Future[T] = Future()
        context = contextvars.copy_context()
        with self._lock:
            if self._closed:
                raise RuntimeError("the runtime's node threads are closed")
            self._queue.put((future, functools.partial(context.run, fn)))
            if not self._idle.acquire(blocking=False) and len(self._threads) < self._size:
                thread = threading.Thread(
                    target=self._work, name=f"{self._name}-{len(self._threads) + 1}", daemon=True
                )
                self._threads.append(thread)
                thread.start()
        return future

    async def run(self, fn: Callable[[], T]) -> T:
        """`submit(fn)`, awaited from the event loop."""
        return await asyncio.wrap_future(self.submit(fn))

    def close(self) -> None:
        """Let idle threads end; a thread still running a node ends when the node returns."""
        with self._lock:
            self._closed = True
            for _ in self._threads:
                self._queue.put(None)

    def _work(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            future, call = item
            if future.set_running_or_notify_cancel():
                try:
                    result = call()
                except Exception as exc:
                    future.set_exception(exc)
                except BaseException as exc:  # e.g. sys.exit() in a node: the state fails, not the loop
                    future.set_exception(RuntimeError(f"the node raised {type(exc).__name__}: {exc}"))
                else:
                    future.set_result(result)
                del future, call
            self._idle.release()
