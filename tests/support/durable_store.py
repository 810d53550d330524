"""A MongoDB wire-protocol server on SQLite (nx-27017) on a loopback port, in a temporary folder.

A thin wrapper around the server's own launcher (`state_manager.store.temporary_store`), which
benchmarks use too. The store outlives the state managers a test starts, so tests can kill and
restart a server, or run two replicas, against one database. It is not MongoDB (e.g. it ignores
`partialFilterExpression`, which we do not use).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from state_manager.store import temporary_store


@contextlib.contextmanager
def durable_store() -> Iterator[str]:
    """Start nx-27017 in a temporary folder; yield its `mongodb://` URI; stop it on exit."""
    with temporary_store() as uri:
        yield uri
