"""`exosphere run diff A B`: what differs between two runs of one graph, exiting like `diff`.

Exit codes: 0 the runs are the same, 1 they differ, 2 no diff could be made (an unknown run,
runs of two graphs, a usage error), 3 the server is unreachable, refused the key or failed.
"""

from __future__ import annotations

import json
from typing import Any

import click

from ..run_diff import NodeDiff, RunDiff
from ..state_manager import StateManager
from .output import Output
from .session import EXIT_FAILED, EXIT_USAGE, Failed, Unavailable, call, command_options, config

__all__ = ["diff"]

VALUE_WIDTH = 40  # a value in the table is cut to this many characters


class NoDiff(Failed):
    """The diff could not be made: exit 2, as `diff` does for trouble (1 means "they differ")."""

    exit_code = EXIT_USAGE


@click.command("diff")
@click.argument("run_a", metavar="A")
@click.argument("run_b", metavar="B")
@command_options
def diff(run_a: str, run_b: str) -> None:
    """Compare run A with run B (two runs of one graph), node by node.

    Lists each node and fan-out position that differs (changed, or run in one of them only)
    with the fields that differ, then a summary. Exits 0 when the runs are the same, 1 when
    they differ, 2 when they cannot be compared (unknown run, runs of two graphs).

    \b
    Examples:
      exosphere run diff 3f2c... 9a41...
      exosphere run diff 3f2c... 9a41... -o json
    """
    cfg = config()
    out = Output(cfg)

    async def work(sm: StateManager) -> RunDiff:
        return await sm.diff_runs(run_a, run_b)

    try:
        result = call(cfg, work)
    except Unavailable:
        raise
    except Failed as exc:
        raise NoDiff(exc.message) from exc
    if out.json:
        out.result(result.model_dump(mode="json"))
    else:
        _show(out, result)
    if not result.same:
        click.get_current_context().exit(EXIT_FAILED)


def _show(out: Output, result: RunDiff) -> None:
    rows = [row for node in result.differences() for row in _rows(node)]
    if rows:
        out.table(["node", "position", "change", "field", "a", "b"], rows)
        out.line()
    s = result.summary
    out.line(
        f"{result.a} vs {result.b} ({result.graph}): {s.changed} changed, {s.only_a} only in a, "
        f"{s.only_b} only in b, {s.same} same"
    )


def _rows(node: NodeDiff) -> list[list[str]]:
    """One row per differing field (the node named on the first); one row for a node in one run only."""
    place = [node.identifier, _position(node.position), node.change]
    if node.change != "changed":
        side_a, side_b = (node.a.status if node.a else "-"), (node.b.status if node.b else "-")
        return [[*place, "status", side_a, side_b]]
    blank = ["", "", ""]
    return [
        [*(place if i == 0 else blank), field.path, _short(field.a), _short(field.b)]
        for i, field in enumerate(node.fields)
    ]


def _position(position: list[int]) -> str:
    return "[" + ",".join(str(i) for i in position) + "]"


def _short(value: Any) -> str:
    """A value on one line, at most VALUE_WIDTH characters: strings as they are, the rest as JSON."""
    if value is None:
        return "-"
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    text = " ".join(text.split())
    return text if len(text) <= VALUE_WIDTH else text[: VALUE_WIDTH - 1] + "…"
