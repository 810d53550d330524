"""`exosphere run trigger | list | get | watch | cancel | retry` (`diff` is in `run_diff.py`, `fork` and
`fork-failed` in `run_fork.py`, `why` in `why.py`)."""

from __future__ import annotations

from typing import IO, Any

import click

from ..state_manager import StateManager
from .durations import Duration
from .inputs import load_document, parse_pairs, parse_since, string_map
from .output import Output, counts_text, duration_text, time_text
from .run_diff import diff
from .run_fork import fork, fork_failed
from .session import call, command_options, config
from .watch import (
    finish_summary,
    first_line,
    interval_option,
    run_summary,
    show_summary,
    timeout_option,
    watch_run,
)
from .why import run_why

__all__ = ["run"]

RUN_STATUSES = ("PENDING", "RUNNING", "SUCCESS", "FAILED", "CANCELLED")
_MAX_PAGE = 500


@click.group()
def run() -> None:
    """Trigger, follow, cancel, retry, fork and compare runs, and ask why their states wait."""


run.add_command(diff)
run.add_command(fork)
run.add_command(fork_failed)
run.add_command(run_why)


@run.command("trigger")
@click.argument("graph_name", metavar="GRAPH")
@click.option("-i", "--input", "inputs", multiple=True, metavar="KEY=VALUE", help="A root node input")
@click.option("-s", "--store", "store", multiple=True, metavar="KEY=VALUE", help="A run store value")
@click.option(
    "--inputs-file",
    type=click.File("r", encoding="utf-8"),
    metavar="FILE",
    help="JSON or YAML mapping of inputs (-i wins)",
)
@click.option(
    "--start-delay",
    type=Duration("ms"),
    default="0",
    metavar="DURATION",
    help="Delay the start, e.g. 250ms, 60s, 5m, 1h30m; a bare number is milliseconds",
)
@click.option("--idempotency-key", metavar="KEY", help="Repeating the trigger with it starts no second run")
@click.option(
    "--priority",
    type=Duration("s"),
    default="0",
    metavar="DURATION",
    help="Claim its states as if due this much earlier, e.g. 5m; a bare number is seconds",
)
@click.option("--watch", is_flag=True, help="Follow the run to its end; exit 1 if it fails")
@interval_option
@timeout_option
@command_options
def trigger(
    graph_name: str,
    inputs: tuple[str, ...],
    store: tuple[str, ...],
    inputs_file: IO[str] | None,
    start_delay: float,
    idempotency_key: str | None,
    priority: float,
    watch: bool,
    interval: float,
    timeout: float | None,
) -> None:
    """Start a run of GRAPH.

    \b
    Examples:
      exosphere run trigger greet -i name=Ada -s tenant=acme
      exosphere run trigger greet --inputs-file inputs.yaml --watch
      exosphere run trigger greet -i name=Ada --priority 5m   # before runs already waiting
    """
    cfg = config()
    out = Output(cfg)
    root_inputs = (
        string_map(load_document(inputs_file, "--inputs-file"), "--inputs-file") if inputs_file else {}
    )
    root_inputs.update(parse_pairs(inputs, "-i/--input"))
    run_store = parse_pairs(store, "-s/--store")

    async def work(sm: StateManager) -> dict[str, Any]:
        answer = await sm.trigger(
            graph_name,
            inputs=root_inputs,
            store=run_store,
            start_delay=round(start_delay * 1000),
            idempotency_key=idempotency_key,
            priority=round(priority),
        )
        if not watch:
            return answer
        out.note(f"triggered run {answer['run_id']} of graph {graph_name}")
        return await watch_run(sm, str(answer["run_id"]), out, interval=interval, max_seconds=timeout)

    result = call(cfg, work)
    if watch:
        finish_summary(out, result)
        return
    document = {
        "run_id": result.get("run_id"),
        "status": result.get("status"),
        "graph_name": graph_name,
        "namespace": cfg.namespace,
        "states": result.get("states", []),
    }
    if out.json:
        out.result(document)
    else:
        out.fields(
            [("run", str(document["run_id"])), ("graph", graph_name), ("status", str(document["status"]))]
        )


@run.command("list")
@click.option("--graph", "graph_name", metavar="GRAPH", help="Only runs of this graph")
@click.option(
    "--status", type=click.Choice(RUN_STATUSES, case_sensitive=False), help="Only runs in this status"
)
@click.option("--since", metavar="WHEN", help="Created since: 30m, 1h30m, 1d, epoch ms or ISO 8601")
@click.option("--limit", type=click.IntRange(min=1), default=50, show_default=True, help="At most this many")
@command_options
def list_runs(graph_name: str | None, status: str | None, since: str | None, limit: int) -> None:
    """List runs, newest first."""
    cfg = config()
    out = Output(cfg)
    since_ms = parse_since(since)

    async def work(sm: StateManager) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = []
        pages = sm.iter_runs(
            graph=graph_name,
            status=status.upper() if status else None,
            since=since_ms,
            page_size=min(limit, _MAX_PAGE),
        )
        async for item in pages:
            found.append(item)
            if len(found) >= limit:
                break
        await pages.aclose()
        return found

    runs = call(cfg, work)
    if out.json:
        out.result(runs)
        return
    rows = [
        [
            str(r.get("run_id")),
            str(r.get("graph_name")),
            str(r.get("status")),
            time_text(r.get("created_ms")),
            duration_text(r.get("duration_ms")),
            counts_text(r.get("counts") or {}),
        ]
        for r in runs
    ]
    out.table(["run", "graph", "status", "created", "duration", "states"], rows, status_columns=[2])


@run.command("get")
@click.argument("run_id", metavar="RUN")
@command_options
def get(run_id: str) -> None:
    """Show a run: status, times, per-node progress, its result and the errors of failed states."""
    cfg = config()

    async def work(sm: StateManager) -> dict[str, Any]:
        return await run_summary(sm, run_id)

    show_summary(Output(cfg), call(cfg, work))


@run.command("states")
@click.argument("run_id", metavar="RUN")
@click.option("--status", "state_status", metavar="STATUS", help="Only states in this status, e.g. ERRORED")
@click.option("--node", "identifier", metavar="IDENTIFIER", help="Only states of this graph node")
@click.option("--limit", type=click.IntRange(min=1), default=100, show_default=True, help="At most this many")
@command_options
def states(run_id: str, state_status: str | None, identifier: str | None, limit: int) -> None:
    """List a run's states, oldest first (ids for `exosphere state get`)."""
    cfg = config()
    out = Output(cfg)

    async def work(sm: StateManager) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = []
        cursor: str | None = None
        while len(found) < limit:
            page = await sm.list_run_states(
                run_id,
                status=state_status.upper() if state_status else None,
                identifier=identifier,
                limit=min(limit - len(found), _MAX_PAGE),
                cursor=cursor,
            )
            found.extend(page.get("states") or [])
            cursor = page.get("next_cursor")
            if not cursor:
                break
        return found[:limit]

    found = call(cfg, work)
    if out.json:
        out.result(found)
        return
    rows = [
        [
            str(s.get("id")),
            str(s.get("identifier")),
            str(s.get("status")),
            str(s.get("retry_count")),
            time_text(s.get("created_ms")),
            first_line(s.get("error")) if s.get("error") else "-",
        ]
        for s in found
    ]
    out.table(["state", "node", "status", "retries", "created", "error"], rows, status_columns=[2])


@run.command("watch")
@click.argument("run_id", metavar="RUN")
@interval_option
@timeout_option
@command_options
def watch_command(run_id: str, interval: float, timeout: float | None) -> None:
    """Follow a run until it ends: progress on stderr, the summary on stdout.

    Exits 0 if the run succeeded, 1 if it FAILED or was CANCELLED (or had not ended at --timeout).
    """
    cfg = config()
    out = Output(cfg)

    async def work(sm: StateManager) -> dict[str, Any]:
        return await watch_run(sm, run_id, out, interval=interval, max_seconds=timeout)

    finish_summary(out, call(cfg, work))


@run.command("cancel")
@click.argument("run_id", metavar="RUN")
@command_options
def cancel(run_id: str) -> None:
    """Cancel a run: its waiting states are CANCELLED and nothing new starts in it."""
    cfg = config()
    out = Output(cfg)

    async def work(sm: StateManager) -> dict[str, Any]:
        return await sm.cancel_run(run_id)

    answer = call(cfg, work)
    if out.json:
        out.result(answer)
    else:
        out.fields(
            [
                ("run", str(answer.get("run_id"))),
                ("status", str(answer.get("status"))),
                ("cancelled states", str(answer.get("cancelled_count"))),
            ]
        )


@run.command("retry")
@click.argument("run_id", metavar="RUN")
@click.option("--watch", is_flag=True, help="Follow the run to its end; exit 1 if it fails")
@interval_option
@timeout_option
@command_options
def retry(run_id: str, watch: bool, interval: float, timeout: float | None) -> None:
    """Retry every failed state (ERRORED, TIMEDOUT, NEXT_CREATED_ERROR) of a run once."""
    cfg = config()
    out = Output(cfg)

    async def work(sm: StateManager) -> dict[str, Any]:
        answer = await sm.retry_failed(run_id)
        _note_retried(out, answer)
        if not watch:
            return answer
        return await watch_run(sm, run_id, out, interval=interval, max_seconds=timeout)

    result = call(cfg, work)
    if watch:
        finish_summary(out, result)
    elif out.json:
        out.result(result)
    else:
        out.fields(
            [
                ("run", str(result.get("run_id"))),
                ("retried", str(result.get("retried"))),
                ("status", str(result.get("status"))),
            ]
        )


def _note_retried(out: Output, answer: dict[str, Any]) -> None:
    if not answer.get("retried"):
        out.note(f"run {answer.get('run_id')}: no failed state to retry")
