"""Where a waiting state is found by a claim: its queue key, as data (no I/O).

A claim must not scan or sort candidates in Python on the embedded engine, where only a lookup
on one indexed field, or a range of it in its order, is cheap (DESIGN §5). So a CREATED state
carries its queue key, `<namespace> <node>`, in exactly one of two indexed fields:

- `ready` when it is due, followed by its rank (`<namespace> <node> <rank>`): a claim reads its
  nodes' range of `ready` in order, with a limit, so the state due first is claimed first. The
  rank is when it is due, less its run's priority (issue 18: a state of a run with priority P
  seconds is claimed as if it had been due P seconds earlier: priorities compose with delays
  and first-come order);
- `delayed` while it waits for its time (a delayed start, a retry's backoff, `re-enqueue-after`);
  a claim first moves its nodes' delayed states whose time has come to `ready` (at most every
  `PROMOTE_EVERY_MS` per process and namespace).

A `ready` written before ranks were (the bare key) sorts first in its range: claimed first.

A due state whose claim a flow-control gate holds back (a concurrency or rate limit, issue 18)
waits in `parked` instead (domain/gates.py), until the gate lets it back into `ready`.

Every other status has neither: a claim, a cancel or any move out of CREATED clears them.
"""

from __future__ import annotations

from typing import Any

from state_manager.domain.status import StateStatus

PROMOTE_EVERY_MS = 250
_SEPARATOR = "\x1f"


_RANK_DIGITS = 15


def queue_key(namespace: str, node: str) -> str:
    return f"{namespace}{_SEPARATOR}{node}"


def due_at(enqueue_after: int, priority_ms: int = 0) -> int:
    """When a state is due for a claim: its time, less its run's priority (never below 0)."""
    return max(0, enqueue_after - priority_ms)


def ready_key(namespace: str, node: str, enqueue_after: int, priority_ms: int = 0) -> str:
    """The `ready` of a due state: its queue key, then its rank (zero-padded: in order as text)."""
    return f"{queue_key(namespace, node)}{_SEPARATOR}{due_at(enqueue_after, priority_ms):0{_RANK_DIGITS}d}"


def ready_range(namespace: str, node: str) -> dict[str, str]:
    """The `ready` condition of a node's due states (with one written before ranks were)."""
    key = queue_key(namespace, node)
    return {"$gte": key, "$lt": f"{key}{_SEPARATOR}{'9' * (_RANK_DIGITS + 1)}"}


def is_due(enqueue_after: int, priority_ms: int, not_before: int | None, now: int) -> bool:
    """Whether a state may be claimed now: due (less its run's priority), and past the time its
    node asked it to wait for (`re-enqueue-after`: a node's own wait is not shortened)."""
    return due_at(enqueue_after, priority_ms) <= now and (not_before is None or not_before <= now)


def queue_fields(
    status: StateStatus | str,
    namespace: str,
    node: str,
    enqueue_after: int,
    now: int,
    priority_ms: int = 0,
    not_before: int | None = None,
) -> dict[str, Any]:
    """`ready` and `delayed` for a state written in `status`, due at `enqueue_after` (less its
    run's priority, but not before `not_before`)."""
    if status != StateStatus.CREATED:
        return dict(OUT_OF_QUEUE)
    if is_due(enqueue_after, priority_ms, not_before, now):
        return {**OUT_OF_QUEUE, "ready": ready_key(namespace, node, enqueue_after, priority_ms)}
    return {**OUT_OF_QUEUE, "delayed": queue_key(namespace, node)}


# No queue key: also out of the gates' waiting rooms (`parked`, domain/gates.py).
OUT_OF_QUEUE: dict[str, Any] = {"ready": None, "delayed": None, "parked": None}
