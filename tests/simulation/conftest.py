"""The simulation tier: every store call of the server is gated for the scheduler."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.simulation.store_gate import gated_store


@pytest.fixture(autouse=True)
def gated() -> Iterator[None]:
    with gated_store():
        yield
