"""The edge the simulator interleaves at: every call the server makes on a Motor collection.

`gated_store()` wraps the methods of mongomock-motor's collection class so that, before each
call, the calling task waits at the scheduler's gate (`scheduler.gate`, a no-op outside the
interleaved operations). A cursor from `find` or `aggregate` is one call, gated when it is
first iterated (or listed); `aggregate` is deferred to that moment too, since mongomock runs it
eagerly. Nothing of `state_manager` is patched: only the third-party store class.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from mongomock_motor import AsyncMongoMockCollection

from tests.simulation.scheduler import gate

GATED_METHODS = (
    "bulk_write",
    "count_documents",
    "delete_many",
    "delete_one",
    "distinct",
    "estimated_document_count",
    "find_one",
    "find_one_and_delete",
    "find_one_and_replace",
    "find_one_and_update",
    "insert_many",
    "insert_one",
    "replace_one",
    "update_many",
    "update_one",
)


def _label(collection: Any, method: str) -> str:
    return f"{collection.name}.{method}"


class GatedCursor:
    """A cursor that waits at the gate once, before its first result is read."""

    def __init__(self, label: str, open_cursor: Callable[[], Any]) -> None:
        self._label = label
        self._open = open_cursor
        self._cursor: Any = None
        self._chained: list[tuple[str, tuple[Any, ...], dict[str, Any]]] = []

    def __getattr__(self, name: str) -> Any:
        if self._cursor is not None:
            return getattr(self._cursor, name)

        def chain(*args: Any, **kwargs: Any) -> GatedCursor:  # sort, limit, skip... before it runs
            self._chained.append((name, args, kwargs))
            return self

        return chain

    async def _opened(self) -> Any:
        if self._cursor is None:
            await gate(self._label)
            cursor = self._open()
            for name, args, kwargs in self._chained:
                cursor = getattr(cursor, name)(*args, **kwargs)
            self._cursor = cursor
        return self._cursor

    def __aiter__(self) -> GatedCursor:
        return self

    async def __anext__(self) -> Any:
        cursor = await self._opened()
        return await cursor.__anext__()

    async def next(self) -> Any:
        return await self.__anext__()

    async def to_list(self, *args: Any, **kwargs: Any) -> list[Any]:
        cursor = await self._opened()
        result: list[Any] = await cursor.to_list(*args, **kwargs)
        return result


def _gated_method(original: Callable[..., Any], method: str) -> Callable[..., Any]:
    @functools.wraps(original)
    async def wrapper(self: Any, *args: Any, **kwargs: Any) -> Any:
        await gate(_label(self, method))
        return await original(self, *args, **kwargs)

    return wrapper


def _gated_cursor(original: Callable[..., Any], method: str) -> Callable[..., Any]:
    @functools.wraps(original)
    def wrapper(self: Any, *args: Any, **kwargs: Any) -> GatedCursor:
        return GatedCursor(_label(self, method), lambda: original(self, *args, **kwargs))

    return wrapper


@contextmanager
def gated_store() -> Iterator[None]:
    """Gate every collection call for the duration (process-wide: the class is patched)."""
    cls: Any = AsyncMongoMockCollection
    saved = {name: cls.__dict__.get(name) for name in (*GATED_METHODS, "find", "aggregate")}
    try:
        for name in GATED_METHODS:
            setattr(cls, name, _gated_method(getattr(cls, name), name))
        for name in ("find", "aggregate"):
            setattr(cls, name, _gated_cursor(getattr(cls, name), name))
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                delattr(cls, name)
            else:
                setattr(cls, name, value)
