"""Where a waiting state is found by a claim: its queue key, as data (no I/O).

A claim must not scan or sort candidates in Python on the embedded engine, where only a lookup
on one indexed field is cheap (DESIGN §5). So a CREATED state carries its queue key,
`<namespace> <node>`, in exactly one of two indexed fields:

- `ready` when it is due (its `enqueue_after` has passed): a claim reads `ready` equal to its
  nodes' keys, with a limit;
- `delayed` while it waits for its time (a delayed start, a retry's backoff, `re-enqueue-after`);
  a claim first moves its nodes' delayed states whose time has come to `ready` (at most every
  `PROMOTE_EVERY_MS` per process and namespace).

Every other status has neither: a claim, a cancel or any move out of CREATED clears them.
"""

from __future__ import annotations

from typing import Any

from state_manager.domain.status import StateStatus

PROMOTE_EVERY_MS = 250
_SEPARATOR = "\x1f"


def queue_key(namespace: str, node: str) -> str:
    return f"{namespace}{_SEPARATOR}{node}"


def queue_fields(
    status: StateStatus | str, namespace: str, node: str, enqueue_after: int, now: int
) -> dict[str, Any]:
    """`ready` and `delayed` for a state written in `status`, due at `enqueue_after`."""
    if status != StateStatus.CREATED:
        return {"ready": None, "delayed": None}
    key = queue_key(namespace, node)
    return {"ready": key, "delayed": None} if enqueue_after <= now else {"ready": None, "delayed": key}


OUT_OF_QUEUE: dict[str, Any] = {"ready": None, "delayed": None}
