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

Every watching command (`run watch`, and `--watch` of `run trigger`, `run retry` and `run fork`)
takes `interval_option` and `timeout_option` and ends with `finish_summary`: the summary on
stdout (`show_summary`, which `run get` writes too) and exit 1 unless the run succeeded.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from typing import Any

import click
from rich.console import Console, Group
from rich.live import Live
from rich.spinner import Spinner
from rich.table import Table
from rich.text import Text

from .._admin import RUN_FINAL_STATUSES
from ..errors import ServerError, TransportError
from ..state_manager import StateManager
from .durations import Duration
from .output import STATUS_STYLES, Output, compact_json, counts_text, duration_text, time_text
from .session import Failed, transport_problem

__all__ = [
    "FAILED_STATE_STATUSES",
    "FIRST_READ_SECONDS",
    "MAX_RESULT_STATES",
    "finish_summary",
    "first_line",
    "interval_option",
    "read_delays",
    "run_summary",
    "show_summary",
    "timeout_option",
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

interval_option = click.option(
    "--interval",
    type=Duration("s", minimum=FIRST_READ_SECONDS),
    metavar="DURATION",
    default="1s",
    show_default=True,
    help="Longest wait between progress reads while watching (they start 50ms apart and back off "
    "to it), e.g. 500ms or 2s; a bare number is seconds",
)
timeout_option = click.option(
    "--timeout",
    type=Duration("s", positive=True),
    metavar="DURATION",
    help="Stop watching after this long (e.g. 90s, 5m, 1h30m; a bare number is seconds); "
    "exit 1 if the run has not ended by then",
)


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


def finish_summary(out: Output, summary: dict[str, Any]) -> None:
    """Write a final run summary; exit 1 if the run did not succeed."""
    show_summary(out, summary)
    status = summary.get("status")
    if status in ("FAILED", "CANCELLED"):
        raise Failed(f"run {summary.get('run_id')} {status}")
    if status != "SUCCESS":
        raise Failed(f"run {summary.get('run_id')} is still {status}: stopped watching at --timeout")


def show_summary(out: Output, s: dict[str, Any]) -> None:
    """A run summary (`run_summary`): the run's fields, its nodes, its result, its failed states."""
    if out.json:
        out.result(s)
        return
    store = s.get("store") or {}
    out.fields(
        [
            ("run", str(s.get("run_id"))),
            ("graph", f"{s.get('graph_name')} (version {s.get('graph_version')})"),
            ("namespace", str(s.get("namespace"))),
            ("status", str(s.get("status"))),
            ("triggered by", str(s.get("triggered_by"))),
            *_forked_from(s.get("forked_from")),
            ("created", time_text(s.get("created_ms"))),
            ("finished", time_text(s.get("finished_ms"))),
            ("duration", duration_text(s.get("duration_ms"))),
            ("states", counts_text(s.get("counts") or {})),
            ("store", ", ".join(f"{k}={v}" for k, v in store.items()) or "-"),
        ]
    )
    nodes = s.get("nodes") or []
    if nodes:
        out.line()
        rows = [
            [
                str(n.get("identifier")),
                str(n.get("node_name")),
                str(n.get("status")),
                counts_text(n.get("counts") or {}),
            ]
            for n in nodes
        ]
        out.table(["node", "class", "status", "states"], rows, status_columns=[2])
    _show_result(out, s.get("result") or [])
    failed = s.get("failed_states") or []
    if failed:
        out.line()
        rows = [
            [str(f.get("id")), str(f.get("identifier")), str(f.get("status")), first_line(f.get("error"))]
            for f in failed
        ]
        out.table(["failed state", "node", "status", "error"], rows, status_columns=[2])


def _show_result(out: Output, result: list[dict[str, Any]]) -> None:
    """The outputs of the run's last states, one row each."""
    if not result:
        return
    out.line()
    rows = [[str(r.get("identifier")), str(r.get("id")), compact_json(r.get("outputs"))] for r in result]
    out.table(["result node", "state", "outputs"], rows)
    if len(result) >= MAX_RESULT_STATES:
        out.note(
            f"the first {MAX_RESULT_STATES} result states; "
            "`exosphere run states RUN --node ID --status SUCCESS` lists all"
        )


def _forked_from(origin: Any) -> list[tuple[str, str]]:
    """`forked from  <run> (from draft, score)` for a fork; nothing for any other run."""
    if not isinstance(origin, dict) or not origin.get("run_id"):
        return []
    starts = ", ".join(str(node) for node in origin.get("from") or [])
    return [("forked from", f"{origin['run_id']} (from {starts})" if starts else str(origin["run_id"]))]


def first_line(text: Any) -> str:
    """The first line of a message (an error), `-` for none."""
    lines = str(text or "-").strip().splitlines()
    return lines[0] if lines else "-"
