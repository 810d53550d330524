"""`exosphere run fork RUN --from NODE` and `exosphere run fork-failed --graph G`: run part of a run
that ended again, reusing the rest, or each failed run of a graph from where it failed.

`run fork --watch` then follows the new run like `run watch` and exits like it (0 the fork
succeeded, 1 it FAILED or was CANCELLED, or had not ended at --timeout).
"""

from __future__ import annotations

from typing import Any

import click

from ..forks import ForkedRun, ForkFailedResult, ForkGraphVersion
from ..state_manager import StateManager
from .inputs import parse_node_pairs, parse_pairs, parse_since
from .output import Output
from .session import call, command_options, config
from .watch import finish_summary, interval_option, timeout_option, watch_run

__all__ = ["fork", "fork_failed"]

_GRAPH_VERSIONS = ("original", "current")


@click.command("fork")
@click.argument("run_id", metavar="RUN")
@click.option(
    "--from",
    "starts",
    multiple=True,
    required=True,
    metavar="NODE",
    help="A node to run again, with everything below it (repeat for several); the rest is reused",
)
@click.option(
    "-i",
    "--input",
    "inputs",
    multiple=True,
    metavar="NODE.FIELD=VALUE",
    help="A new input for a --from node",
)
@click.option(
    "-s", "--store", "store", multiple=True, metavar="KEY=VALUE", help="A run store value to replace"
)
@click.option(
    "--graph-version",
    type=click.Choice(_GRAPH_VERSIONS, case_sensitive=False),
    default="original",
    show_default=True,
    help="Run the fork on the graph version RUN used, or on the graph's current one",
)
@click.option("--watch", is_flag=True, help="Follow the new run to its end; exit 1 if it fails")
@interval_option
@timeout_option
@command_options
def fork(
    run_id: str,
    starts: tuple[str, ...],
    inputs: tuple[str, ...],
    store: tuple[str, ...],
    graph_version: str,
    watch: bool,
    interval: float,
    timeout: float | None,
) -> None:
    """Fork RUN from the --from nodes; reuse what is above them.

    RUN must have ended. The new run (a fork) copies RUN's states above the --from nodes as they
    ended (they are not run again) and runs the --from nodes and everything below them again,
    with the -i inputs given for them and the -s store values.

    Prints the new run, what it was forked from and how many states it reused. Compare the two
    runs with `exosphere run diff RUN NEW`.

    \b
    Examples:
      exosphere run fork 3f2c... --from draft -i draft.prompt="Explain to a ten-year-old" --watch
      exosphere run fork 3f2c... --from score --graph-version current -o json
    """
    cfg = config()
    out = Output(cfg)
    node_inputs = parse_node_pairs(inputs, "-i/--input")
    run_store = parse_pairs(store, "-s/--store")
    version: ForkGraphVersion = "current" if graph_version.lower() == "current" else "original"

    async def work(sm: StateManager) -> tuple[ForkedRun, dict[str, Any] | None]:
        forked = await sm.fork_run(
            run_id, from_=list(starts), inputs=node_inputs, store=run_store, graph_version=version
        )
        if not watch:
            return forked, None
        out.note(
            f"forked run {forked.run_id} from {run_id} at {', '.join(forked.forked_from.from_)} "
            f"({_states(forked.reused)} reused)"
        )
        return forked, await watch_run(sm, forked.run_id, out, interval=interval, max_seconds=timeout)

    forked, summary = call(cfg, work)
    if summary is not None:
        finish_summary(out, summary)
    elif out.json:
        out.result(forked.model_dump(mode="json", by_alias=True))
    else:
        out.fields(
            [
                ("run", forked.run_id),
                ("forked from", forked.forked_from.run_id),
                ("from", ", ".join(forked.forked_from.from_)),
                ("reused", _states(forked.reused)),
                ("status", forked.status),
            ]
        )


@click.command("fork-failed")
@click.option(
    "--graph", "graph_name", required=True, metavar="GRAPH", help="The graph whose FAILED runs to fork"
)
@click.option("--since", metavar="WHEN", help="Runs created since: 30m, 12h, 2d (ago), epoch ms or ISO 8601")
@click.option("--until", metavar="WHEN", help="Runs created until: 30m, 12h, 2d (ago), epoch ms or ISO 8601")
@click.option(
    "--graph-version",
    type=click.Choice(_GRAPH_VERSIONS, case_sensitive=False),
    default="current",
    show_default=True,
    help="Run the forks on the graph's current version (after a fix) or on the one each run used",
)
@click.option(
    "--limit",
    type=click.IntRange(1, 1000),
    default=100,
    show_default=True,
    help="At most this many runs, oldest first",
)
@click.option(
    "--idempotency-key",
    metavar="KEY",
    help="Repeating the command with it (and the same window) forks nothing twice",
)
@command_options
def fork_failed(
    graph_name: str,
    since: str | None,
    until: str | None,
    graph_version: str,
    limit: int,
    idempotency_key: str | None,
) -> None:
    """Fork each FAILED run of GRAPH from the nodes where it failed.

    The runs created in the window (--since, --until; oldest first, at most --limit) are each
    forked from their failed nodes, by default on the graph's current version.

    Prints one line per fork (the failed run and its fork), then the runs that could not be
    forked with the reason.

    \b
    Examples:
      exosphere run fork-failed --graph research --since 12h
      exosphere run fork-failed --graph research --since 2025-01-07T00:00Z --idempotency-key nightly-0107
    """
    cfg = config()
    out = Output(cfg)
    since_ms, until_ms = parse_since(since, "--since"), parse_since(until, "--until")
    version: ForkGraphVersion = "original" if graph_version.lower() == "original" else "current"

    async def work(sm: StateManager) -> ForkFailedResult:
        return await sm.fork_failed(
            graph_name,
            since=int(since_ms) if since_ms else None,
            until=int(until_ms) if until_ms else None,
            graph_version=version,
            limit=limit,
            idempotency_key=idempotency_key,
        )

    result = call(cfg, work)
    if out.json:
        out.result(result.model_dump(mode="json", by_alias=True))
        return
    if result.forks:
        rows = [
            [
                f.forked_from.run_id,
                f.run_id,
                ", ".join(f.forked_from.from_),
                str(f.reused),
                f.status,
            ]
            for f in result.forks
        ]
        out.table(["failed run", "fork", "from", "reused", "status"], rows, status_columns=[4])
        out.line()
    if result.skipped:
        out.table(["skipped run", "reason"], [[s.run_id, s.reason] for s in result.skipped])
        out.line()
    out.line(f"{graph_name}: {len(result.forks)} forked, {len(result.skipped)} skipped")


def _states(count: int) -> str:
    return f"{count} state" if count == 1 else f"{count} states"
