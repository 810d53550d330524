"""A page of states on a time axis, as inline SVG (pure Python).

Each state is one row (a retry is a state of its own, so each attempt is its own bar):
  delayed  from creation until it was due (a start or retry delay), when it was due later;
  waiting  from when it was due until a runtime claimed it (or until it ended unclaimed);
  running  from the claim until it ended (or until now while it runs).

A large run is drawn one row per node instead (node_timeline.py); both share the frame here:
the labels column, the time axis (axis.py) and its ticks.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from markupsafe import Markup, escape

from state_manager.dashboard.axis import Axis, time_axis
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


def ended_at(state: StateView) -> int | None:
    """When the state ended (None while it moves); one that ended before end times were
    recorded ended at its last update."""
    if state.ended_ms is not None:
        return state.ended_ms
    return None if state.status in MOVING else state.updated_ms


def due_at(state: StateView) -> int:
    return max(state.enqueue_after, state.created_ms)


def segments(state: StateView, now: int) -> list[Segment]:
    """The bars of one state, in time order; empty ones are left out."""
    created, due = state.created_ms, due_at(state)
    claimed, ended = state.claimed_ms, ended_at(state)
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
    """One row per state, by creation time."""
    ordered = sorted(states, key=lambda s: (s.created_ms, s.id))
    return [Row(state, segments(state, now)) for state in ordered]


@dataclass(frozen=True)
class Frame:
    """Where things go: `rows` rows under an axis that spans `start`..`end`."""

    axis: Axis
    rows: int

    @classmethod
    def around(cls, start: int, end: int, rows: int) -> Frame:
        return cls(time_axis(start, end), rows)

    @property
    def width(self) -> int:
        return LABEL_W + BAR_W + PAD * 2

    @property
    def height(self) -> int:
        return AXIS_H + self.rows * ROW_H + PAD

    def x(self, t: int) -> float:
        return LABEL_W + PAD + BAR_W * (t - self.axis.start) / self.axis.span

    def width_of(self, start: int, end: int) -> float:
        """A bar's width: at least 2 px, so an instant still shows."""
        return max(self.x(end) - self.x(start), 2.0)

    @staticmethod
    def top(row: int) -> int:
        return AXIS_H + row * ROW_H


def clock(ms: int) -> str:
    """`HH:MM:SS UTC` of epoch ms (the axis's zero)."""
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%H:%M:%S UTC")


def open_svg(frame: Frame, rows: str, title: str) -> list[str]:
    """The `<svg>` start tag (`rows`: what a row is, `state` or `node`), its title, the clock
    time of the axis's zero and the ticks."""
    width, height, axis, top = frame.width, frame.height, frame.axis, AXIS_H - 10
    parts = [
        f'<svg class="timeline" xmlns="http://www.w3.org/2000/svg" role="img" width="{width}" '
        f'height="{height}" viewBox="0 0 {width} {height}" data-rows="{rows}" data-unit="{axis.unit}">'
        f"<title>{escape(title)}</title>"
        f'<text class="tick-label anchor-start axis-zero" x="{PAD}" y="{top}">0 = {clock(axis.start)}</text>'
    ]
    ticks = axis.ticks
    for i, offset in enumerate(ticks):
        anchor = "start" if i == 0 else "end" if i == len(ticks) - 1 else "middle"
        x = f"{frame.x(axis.start + offset):.1f}"
        parts.append(
            f'<line class="tick" x1="{x}" y1="{AXIS_H - 6}" x2="{x}" y2="{height}"></line>'
            f'<text class="tick-label anchor-{anchor}" x="{x}" y="{top}">{axis.label(offset)}</text>'
        )
    return parts


def _label(state: StateView) -> str:
    tail = f" · retry {state.retry_count}" if state.retry_count else ""
    name = state.identifier if len(state.identifier) <= 22 else state.identifier[:21] + "…"
    return f"{name} {state.id[-6:]}{tail}"


def _row(frame: Frame, i: int, row: Row, href: str) -> str:
    y, state = frame.top(i), row.state
    parts = [
        f'<a href="{escape(href)}"><g class="tl-row tl-{escape(state.status)}" '
        f'data-state-id="{escape(state.id)}" data-status="{escape(state.status)}">'
        f"<title>{escape(state.identifier)} {escape(state.id)}</title>"
        f'<text class="tl-label" x="{PAD}" y="{y + 15}">{escape(_label(state))}</text>'
    ]
    for seg in row.segments:
        tip = f"{seg.kind} {duration(seg.end - seg.start)}"
        parts.append(
            f'<rect class="seg seg-{seg.kind}" x="{frame.x(seg.start):.1f}" y="{y + 4}" '
            f'width="{frame.width_of(seg.start, seg.end):.1f}" height="{ROW_H - 8}" rx="2">'
            f"<title>{escape(tip)}</title></rect>"
        )
    parts.append("</g></a>")
    return "".join(parts)


def render_svg(states: Sequence[StateView], now: int, href: Callable[[str], str]) -> Markup:
    """The timeline of `states`; `href(state_id)` links each row to its state."""
    drawn = rows(states, now)
    points = [t for row in drawn for s in row.segments for t in (s.start, s.end)]
    if not points:
        return Markup("")
    frame = Frame.around(min(points), max(points), len(drawn))
    parts = open_svg(frame, "state", "Timeline: one row per attempt")
    parts += [_row(frame, i, row, href(row.state.id)) for i, row in enumerate(drawn)]
    parts.append("</svg>")
    return Markup("".join(parts))
