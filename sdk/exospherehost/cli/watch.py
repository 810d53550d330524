"""Following a run to its end: per-node progress on stderr, the final summary as a result.

It stops when the run's status is final, or after `max_seconds` (the summary then shows the
status it still has).

The run's template graph (`GET /run/{id}/graph`) is read 50 ms after the first read, then at
doubling waits up to `interval` seconds (the server offers no long poll for a run's end), so a
short run's end is seen at once and a long run costs one read per `interval`. On a terminal
(and without `NO_COLOR`) a live table with a spinner is redrawn in place; otherwise one line is
written whenever a node's status or counts change. A few seconds of network or server trouble
are waited out (with a warning) rather than ending the watch.

The summary carries the run's result: the outputs of the SUCCESS states of its last nodes (the
graph's nodes with no next node, so the states with no successor).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from typing import Any

from rich.console import Console, Group
from rich.live import Live
from rich.spinner import Spinner
from rich.table import Table
from rich.text import Text

from .._admin import RUN_FINAL_STATUSES
from ..errors import ServerError, TransportError
from ..state_manager import StateManager
from .output import STATUS_STYLES, Output, counts_text, duration_text
from .session import transport_problem

__all__ = [
    "FAILED_STATE_STATUSES",
    "FIRST_READ_SECONDS",
    "MAX_RESULT_STATES",
    "read_delays",
    "run_summary",
    "watch_run",
]

FAILED_STATE_STATUSES = ("ERRORED", "TIMEDOUT", "NEXT_CREATED_ERROR")

FIRST_READ_SECONDS = 0.05
"""The wait before the second progress read of a watch; the waits then double up to `interval`."""

MAX_RESULT_STATES = 100
"""The most result states a summary carries (`run states RUN --node ID --status SUCCESS` lists
them all)."""

_TROUBLE_SECONDS = 15.0
"""How long network or server errors are waited out during a watch before giving up."""

_MAX_FAILED_SHOWN = 5


async def watch_run(
    sm: StateManager, run_id: str, out: Output, *, interval: float = 1.0, max_seconds: float | None = None
) -> dict[str, Any]:
    """Poll the run until its status is final (or `max_seconds` passed); return `run_summary`."""
    console = out.stderr_console()
    clock = _Clock(max_seconds)
    if console is None:
        progress = await _watch_plain(sm, run_id, out, interval, clock)
    else:
        progress = await _watch_live(sm, run_id, console, interval, clock)
    return await run_summary(sm, run_id, progress)


class _Clock:
    """Time since the watch started, and whether to stop following."""

    def __init__(self, timeout: float | None) -> None:
        self.started = time.monotonic()
        self.timeout = timeout

    @property
    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def done(self, progress: dict[str, Any]) -> bool:
        final = progress.get("status") in RUN_FINAL_STATUSES
        return final or (self.timeout is not None and self.elapsed >= self.timeout)


async def run_summary(
    sm: StateManager, run_id: str, progress: dict[str, Any] | None = None
) -> dict[str, Any]:
    """The run's detail, its nodes' progress and (if any) its first failed states with errors."""
    detail = await sm.get_run(run_id)
    progress = progress if progress is not None else await sm.get_run_progress(run_id)
    failed: list[dict[str, Any]] = []
    for status in _failed_statuses(detail, progress):
        if len(failed) < _MAX_FAILED_SHOWN:
            page = await sm.list_run_states(run_id, status=status, limit=_MAX_FAILED_SHOWN)
            failed.extend(_failed_item(state) for state in page.get("states", []))
    nodes = [
        {key: node.get(key) for key in ("identifier", "node_name", "status", "counts", "total")}
        for node in progress.get("nodes", [])
    ]
    result = await _result(sm, run_id, progress)
    return {**detail, "nodes": nodes, "result": result, "failed_states": failed[:_MAX_FAILED_SHOWN]}


async def _result(sm: StateManager, run_id: str, progress: dict[str, Any]) -> list[dict[str, Any]]:
    """The SUCCESS states of the graph's last nodes (no next node), with their outputs."""
    found: list[dict[str, Any]] = []
    for node in progress.get("nodes", []):
        room = MAX_RESULT_STATES - len(found)
        if room <= 0:
            break
        if node.get("next_nodes") or not (node.get("counts") or {}).get("SUCCESS"):
            continue
        page = await sm.list_run_states(run_id, status="SUCCESS", identifier=node["identifier"], limit=room)
        found.extend(
            {key: state.get(key) for key in ("id", "identifier", "outputs")}
            for state in page.get("states", [])
        )
    return found


def read_delays(longest: float) -> Iterator[float]:
    """The waits between a watch's progress reads: 50 ms, doubling up to `longest` seconds."""
    delay = min(FIRST_READ_SECONDS, longest)
    while True:
        yield delay
        delay = min(delay * 2, longest)


def _failed_statuses(detail: dict[str, Any], progress: dict[str, Any]) -> list[str]:
    """The failed state statuses the run has, by its counts or its nodes' (all three if it FAILED)."""
    if detail.get("status") == "FAILED":
        return list(FAILED_STATE_STATUSES)
    seen = set(detail.get("counts") or {})
    for node in progress.get("nodes", []):
        seen.update(status for status, n in (node.get("counts") or {}).items() if n)
    return [status for status in FAILED_STATE_STATUSES if status in seen]


def _failed_item(state: dict[str, Any]) -> dict[str, Any]:
    return {
        key: state.get(key) for key in ("id", "identifier", "node_name", "status", "error", "retry_count")
    }


async def _poll(sm: StateManager, run_id: str, out: Output | None, console: Console | None) -> dict[str, Any]:
    """One progress read, retried through transient trouble for up to `_TROUBLE_SECONDS`."""
    trouble_since: float | None = None
    while True:
        try:
            return await sm.get_run_progress(run_id)
        except (TransportError, ServerError) as exc:
            now = time.monotonic()
            trouble_since = trouble_since or now
            if now - trouble_since > _TROUBLE_SECONDS:
                raise
            problem = transport_problem(exc) if isinstance(exc, TransportError) else str(exc)
            message = f"warning: {problem}; retrying"
            if console is not None:
                console.print(Text(message, style="yellow"))
            elif out is not None:
                out.note(message)
            await asyncio.sleep(1.0)


async def _watch_plain(
    sm: StateManager, run_id: str, out: Output, interval: float, clock: _Clock
) -> dict[str, Any]:
    seen: dict[str, tuple[str, str]] = {}
    run_status = ""
    delays = read_delays(interval)
    while True:
        progress = await _poll(sm, run_id, out, None)
        stamp = f"[{clock.elapsed:6.1f}s]"
        if progress.get("status") != run_status:
            run_status = str(progress.get("status"))
            out.note(f"{stamp} run {run_id} ({progress.get('graph_name')}): {run_status}")
        for node in progress.get("nodes", []):
            now = (str(node.get("status")), counts_text(node.get("counts") or {}))
            before = seen.get(node["identifier"])
            seen[node["identifier"]] = now
            if now != before and not (before is None and now[0] == "NOT_STARTED"):
                out.note(f"{stamp}   {node['identifier']}: {now[0]} ({now[1]})")
        if clock.done(progress):
            return progress
        await asyncio.sleep(next(delays))


async def _watch_live(
    sm: StateManager, run_id: str, console: Console, interval: float, clock: _Clock
) -> dict[str, Any]:
    view = _LiveView(await _poll(sm, run_id, None, console), clock)
    delays = read_delays(interval)
    with Live(view, console=console, refresh_per_second=8, transient=False):
        while not clock.done(view.progress):
            await asyncio.sleep(next(delays))
            view.progress = await _poll(sm, run_id, None, console)
    return view.progress


class _LiveView:
    """The live display, drawn afresh at every refresh (so the clock and spinners move)."""

    def __init__(self, progress: dict[str, Any], clock: _Clock) -> None:
        self.progress = progress
        self.clock = clock

    def __rich__(self) -> Group:
        return _render(self.progress, self.clock.elapsed)


def _render(progress: dict[str, Any], elapsed_seconds: float) -> Group:
    status = str(progress.get("status"))
    elapsed = duration_text(int(elapsed_seconds * 1000))
    title = Text.assemble(
        ("run ", "bold"),
        (str(progress.get("run_id")), "bold"),
        f"  {progress.get('graph_name')}  ",
        (status, STATUS_STYLES.get(status, "")),
        f"  {elapsed}",
    )
    table = Table(show_edge=False, pad_edge=False, header_style="bold", box=None)
    for header in ("", "node", "status", "states"):
        table.add_column(header)
    for node in progress.get("nodes", []):
        node_status = str(node.get("status"))
        marker: Spinner | Text = (
            Spinner("dots", style="cyan") if node_status in ("RUNNING", "PENDING") else Text(" ")
        )
        table.add_row(
            marker,
            str(node.get("identifier")),
            Text(node_status, style=STATUS_STYLES.get(node_status, "")),
            counts_text(node.get("counts") or {}),
        )
    return Group(title, table)
