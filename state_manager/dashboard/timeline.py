"""A page of states on a time axis, as inline SVG (pure Python).

Each state is one row (a retry is a state of its own, so each attempt is its own bar):
  delayed  from creation until it was due (a start or retry delay), when it was due later;
  waiting  from when it was due until a runtime claimed it (or until it ended unclaimed);
  running  from the claim until it ended (or until now while it runs).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from markupsafe import Markup, escape

from state_manager.dashboard.render import duration
from state_manager.schemas.runs import StateView

MOVING = frozenset({"CREATED", "QUEUED", "EXECUTED"})
LABEL_W, BAR_W, ROW_H, AXIS_H, PAD = 210, 900, 22, 26, 8


@dataclass(frozen=True)
class Segment:
    kind: str  # delayed | waiting | running
    start: int
    end: int


@dataclass(frozen=True)
class Row:
    state: StateView
    segments: list[Segment]


def segments(state: StateView, now: int) -> list[Segment]:
    """The bars of one state, in time order; empty ones are left out."""
    created, due = state.created_ms, max(state.enqueue_after, state.created_ms)
    claimed, ended = state.claimed_ms, state.ended_ms
    if ended is None and state.status not in MOVING:  # ended before times were recorded
        ended = state.updated_ms
    waiting_end = claimed if claimed is not None else (ended if ended is not None else now)
    out = []
    if due > created:
        out.append(Segment("delayed", created, min(due, waiting_end)))
    if waiting_end > due:
        out.append(Segment("waiting", due, waiting_end))
    if claimed is not None:
        out.append(Segment("running", claimed, ended if ended is not None else now))
    out = [s for s in out if s.end >= s.start]
    return out or [Segment("waiting", due, due)]  # ended as soon as it was made: a mark


def rows(states: Sequence[StateView], now: int) -> list[Row]:
    """One row per state, in the order they were created."""
    ordered = sorted(states, key=lambda s: (s.created_ms, s.id))
    return [Row(state, segments(state, now)) for state in ordered]


def _ticks(start: int, end: int, count: int = 5) -> list[int]:
    span = max(end - start, 1)
    return [start + span * i // count for i in range(count + 1)]


def _label(state: StateView) -> str:
    tail = f" · retry {state.retry_count}" if state.retry_count else ""
    name = state.identifier if len(state.identifier) <= 22 else state.identifier[:21] + "…"
    return f"{name} {state.id[-6:]}{tail}"


def render_svg(states: Sequence[StateView], now: int, href: Callable[[str], str]) -> Markup:
    """The timeline of `states`; `href(state_id)` links each row to its state."""
    drawn = rows(states, now)
    points = [t for row in drawn for s in row.segments for t in (s.start, s.end)]
    if not points:
        return Markup("")
    start, end = min(points), max(points)
    span = max(end - start, 1)
    width, height = LABEL_W + BAR_W + PAD * 2, AXIS_H + len(drawn) * ROW_H + PAD

    def x(t: int) -> float:
        return LABEL_W + PAD + BAR_W * (t - start) / span

    parts = [
        f'<svg class="timeline" xmlns="http://www.w3.org/2000/svg" role="img" width="{width}" '
        f'height="{height}" viewBox="0 0 {width} {height}"><title>Timeline</title>'
    ]
    ticks = _ticks(start, end)
    for i, tick in enumerate(ticks):
        anchor = "start" if i == 0 else "end" if i == len(ticks) - 1 else "middle"
        parts.append(
            f'<line class="tick" x1="{x(tick):.1f}" y1="{AXIS_H - 6}" x2="{x(tick):.1f}" '
            f'y2="{height}"></line>'
            f'<text class="tick-label anchor-{anchor}" x="{x(tick):.1f}" y="{AXIS_H - 10}">'
            f"+{escape(duration(tick - start))}</text>"
        )
    for i, row in enumerate(drawn):
        y = AXIS_H + i * ROW_H
        state = row.state
        parts.append(
            f'<a href="{escape(href(state.id))}"><g class="tl-row tl-{escape(state.status)}" '
            f'data-state-id="{escape(state.id)}" data-status="{escape(state.status)}">'
            f'<text class="tl-label" x="{PAD}" y="{y + 15}">{escape(_label(state))}</text>'
        )
        for seg in row.segments:
            w = max(x(seg.end) - x(seg.start), 2.0)
            tip = f"{seg.kind} {duration(seg.end - seg.start)}"
            parts.append(
                f'<rect class="seg seg-{seg.kind}" x="{x(seg.start):.1f}" y="{y + 4}" width="{w:.1f}" '
                f'height="{ROW_H - 8}" rx="2"><title>{escape(tip)}</title></rect>'
            )
        parts.append("</g></a>")
    parts.append("</svg>")
    return Markup("".join(parts))
