"""`exosphere state why ID` and `exosphere run why RUN`: why states wait to be claimed, and when
they should start (our server's `GET /state/{id}/why` and `GET /run/{id}/why`)."""

from __future__ import annotations

import math
import time

import click

from ..state_manager import StateManager
from ..why import RunWhy, StateWhy
from .output import Output, time_text
from .session import call, command_options, config

__all__ = ["run_why", "start_text", "state_why"]


@click.command("why")
@click.argument("state_id", metavar="ID")
@command_options
def state_why(state_id: str) -> None:
    """Why a state waits: the reason in a sentence, when it should start, and what holds it.

    A state that does not wait says what it is doing.

    \b
    Reasons:
      delayed          not due yet (a start delay, a retry's backoff, its node asked to wait)
      no_runtime       due, but no runtime asked for its node lately
      queued           due: its place in its node's queue
      concurrency      its node's slots are all held (blockers: the holding states)
      run_concurrency  its graph's run slots are all held (blockers: the running runs)
      rate_limit       its node's rate allows the next claim later
      join             it ran; its join waits for the branches below it (blockers: the open ones)

    \b
    Examples:
      exosphere state why 6b0dc2519d2bebf390ce93f3
      exosphere state why 6b0dc2519d2bebf390ce93f3 -o json
    """
    cfg = config()
    out = Output(cfg)

    async def work(sm: StateManager) -> StateWhy:
        return await sm.state_why(state_id)

    answer = call(cfg, work)
    if out.json:
        out.result(answer.model_dump(mode="json"))
        return
    out.line(answer.detail)
    out.line()
    out.fields(
        [
            ("state", answer.state_id),
            ("status", answer.status),
            ("waiting", "yes" if answer.waiting else "no"),
            ("reason", answer.reason or "-"),
            ("starts", start_text(answer.predicted_start_ms) if answer.waiting else "-"),
            ("blockers", ", ".join(answer.blockers) or "-"),
        ]
    )


@click.command("why")
@click.argument("run_id", metavar="RUN")
@command_options
def run_why(run_id: str) -> None:
    """Why a run's states wait, by node and reason: how many, when the first should start, and
    the first one's reason in a sentence ("nothing waits" when none does).

    \b
    Examples:
      exosphere run why 3b111e6f-70c8-428f-a459-fa5c4833ec2d
      exosphere run why 3b111e6f-70c8-428f-a459-fa5c4833ec2d -o json
    """
    cfg = config()
    out = Output(cfg)

    async def work(sm: StateManager) -> RunWhy:
        return await sm.run_why(run_id)

    answer = call(cfg, work)
    if out.json:
        out.result(answer.model_dump(mode="json"))
        return
    if not answer.groups:
        out.line("nothing waits")
        return
    rows = [
        [
            group.node,
            group.reason or "-",
            str(group.count),
            start_text(group.predicted_start_ms),
            group.detail,
        ]
        for group in answer.groups
    ]
    out.table(["node", "reason", "count", "starts", "detail"], rows)


def start_text(ms: int | None, now_ms: int | None = None) -> str:
    """A predicted start as local time and how far off: `2025-01-31 14:05:09 (in 12 s)`, `... (now)`
    when it is due, `unknown` when the server cannot say."""
    if ms is None:
        return "unknown"
    now = time.time() * 1000 if now_ms is None else now_ms
    seconds = math.ceil((ms - now) / 1000)
    when = f"in {seconds} s" if seconds > 0 else "now"
    return f"{time_text(ms)} ({when})"
