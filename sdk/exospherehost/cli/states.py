"""`exosphere state get | retry` (`why` is in `why.py`)."""

from __future__ import annotations

from typing import Any

import click

from ..state_manager import StateManager
from .output import Output, compact_json, time_text
from .session import call, command_options, config
from .why import state_why

__all__ = ["state"]


@click.group()
def state() -> None:
    """Inspect and retry single states, and ask why one waits."""


state.add_command(state_why)


@state.command("get")
@click.argument("state_id", metavar="ID")
@command_options
def get(state_id: str) -> None:
    """Show a state: inputs, outputs, error (with its type, traceback and the attempt's log
    lines when the runtime sent them), parents, retries and times."""
    cfg = config()
    out = Output(cfg)

    async def work(sm: StateManager) -> dict[str, Any]:
        return await sm.get_state(state_id)

    s = call(cfg, work)
    if out.json:
        out.result(s)
        return
    out.fields(
        [
            ("state", str(s.get("id"))),
            ("run", str(s.get("run_id"))),
            ("graph", f"{s.get('graph_name')} (version {s.get('graph_version')})"),
            ("node", f"{s.get('identifier')} ({s.get('node_name')})"),
            ("status", str(s.get("status"))),
            ("retries", str(s.get("retry_count"))),
            ("created", time_text(s.get("created_ms"))),
            ("due", time_text(s.get("enqueue_after"))),
            ("claimed", time_text(s.get("claimed_ms"))),
            ("ended", time_text(s.get("ended_ms"))),
            ("parents", ", ".join(f"{k}={v}" for k, v in (s.get("parents") or {}).items()) or "-"),
            ("inputs", compact_json(s.get("inputs"))),
            ("outputs", compact_json(s.get("outputs"))),
        ]
    )
    if s.get("error"):
        out.line()
        out.line("error:")
        out.line(str(s["error"]).rstrip())
    _show_error_details(out, s.get("error_details"))


def _show_error_details(out: Output, details: dict[str, Any] | None) -> None:
    """The whole error of the attempt, when its runtime sent it: type, traceback, log lines."""
    if not details:
        return
    if details.get("type"):
        out.line(f"type: {details['type']}")
    if details.get("traceback"):
        out.line()
        out.line(str(details["traceback"]).rstrip())
    logs = details.get("logs") or []
    if logs:
        out.line()
        out.line(f"log lines of this attempt ({len(logs)}):")
        for line in logs:
            out.line(f"  {line}")


@state.command("retry")
@click.argument("state_id", metavar="ID")
@click.option(
    "--fanout-id",
    metavar="ID",
    help="Names this retry; the same id again is refused (409) and creates nothing (default: a fresh one)",
)
@command_options
def retry(state_id: str, fanout_id: str | None) -> None:
    """Retry a state by hand: a new state with the same inputs."""
    cfg = config()
    out = Output(cfg)

    async def work(sm: StateManager) -> dict[str, Any]:
        return await sm.retry_state(state_id, fanout_id)

    answer = call(cfg, work)
    document = {"retry_of": state_id, **answer}
    if out.json:
        out.result(document)
    else:
        out.fields(
            [
                ("state", str(answer.get("id"))),
                ("retry of", state_id),
                ("status", str(answer.get("status"))),
                ("fanout id", str(answer.get("fanout_id"))),
            ]
        )
