"""Control-flow signals a node raises from `execute()` to ask the runtime for something.

Signals carry data only; the `Runtime` makes the HTTP call. Do not catch them inside the node:
let them propagate out of `execute()`.
"""

from __future__ import annotations

import math
from datetime import timedelta
from typing import Any

__all__ = ["PruneSignal", "ReQueueAfterSignal"]


class PruneSignal(Exception):
    """End this branch of the run here: the state becomes PRUNED and no next nodes run.

    Args:
        data: Optional JSON-serialisable details stored with the pruned state.

    Example:
        ```python
        async def execute(self):
            if not self.inputs.url:
                raise PruneSignal({"reason": "no url"})
            ...
        ```
    """

    def __init__(self, data: dict[str, Any] | None = None) -> None:
        self.data: dict[str, Any] = dict(data) if data is not None else {}
        super().__init__(f"Prune signal with data: {self.data}")


class ReQueueAfterSignal(Exception):
    """Put this state back in the queue, to be claimed again after `delay`.

    Args:
        delay: How long to wait before the state may run again; must be positive.

    Raises:
        ValueError: If `delay` is zero or negative.

    Example:
        ```python
        async def execute(self):
            if not await report_ready(self.inputs.report_id):
                raise ReQueueAfterSignal(timedelta(minutes=5))
            ...
        ```
    """

    def __init__(self, delay: timedelta) -> None:
        if delay <= timedelta(0):
            raise ValueError(f"Delay must be greater than 0, got {delay}")
        self.delay = delay
        super().__init__(f"Re-queue after signal with delay: {delay}")

    @property
    def delay_ms(self) -> int:
        """The delay in whole milliseconds, rounded up so that it is never 0."""
        return max(1, math.ceil(self.delay / timedelta(milliseconds=1)))
