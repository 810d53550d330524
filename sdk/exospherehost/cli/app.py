"""The root `exosphere` command: its options and its command groups."""

from __future__ import annotations

import click

from .._version import __version__
from . import access, graphs, runs, server, states
from .session import common_options

__all__ = ["cli", "main"]


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, "--version", prog_name="exosphere")
@common_options()
def cli() -> None:
    """Operate an Exosphere state manager: graphs, runs, states, queues, keys, the audit log.

    Configure with --url/EXOSPHERE_STATE_MANAGER_URI, --key/EXOSPHERE_API_KEY and
    -n/--namespace/EXOSPHERE_NAMESPACE. `-o json` writes only JSON to stdout; progress and
    messages go to stderr.

    \b
    Exit codes:
      0  success
      1  the operation or the watched run failed (a 4xx, graph INVALID, run FAILED/CANCELLED,
         a stalled node in `queues`)
      2  usage error (e.g. a bad duration: use 250ms, 60s, 5m, 1h30m)
      3  server unreachable, API key refused, or a server error (5xx)
    `run diff` exits like diff: 0 the runs are the same, 1 they differ, 2 they cannot be compared.
    """


cli.add_command(server.ping)
cli.add_command(graphs.graph)
cli.add_command(runs.run)
cli.add_command(states.state)
cli.add_command(server.nodes)
cli.add_command(server.queues)
cli.add_command(server.ui)
cli.add_command(access.keys)
cli.add_command(access.audit)


def main() -> None:
    """The `exosphere` console script."""
    cli.main(prog_name="exosphere")
